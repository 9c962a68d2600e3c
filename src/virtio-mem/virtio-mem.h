/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-mem (virtio 1.2 device ID 24): how tidal hot-adds memory above Startup. The device
 * manages the guest memory's hot-plug region (guest_mem_plan_hotplug), 2 MiB blocks the guest
 * driver plugs and unplugs on request; the VMM only says how much it wants plugged
 * (requested_size). Plugged blocks become RAM for the guest; unplugged ones are punched out of
 * the memfd and mapped PROT_NONE, so neither the guest nor the device can bring them back
 * without a plug request.
 *
 * Life cycle: virtio_mem_new() → virtio_pci_create(..., virtio_mem_virtio_dev(m), ...) → the
 * guest drives it → pci_bus_destroy() → virtio_mem_free(). The API below may be called from any
 * thread (control socket, event loop) once the device is plugged; it takes the device lock.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tidal/guest-mem.h"
#include "tidal/virtio-dev.h"
#include "virtio-mem/metrics.h"

#define VIRTIO_ID_MEM 24

/* Feature bits (virtio 1.2, 5.15.3). tidal never offers ACPI_PXM: it publishes no SRAT. */
#define VIRTIO_MEM_F_ACPI_PXM               0
#define VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE 1

#define VIRTIO_MEM_BLOCK_SIZE (2 * MiB) /* block_size in the config space */

struct virtio_mem;

struct virtio_mem_options {
        uint64_t requested_size; /* asked of the driver from the start; default 0 */
};

/*
 * Allocates an unplugged virtio-mem device for the hot-plug region of mem (which must have one,
 * with VIRTIO_MEM_BLOCK_SIZE blocks, and outlive the device). opts NULL means the defaults.
 * 0, -EINVAL (no region, bad options) or -ENOMEM.
 */
int virtio_mem_new(const struct virtio_mem_options *opts, struct guest_mem *mem,
                   struct virtio_mem **ret);

/* Frees it, NULL is fine. After pci_bus_destroy(). Leaves the blocks as they are. */
void virtio_mem_free(struct virtio_mem *m);

static inline void virtio_mem_freep(struct virtio_mem **m)
{
        virtio_mem_free(*m);
}

/* What to hand to virtio_pci_create(); owned by m. */
struct virtio_dev *virtio_mem_virtio_dev(struct virtio_mem *m);

/*
 * Asks the guest to have bytes plugged (rounded up to whole blocks), and raises the
 * config-change interrupt if that changed while the driver runs. Survives device resets.
 * 0 or -ERANGE (more than the region).
 */
int virtio_mem_set_requested(struct virtio_mem *m, uint64_t bytes);

/*
 * Raises the config-change interrupt again without changing anything. Linux's driver backs
 * off for 50 s to 5 min after a plug fails for want of guest memory (the memmap of a new
 * memory block) or an unplug finds pages it cannot move; a config change makes it retry at
 * once. The VMM calls this when the driver stops making progress. No-op while not running.
 */
void virtio_mem_nudge(struct virtio_mem *m);

enum virtio_mem_driver {
        VIRTIO_MEM_DRIVER_NONE,        /* no DRIVER_OK since the last reset */
        VIRTIO_MEM_DRIVER_RUNNING,     /* DRIVER_OK and not broken */
        VIRTIO_MEM_DRIVER_NEEDS_RESET, /* the guest broke the protocol; waiting for a reset */
};

struct virtio_mem_state {
        enum virtio_mem_driver driver;
        uint64_t features; /* negotiated */
        uint64_t block_size;
        uint64_t addr;        /* guest-physical start of the region */
        uint64_t region_size; /* bytes */
        uint64_t usable_region_size;
        uint64_t requested_size; /* what the VMM asked for */
        uint64_t plugged_size;   /* what the guest has plugged now */
        struct virtio_mem_metrics metrics;
};

void virtio_mem_get_state(struct virtio_mem *m, struct virtio_mem_state *ret);
