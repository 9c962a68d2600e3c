/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-pci, modern (virtio 1.x) transport only: no legacy I/O BAR, no INTx.
 *
 * One 64-bit, non-prefetchable memory BAR 0 holds every structure, each in its own 4 KiB page so
 * the MSI-X table and PBA never share a page with other registers (PCI 3.0, 6.8.2). It is
 * non-prefetchable because reading ISR clears it and the MSI-X table must not be prefetched.
 *
 * Threading: BAR accesses arrive on vCPU threads, queue notifications are handled on the event
 * loop thread (ioeventfd, or the eventfd kicked by a notify write that exited to user space).
 * Everything, device callbacks included, runs under dev->lock. Lock order:
 * pci->lock -> dev->lock -> (KVM routing lock inside the irq functions).
 */
#pragma once

#include <stdint.h>

#include "tidal/virtio-dev.h"
#include "vmm/pci/pci.h"

struct event_loop;
struct kvm_vm;
struct virtio_pci;

#define VPCI_VENDOR_ID   0x1af4
#define VPCI_DEVICE_BASE 0x1040 /* + virtio device ID, modern-only devices */
#define VPCI_REVISION    1

/* BAR 0 layout. */
#define VPCI_BAR            0
#define VPCI_BAR_SIZE       0x8000u
#define VPCI_COMMON_OFF     0x0000u
#define VPCI_COMMON_LEN     0x0040u /* struct virtio_pci_common_cfg + notify_data/queue_reset */
#define VPCI_ISR_OFF        0x1000u
#define VPCI_ISR_LEN        1u
#define VPCI_DEVICE_OFF     0x2000u
#define VPCI_DEVICE_MAX     0x1000u /* largest config_size a device may declare */
#define VPCI_NOTIFY_OFF     0x3000u
#define VPCI_NOTIFY_MULT    4u /* queue i is notified at VPCI_NOTIFY_OFF + 4 * i */
#define VPCI_MSIX_TABLE_OFF 0x4000u
#define VPCI_MSIX_PBA_OFF   0x5000u
#define VPCI_MAX_VECTORS    (VIRTIO_MAX_QUEUES + 1) /* one per queue plus the config vector */

/*
 * Wraps dev in a PCI function on pci: fills dev's transport fields (lock, mem, loop), allocates
 * per queue an eventfd watched on loop (bound as ioeventfd while the queue is enabled and the
 * BAR decoded) and per MSI-X vector a GSI with an irqfd. On success the PCI bus owns the
 * transport (pci_bus_destroy() releases eventfds, irqfds, routes); dev stays the caller's, to
 * be freed after pci_bus_destroy(). 0 or -errno.
 */
int virtio_pci_create(struct pci_bus *pci, struct kvm_vm *vm, struct event_loop *loop,
                      const struct guest_mem *mem, struct virtio_dev *dev, struct virtio_pci **ret);

/* VMM-initiated device reset (reboot): as if the driver wrote 0 to device_status. */
void virtio_pci_reset(struct virtio_pci *vpci);
