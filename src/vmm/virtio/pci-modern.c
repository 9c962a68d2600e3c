/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-pci modern transport (virtio 1.x, section 4.1). See pci-modern.h for the BAR layout,
 * threading and lock order. Every value the driver writes is validated here; a device only
 * sees queues whose rings lie in RAM and vectors that exist.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <linux/pci_regs.h>
#define VIRTIO_PCI_NO_LEGACY
#include <linux/virtio_pci.h>

#include "tidal/event-loop.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "vmm/kvm/irq.h"
#include "vmm/virtio/pci-modern.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define MSIX_CAP_LEN           12
#define VIRTIO_CAP_LEN         16
#define VIRTIO_NOTIFY_CAP_LEN  20
#define VIRTIO_PCI_CFG_CAP_LEN 20
#define PCI_CFG_DATA           16  /* offset of pci_cfg_data in the PCI_CFG capability */
#define VPCI_ISR_QUEUE         0x1 /* ISR bit 0: used buffer notification */

#define STATUS_STICKY                                                                              \
        (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |            \
         VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FAILED | VIRTIO_STATUS_DEVICE_NEEDS_RESET)

/* virtio 1.x only. EVENT_IDX and the rest are offered if the device offers them... */
#define TRANSPORT_FEATURES (UINT64_C(1) << VIRTIO_F_VERSION_1)
/* ...but never INDIRECT_DESC: struct virtq has no flag for it, so virtq_pop() rejects it. */
#define FEATURES_NOT_OFFERED (UINT64_C(1) << VIRTIO_F_INDIRECT_DESC)

struct vpci_queue {
        struct virtio_pci *vpci;
        unsigned idx;
        int eventfd;
        struct event_source *src;
        bool ioeventfd_assigned;
        uint64_t ioeventfd_addr;
};

struct vpci_vector {
        uint32_t gsi;
        bool gsi_valid;
        int eventfd;
        bool irqfd_bound;
        bool route_valid; /* route holds what KVM has for gsi */
        struct msi_msg route;
        bool route_error_logged;
        bool pending; /* PBA bit */
};

struct virtio_pci {
        struct pci_device pci;
        struct virtio_dev *dev;
        struct kvm_vm *vm;
        bool lock_initialized;

        /* BAR 0 decoding, as last told by the PCI bus. */
        bool bar_mapped;
        uint64_t bar_addr;

        /* Common configuration. */
        uint64_t device_features;
        uint64_t guest_features; /* as written; becomes dev->driver_features at FEATURES_OK */
        uint32_t dfselect, gfselect;
        uint16_t queue_select;
        uint16_t config_vector;
        uint8_t config_generation;
        uint8_t isr;

        /* MSI-X: control bits mirrored from config space, table in guest layout. */
        uint8_t msix_cap, pci_cfg_cap;
        bool msix_enabled, msix_masked;
        unsigned nr_vectors;
        uint8_t msix_table[VPCI_MAX_VECTORS * PCI_MSIX_ENTRY_SIZE];
        struct vpci_vector vectors[VPCI_MAX_VECTORS];

        struct vpci_queue queues[VIRTIO_MAX_QUEUES];
};

static uint64_t get_le(const uint8_t *p, uint32_t len)
{
        uint64_t v = 0;

        for (uint32_t i = 0; i < len; i++)
                v |= (uint64_t)p[i] << (8 * i);
        return v;
}

static void put_le(uint8_t *p, uint32_t len, uint64_t v)
{
        for (uint32_t i = 0; i < len; i++)
                p[i] = v >> (8 * i);
}

static struct virtio_pci *to_vpci(struct pci_device *pdev)
{
        return container_of(pdev, struct virtio_pci, pci);
}

/* ---- MSI-X ---------------------------------------------------------------------------- */

static uint8_t *msix_entry(struct virtio_pci *vpci, unsigned v)
{
        return vpci->msix_table + v * PCI_MSIX_ENTRY_SIZE;
}

static bool vector_masked(struct virtio_pci *vpci, unsigned v)
{
        uint32_t ctrl = get_le(msix_entry(vpci, v) + PCI_MSIX_ENTRY_VECTOR_CTRL, 4);

        return vpci->msix_masked || (ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

/* Keeps the KVM route of vector v equal to its table entry while MSI-X is enabled. */
static void vector_route_update(struct virtio_pci *vpci, unsigned v)
{
        struct vpci_vector *vec = &vpci->vectors[v];
        const uint8_t *e = msix_entry(vpci, v);
        struct msi_msg msg = {
                .address = get_le(e + PCI_MSIX_ENTRY_LOWER_ADDR, 8),
                .data = get_le(e + PCI_MSIX_ENTRY_DATA, 4),
        };
        int r;

        if (!vpci->msix_enabled || !vec->gsi_valid)
                return;
        if (vec->route_valid && vec->route.address == msg.address && vec->route.data == msg.data)
                return;
        r = kvm_msi_route_set(vpci->vm, vec->gsi, &msg);
        if (r < 0) {
                vec->route_valid = false;
                if (!vec->route_error_logged)
                        log_warn_errno(r, "virtio-%s: MSI-X vector %u: route update failed",
                                       vpci->dev->ops->name, v);
                vec->route_error_logged = true;
                return;
        }
        vec->route = msg;
        vec->route_valid = true;
}

static void vector_fire(struct virtio_pci *vpci, unsigned v)
{
        /* EAGAIN means the counter is saturated: an interrupt is pending anyway. */
        (void)eventfd_write(vpci->vectors[v].eventfd, 1);
}

/* Raises vector v, or latches it in the PBA while masked. */
static void vector_notify(struct virtio_pci *vpci, uint16_t v)
{
        if (v >= vpci->nr_vectors || !vpci->msix_enabled)
                return; /* VIRTIO_MSI_NO_VECTOR, or MSI-X off: there is no INTx to fall back to */
        if (vector_masked(vpci, v)) {
                vpci->vectors[v].pending = true;
                return;
        }
        vector_fire(vpci, v);
}

static void vectors_deliver_pending(struct virtio_pci *vpci)
{
        for (unsigned v = 0; v < vpci->nr_vectors; v++) {
                if (!vpci->vectors[v].pending || !vpci->msix_enabled || vector_masked(vpci, v))
                        continue;
                vpci->vectors[v].pending = false;
                vector_fire(vpci, v);
        }
}

static void msix_control_changed(struct virtio_pci *vpci, uint16_t ctrl)
{
        vpci->msix_enabled = ctrl & PCI_MSIX_FLAGS_ENABLE;
        vpci->msix_masked = ctrl & PCI_MSIX_FLAGS_MASKALL;
        for (unsigned v = 0; v < vpci->nr_vectors; v++)
                vector_route_update(vpci, v);
        vectors_deliver_pending(vpci);
}

static void msix_table_access(struct virtio_pci *vpci, uint32_t off, uint8_t *data, uint32_t len,
                              bool is_write)
{
        uint32_t table_len = vpci->nr_vectors * PCI_MSIX_ENTRY_SIZE;
        unsigned first, last;

        if (off >= table_len || len > table_len - off)
                return;
        if (!is_write) {
                memcpy(data, vpci->msix_table + off, len);
                return;
        }

        memcpy(vpci->msix_table + off, data, len);
        first = off / PCI_MSIX_ENTRY_SIZE;
        last = (off + len - 1) / PCI_MSIX_ENTRY_SIZE;
        for (unsigned v = first; v <= last; v++) {
                uint8_t *ctrl = msix_entry(vpci, v) + PCI_MSIX_ENTRY_VECTOR_CTRL;

                /* Only the mask bit of Vector Control is writable. */
                put_le(ctrl, 4, get_le(ctrl, 4) & PCI_MSIX_ENTRY_CTRL_MASKBIT);
                vector_route_update(vpci, v);
        }
        vectors_deliver_pending(vpci);
}

static void msix_pba_read(struct virtio_pci *vpci, uint32_t off, uint8_t *data, uint32_t len)
{
        uint8_t pba[8 * ((VPCI_MAX_VECTORS + 63) / 64)] = {0};

        if (off >= sizeof(pba) || len > sizeof(pba) - off)
                return;
        for (unsigned v = 0; v < vpci->nr_vectors; v++)
                if (vpci->vectors[v].pending)
                        pba[v / 8] |= 1u << (v % 8);
        memcpy(data, pba + off, len);
}

/* ---- Notifications ---------------------------------------------------------------------- */

static void ioeventfd_unassign(struct virtio_pci *vpci, struct vpci_queue *q)
{
        if (!q->ioeventfd_assigned)
                return;
        (void)kvm_ioeventfd(vpci->vm, q->ioeventfd_addr, 0, q->eventfd, true, false);
        q->ioeventfd_assigned = false;
}

/* Lets KVM signal the queue's eventfd on a notify write without an exit to user space. */
static void ioeventfd_assign(struct virtio_pci *vpci, struct vpci_queue *q)
{
        uint64_t addr = vpci->bar_addr + VPCI_NOTIFY_OFF + VPCI_NOTIFY_MULT * q->idx;
        int r;

        if (q->ioeventfd_assigned || !vpci->bar_mapped || !vpci->dev->queues[q->idx].enabled)
                return;
        /* Length 0: any write width matches, which also allows KVM's fast MMIO path. */
        r = kvm_ioeventfd(vpci->vm, addr, 0, q->eventfd, true, true);
        if (r < 0) {
                /* Not fatal: the write then exits and vpci_notify_write() kicks the eventfd. */
                log_debug("virtio-%s: queue %u: no ioeventfd: %s", vpci->dev->ops->name, q->idx,
                          strerror(-r));
                return;
        }
        q->ioeventfd_assigned = true;
        q->ioeventfd_addr = addr;
}

static void vpci_queue_event(void *opaque, _unused_ uint32_t events)
{
        struct vpci_queue *q = opaque;
        struct virtio_dev *dev = q->vpci->dev;
        eventfd_t count;

        (void)eventfd_read(q->eventfd, &count);

        virtio_dev_lock(dev);
        /* The kick may predate a reset: only enabled queues of a running device are served. */
        if (dev->queues[q->idx].enabled && virtio_dev_running(dev) && dev->ops->queue_notify)
                dev->ops->queue_notify(dev, q->idx);
        virtio_dev_unlock(dev);
}

/* A notify write that exited to user space: hand it to the loop like an ioeventfd would. */
static void vpci_notify_write(struct virtio_pci *vpci, uint32_t off)
{
        unsigned idx = off / VPCI_NOTIFY_MULT;

        if (idx < vpci->dev->ops->nr_queues)
                (void)eventfd_write(vpci->queues[idx].eventfd, 1);
}

/* ---- Transport ops (called by devices with dev->lock held) ------------------------------ */

static void vpci_signal_queue(struct virtio_dev *dev, unsigned idx)
{
        struct virtio_pci *vpci = dev->transport_priv;

        if (idx >= dev->ops->nr_queues)
                return;
        vpci->isr |= VPCI_ISR_QUEUE;
        vector_notify(vpci, dev->queues[idx].msix_vector);
}

static void vpci_signal_config(struct virtio_dev *dev)
{
        struct virtio_pci *vpci = dev->transport_priv;

        vpci->config_generation++;
        vpci->isr |= VIRTIO_PCI_ISR_CONFIG;
        vector_notify(vpci, vpci->config_vector);
}

static const struct virtio_transport_ops vpci_transport_ops = {
        .signal_queue = vpci_signal_queue,
        .signal_config = vpci_signal_config,
};

/* ---- Common configuration -------------------------------------------------------------- */

static void device_reset(struct virtio_pci *vpci)
{
        struct virtio_dev *dev = vpci->dev;

        if (dev->ops->reset)
                dev->ops->reset(dev);
        for (unsigned i = 0; i < dev->ops->nr_queues; i++) {
                ioeventfd_unassign(vpci, &vpci->queues[i]);
                virtq_reset(&dev->queues[i]);
                dev->queues[i].size = dev->ops->queue_max_size;
        }
        dev->status = 0;
        dev->driver_features = 0;
        dev->needs_reset_logged = false;
        vpci->guest_features = 0;
        vpci->dfselect = vpci->gfselect = 0;
        vpci->queue_select = 0;
        vpci->config_vector = VIRTIO_MSI_NO_VECTOR;
        vpci->isr = 0;
        /*
         * The MSI-X table, its enable bits and the KVM routes are PCI function state and survive
         * a virtio reset; interrupts latched for the old device instance do not.
         */
        for (unsigned v = 0; v < vpci->nr_vectors; v++)
                vpci->vectors[v].pending = false;
}

static bool features_acceptable(const struct virtio_pci *vpci)
{
        struct virtio_dev *dev = vpci->dev;

        if ((vpci->guest_features & ~vpci->device_features) ||
            !(vpci->guest_features & (UINT64_C(1) << VIRTIO_F_VERSION_1)))
                return false;
        return !dev->ops->features_ok || dev->ops->features_ok(dev, vpci->guest_features);
}

static void driver_ok(struct virtio_pci *vpci)
{
        struct virtio_dev *dev = vpci->dev;
        int r = 0;

        if (dev->ops->activate)
                r = dev->ops->activate(dev, dev->driver_features);
        if (r < 0) {
                log_warn_errno(r, "virtio-%s: activation failed", dev->ops->name);
                virtio_dev_needs_reset(dev, "activation failed");
                return;
        }
        /* Buffers made available before DRIVER_OK were not served: kick every queue once. */
        for (unsigned i = 0; i < dev->ops->nr_queues; i++)
                if (dev->queues[i].enabled)
                        (void)eventfd_write(vpci->queues[i].eventfd, 1);
}

static void status_write(struct virtio_pci *vpci, uint8_t val)
{
        struct virtio_dev *dev = vpci->dev;
        uint8_t old = dev->status, status;

        if (val == 0) {
                device_reset(vpci);
                return;
        }
        /* Bits only go away with a reset; NEEDS_RESET belongs to the device. */
        status = (val & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET) | (old & STATUS_STICKY);

        if ((status & ~old & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(vpci)) {
                log_debug("virtio-%s: refusing features 0x%llx", dev->ops->name,
                          (unsigned long long)vpci->guest_features);
                status &= ~VIRTIO_STATUS_FEATURES_OK; /* the driver reads it back and gives up */
        }
        if (status & ~old & VIRTIO_STATUS_FEATURES_OK)
                dev->driver_features = vpci->guest_features;
        if ((status & ~old & VIRTIO_STATUS_DRIVER_OK) && !(status & VIRTIO_STATUS_FEATURES_OK))
                status &= ~VIRTIO_STATUS_DRIVER_OK;

        dev->status = status;
        if (status & ~old & VIRTIO_STATUS_DRIVER_OK)
                driver_ok(vpci);
}

static struct virtq *selected_queue(struct virtio_pci *vpci)
{
        if (vpci->queue_select >= vpci->dev->ops->nr_queues)
                return NULL;
        return &vpci->dev->queues[vpci->queue_select];
}

static uint16_t vector_or_none(const struct virtio_pci *vpci, uint16_t v)
{
        return v < vpci->nr_vectors ? v : VIRTIO_MSI_NO_VECTOR;
}

static void queue_enable(struct virtio_pci *vpci, unsigned idx)
{
        struct virtio_dev *dev = vpci->dev;
        struct virtq *vq = &dev->queues[idx];
        char reason[64];

        if (vq->enabled)
                return;
        if (!(dev->status & VIRTIO_STATUS_FEATURES_OK)) {
                snprintf(reason, sizeof(reason), "queue %u enabled before FEATURES_OK", idx);
                virtio_dev_needs_reset(dev, reason);
                return;
        }
        if (vq->size > dev->ops->queue_max_size || virtq_validate_rings(vq) < 0) {
                snprintf(reason, sizeof(reason), "queue %u: bad size or rings outside RAM", idx);
                virtio_dev_needs_reset(dev, reason);
                return;
        }
        vq->last_avail_idx = 0;
        vq->used_idx = 0;
        vq->signalled_used_valid = false;
        vq->event_idx = virtio_dev_has_feature(dev, VIRTIO_F_EVENT_IDX);
        vq->enabled = true;
        ioeventfd_assign(vpci, &vpci->queues[idx]);
}

/* Feature bits are exposed 32 at a time; selectors past bit 63 read zeroes. */
static uint32_t feature_word(uint64_t features, uint32_t select)
{
        return select < 2 ? (uint32_t)(features >> (32 * select)) : 0;
}

static bool common_read(struct virtio_pci *vpci, uint32_t off, uint32_t len, uint64_t *val)
{
        struct virtio_dev *dev = vpci->dev;
        struct virtq *q = selected_queue(vpci);

        switch (off) {
        case VIRTIO_PCI_COMMON_DFSELECT:
                *val = vpci->dfselect;
                return len == 4;
        case VIRTIO_PCI_COMMON_DF:
                *val = feature_word(vpci->device_features, vpci->dfselect);
                return len == 4;
        case VIRTIO_PCI_COMMON_GFSELECT:
                *val = vpci->gfselect;
                return len == 4;
        case VIRTIO_PCI_COMMON_GF:
                *val = feature_word(vpci->guest_features, vpci->gfselect);
                return len == 4;
        case VIRTIO_PCI_COMMON_MSIX:
                *val = vpci->config_vector;
                return len == 2;
        case VIRTIO_PCI_COMMON_NUMQ:
                *val = dev->ops->nr_queues;
                return len == 2;
        case VIRTIO_PCI_COMMON_STATUS:
                *val = dev->status;
                return len == 1;
        case VIRTIO_PCI_COMMON_CFGGENERATION:
                *val = vpci->config_generation;
                return len == 1;
        case VIRTIO_PCI_COMMON_Q_SELECT:
                *val = vpci->queue_select;
                return len == 2;
        case VIRTIO_PCI_COMMON_Q_SIZE:
                *val = q ? q->size : 0; /* 0: no such queue */
                return len == 2;
        case VIRTIO_PCI_COMMON_Q_MSIX:
                *val = q ? q->msix_vector : VIRTIO_MSI_NO_VECTOR;
                return len == 2;
        case VIRTIO_PCI_COMMON_Q_ENABLE:
                *val = q ? q->enabled : 0;
                return len == 2;
        case VIRTIO_PCI_COMMON_Q_NOFF:
                *val = q ? vpci->queue_select : 0;
                return len == 2;
        case VIRTIO_PCI_COMMON_Q_DESCLO:
        case VIRTIO_PCI_COMMON_Q_DESCHI:
                *val = q ? q->desc_gpa : 0;
                break;
        case VIRTIO_PCI_COMMON_Q_AVAILLO:
        case VIRTIO_PCI_COMMON_Q_AVAILHI:
                *val = q ? q->avail_gpa : 0;
                break;
        case VIRTIO_PCI_COMMON_Q_USEDLO:
        case VIRTIO_PCI_COMMON_Q_USEDHI:
                *val = q ? q->used_gpa : 0;
                break;
        default:
                return false; /* notify_data, queue_reset: features never offered */
        }
        /* 64-bit fields: two 32-bit halves, or one 64-bit access at the low half. */
        if (off % 8 == 4) {
                *val >>= 32;
                return len == 4;
        }
        if (len == 4)
                *val = (uint32_t)*val;
        return len == 4 || len == 8;
}

static void set_half(uint64_t *field, uint32_t off, uint32_t len, uint64_t val)
{
        if (len == 8 && off % 8 == 0)
                *field = val;
        else if (len == 4 && off % 8 == 0)
                *field = (*field & ~(uint64_t)UINT32_MAX) | (uint32_t)val;
        else if (len == 4)
                *field = (*field & UINT32_MAX) | (uint64_t)(uint32_t)val << 32;
}

/* Ring addresses and size only change while the queue is disabled (4.1.4.3.2). */
static void queue_write(struct virtio_pci *vpci, struct virtq *q, uint32_t off, uint32_t len,
                        uint64_t val)
{
        if (off == VIRTIO_PCI_COMMON_Q_MSIX) {
                if (len == 2)
                        q->msix_vector = vector_or_none(vpci, val);
                return;
        }
        if (off == VIRTIO_PCI_COMMON_Q_ENABLE) {
                if (len == 2 && val == 1)
                        queue_enable(vpci, vpci->queue_select);
                return;
        }
        if (q->enabled)
                return;
        if (off == VIRTIO_PCI_COMMON_Q_SIZE && len == 2)
                q->size = val; /* checked (power of two, <= max) when enabled */
        else if (off == VIRTIO_PCI_COMMON_Q_DESCLO || off == VIRTIO_PCI_COMMON_Q_DESCHI)
                set_half(&q->desc_gpa, off, len, val);
        else if (off == VIRTIO_PCI_COMMON_Q_AVAILLO || off == VIRTIO_PCI_COMMON_Q_AVAILHI)
                set_half(&q->avail_gpa, off, len, val);
        else if (off == VIRTIO_PCI_COMMON_Q_USEDLO || off == VIRTIO_PCI_COMMON_Q_USEDHI)
                set_half(&q->used_gpa, off, len, val);
}

static void common_write(struct virtio_pci *vpci, uint32_t off, uint32_t len, uint64_t val)
{
        struct virtio_dev *dev = vpci->dev;
        struct virtq *q;

        switch (off) {
        case VIRTIO_PCI_COMMON_DFSELECT:
                if (len == 4)
                        vpci->dfselect = val;
                return;
        case VIRTIO_PCI_COMMON_GFSELECT:
                if (len == 4)
                        vpci->gfselect = val;
                return;
        case VIRTIO_PCI_COMMON_GF:
                /* Frozen once FEATURES_OK was accepted. */
                if (len == 4 && vpci->gfselect < 2 && !(dev->status & VIRTIO_STATUS_FEATURES_OK)) {
                        unsigned shift = 32 * vpci->gfselect;

                        vpci->guest_features &= ~((uint64_t)UINT32_MAX << shift);
                        vpci->guest_features |= (uint64_t)(uint32_t)val << shift;
                }
                return;
        case VIRTIO_PCI_COMMON_MSIX:
                if (len == 2)
                        vpci->config_vector = vector_or_none(vpci, val);
                return;
        case VIRTIO_PCI_COMMON_STATUS:
                if (len == 1)
                        status_write(vpci, val);
                return;
        case VIRTIO_PCI_COMMON_Q_SELECT:
                if (len == 2)
                        vpci->queue_select = val;
                return;
        default:
                q = selected_queue(vpci);
                if (q && off >= VIRTIO_PCI_COMMON_Q_SIZE && off < VIRTIO_PCI_COMMON_Q_NDATA)
                        queue_write(vpci, q, off, len, val);
                return;
        }
}

static void common_access(struct virtio_pci *vpci, uint32_t off, uint8_t *data, uint32_t len,
                          bool is_write)
{
        uint64_t val = 0;

        if (!IS_ALIGNED(off, len))
                return; /* reads stay 0 */
        if (is_write)
                common_write(vpci, off, len, get_le(data, len));
        else if (common_read(vpci, off, len, &val))
                put_le(data, len, val);
}

/* ---- BAR 0 ------------------------------------------------------------------------------ */

static void device_cfg_access(struct virtio_pci *vpci, uint32_t off, uint8_t *data, uint32_t len,
                              bool is_write)
{
        struct virtio_dev *dev = vpci->dev;
        uint32_t size = dev->ops->config_size;

        if (off >= size || len > size - off)
                return;
        if (is_write) {
                if (dev->ops->write_config)
                        dev->ops->write_config(dev, off, data, len);
        } else if (dev->ops->read_config) {
                dev->ops->read_config(dev, off, data, len);
        }
}

static bool in_region(uint64_t off, uint32_t len, uint32_t start, uint32_t size)
{
        return off >= start && off - start < size && len <= size - (off - start);
}

static void bar_dispatch(struct virtio_pci *vpci, uint64_t off, uint8_t *data, uint32_t len,
                         bool is_write)
{
        unsigned nr_queues = vpci->dev->ops->nr_queues;

        if (in_region(off, len, VPCI_COMMON_OFF, VPCI_COMMON_LEN)) {
                common_access(vpci, off - VPCI_COMMON_OFF, data, len, is_write);
        } else if (in_region(off, len, VPCI_ISR_OFF, 4)) {
                /* Reading ISR acknowledges it (4.1.4.5); writes are ignored. */
                if (!is_write && off == VPCI_ISR_OFF) {
                        data[0] = vpci->isr;
                        vpci->isr = 0;
                }
        } else if (in_region(off, len, VPCI_DEVICE_OFF, VPCI_DEVICE_MAX)) {
                device_cfg_access(vpci, off - VPCI_DEVICE_OFF, data, len, is_write);
        } else if (in_region(off, len, VPCI_NOTIFY_OFF, VPCI_NOTIFY_MULT * nr_queues)) {
                if (is_write)
                        vpci_notify_write(vpci, off - VPCI_NOTIFY_OFF);
        } else if (in_region(off, len, VPCI_MSIX_TABLE_OFF, 0x1000)) {
                msix_table_access(vpci, off - VPCI_MSIX_TABLE_OFF, data, len, is_write);
        } else if (in_region(off, len, VPCI_MSIX_PBA_OFF, 0x1000)) {
                if (!is_write) /* the PBA is read-only */
                        msix_pba_read(vpci, off - VPCI_MSIX_PBA_OFF, data, len);
        }
}

static void vpci_bar_access(struct pci_device *pdev, unsigned bar, uint64_t off, uint8_t *data,
                            uint32_t len, bool is_write)
{
        struct virtio_pci *vpci = to_vpci(pdev);

        if (!is_write)
                memset(data, 0, len); /* unimplemented registers read as zero */
        if (bar != VPCI_BAR || len == 0 || len > 8)
                return;

        virtio_dev_lock(vpci->dev);
        bar_dispatch(vpci, off, data, len, is_write);
        virtio_dev_unlock(vpci->dev);
}

static void vpci_bar_moved(struct pci_device *pdev, unsigned bar, bool mapped, uint64_t addr)
{
        struct virtio_pci *vpci = to_vpci(pdev);

        if (bar != VPCI_BAR)
                return;
        virtio_dev_lock(vpci->dev);
        for (unsigned i = 0; i < vpci->dev->ops->nr_queues; i++)
                ioeventfd_unassign(vpci, &vpci->queues[i]);
        vpci->bar_mapped = mapped;
        vpci->bar_addr = addr;
        for (unsigned i = 0; i < vpci->dev->ops->nr_queues; i++)
                ioeventfd_assign(vpci, &vpci->queues[i]);
        virtio_dev_unlock(vpci->dev);
}

/* ---- Config space hooks (pci->lock held) ------------------------------------------------ */

static bool overlaps(uint32_t a, uint32_t alen, uint32_t b, uint32_t blen)
{
        return a < b + blen && b < a + alen;
}

/* VIRTIO_PCI_CAP_PCI_CFG (4.1.4.9): BAR access through config space, for firmware. */
static void pci_cfg_window(struct virtio_pci *vpci, bool is_write)
{
        struct pci_device *pdev = &vpci->pci;
        uint32_t cap = vpci->pci_cfg_cap;
        uint8_t bar = pci_config_get(pdev, cap + VIRTIO_PCI_CAP_BAR, 1);
        uint32_t off = pci_config_get(pdev, cap + VIRTIO_PCI_CAP_OFFSET, 4);
        uint32_t len = pci_config_get(pdev, cap + VIRTIO_PCI_CAP_LENGTH, 4);
        uint8_t *window = pdev->config + cap + PCI_CFG_DATA;

        if (bar != VPCI_BAR || (len != 1 && len != 2 && len != 4) || off % len ||
            off > VPCI_BAR_SIZE - len)
                return;
        vpci_bar_access(pdev, bar, off, window, len, is_write);
}

static void vpci_config_read(struct pci_device *pdev, uint32_t off, uint32_t len)
{
        struct virtio_pci *vpci = to_vpci(pdev);

        if (overlaps(off, len, vpci->pci_cfg_cap + PCI_CFG_DATA, 4))
                pci_cfg_window(vpci, false);
}

static void vpci_config_write(struct pci_device *pdev, uint32_t off, uint32_t len)
{
        struct virtio_pci *vpci = to_vpci(pdev);

        if (overlaps(off, len, vpci->msix_cap + PCI_MSIX_FLAGS, 2)) {
                uint16_t ctrl = pci_config_get(pdev, vpci->msix_cap + PCI_MSIX_FLAGS, 2);

                virtio_dev_lock(vpci->dev);
                msix_control_changed(vpci, ctrl);
                virtio_dev_unlock(vpci->dev);
        }
        if (overlaps(off, len, vpci->pci_cfg_cap + PCI_CFG_DATA, 4))
                pci_cfg_window(vpci, true);
}

/* ---- Lifetime --------------------------------------------------------------------------- */

static void vpci_free(struct virtio_pci *vpci)
{
        struct virtio_dev *dev;

        if (!vpci)
                return;
        dev = vpci->dev;
        for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
                struct vpci_queue *q = &vpci->queues[i];

                ioeventfd_unassign(vpci, q);
                if (q->src)
                        event_source_free(q->src);
                closep(&q->eventfd);
        }
        for (unsigned v = 0; v < VPCI_MAX_VECTORS; v++) {
                struct vpci_vector *vec = &vpci->vectors[v];

                if (vec->irqfd_bound)
                        (void)kvm_irqfd(vpci->vm, vec->eventfd, vec->gsi, false);
                closep(&vec->eventfd);
                if (vec->gsi_valid)
                        kvm_msi_route_free(vpci->vm, vec->gsi);
        }
        if (vpci->lock_initialized)
                virtio_dev_detach(dev);
        free(vpci);
}

static void vpci_freep(struct virtio_pci **vpci)
{
        vpci_free(*vpci);
}

static void vpci_destroy(struct pci_device *pdev)
{
        vpci_free(to_vpci(pdev));
}

static const struct pci_device_ops vpci_pci_ops = {
        .bar_access = vpci_bar_access,
        .bar_moved = vpci_bar_moved,
        .config_read = vpci_config_read,
        .config_write = vpci_config_write,
        .destroy = vpci_destroy,
};

static int queues_init(struct virtio_pci *vpci, struct event_loop *loop)
{
        struct virtio_dev *dev = vpci->dev;
        int r;

        for (unsigned i = 0; i < dev->ops->nr_queues; i++) {
                struct vpci_queue *q = &vpci->queues[i];

                q->vpci = vpci;
                q->idx = i;
                dev->queues[i].mem = dev->mem;
                virtq_reset(&dev->queues[i]);
                dev->queues[i].size = dev->ops->queue_max_size;

                q->eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                if (q->eventfd < 0)
                        return -errno;
                /* Watched for the transport's whole life; kicks on a disabled queue are dropped. */
                r = event_loop_add_fd(loop, q->eventfd, EPOLLIN, vpci_queue_event, q, &q->src);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int vectors_init(struct virtio_pci *vpci)
{
        int r;

        for (unsigned v = 0; v < vpci->nr_vectors; v++) {
                struct vpci_vector *vec = &vpci->vectors[v];

                /* Entries come out of reset masked (PCI 3.0, 6.8.2.9). */
                put_le(msix_entry(vpci, v) + PCI_MSIX_ENTRY_VECTOR_CTRL, 4,
                       PCI_MSIX_ENTRY_CTRL_MASKBIT);

                r = kvm_msi_route_alloc(vpci->vm, &vec->gsi);
                if (r < 0)
                        return r;
                vec->gsi_valid = true;
                vec->eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                if (vec->eventfd < 0)
                        return -errno;
                r = kvm_irqfd(vpci->vm, vec->eventfd, vec->gsi, true);
                if (r < 0)
                        return r;
                vec->irqfd_bound = true;
        }
        return 0;
}

static int add_virtio_cap(struct pci_device *pdev, uint8_t cfg_type, uint32_t off, uint32_t len,
                          uint8_t cap_len, uint32_t extra, uint8_t *ret_off)
{
        uint8_t cap[VIRTIO_NOTIFY_CAP_LEN] = {0};

        cap[VIRTIO_PCI_CAP_VNDR] = PCI_CAP_ID_VNDR;
        cap[VIRTIO_PCI_CAP_LEN] = cap_len;
        cap[VIRTIO_PCI_CAP_CFG_TYPE] = cfg_type;
        cap[VIRTIO_PCI_CAP_BAR] = VPCI_BAR;
        put_le(cap + VIRTIO_PCI_CAP_OFFSET, 4, off);
        put_le(cap + VIRTIO_PCI_CAP_LENGTH, 4, len);
        if (cap_len > VIRTIO_CAP_LEN)
                put_le(cap + VIRTIO_CAP_LEN, 4, extra);
        return pci_device_add_cap(pdev, cap, cap_len, ret_off);
}

static int caps_init(struct virtio_pci *vpci)
{
        struct pci_device *pdev = &vpci->pci;
        const struct virtio_dev_ops *ops = vpci->dev->ops;
        uint8_t msix[MSIX_CAP_LEN] = {PCI_CAP_ID_MSIX};
        uint8_t off;
        int r;

        put_le(msix + PCI_MSIX_FLAGS, 2, vpci->nr_vectors - 1);
        put_le(msix + PCI_MSIX_TABLE, 4, VPCI_MSIX_TABLE_OFF | VPCI_BAR);
        put_le(msix + PCI_MSIX_PBA, 4, VPCI_MSIX_PBA_OFF | VPCI_BAR);
        r = pci_device_add_cap(pdev, msix, sizeof(msix), &vpci->msix_cap);
        if (r < 0)
                return r;
        pci_wmask_set(pdev, vpci->msix_cap + PCI_MSIX_FLAGS, 2,
                      PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);

        r = add_virtio_cap(pdev, VIRTIO_PCI_CAP_COMMON_CFG, VPCI_COMMON_OFF, VPCI_COMMON_LEN,
                           VIRTIO_CAP_LEN, 0, &off);
        if (r >= 0)
                r = add_virtio_cap(pdev, VIRTIO_PCI_CAP_ISR_CFG, VPCI_ISR_OFF, VPCI_ISR_LEN,
                                   VIRTIO_CAP_LEN, 0, &off);
        if (r >= 0 && ops->config_size > 0)
                r = add_virtio_cap(pdev, VIRTIO_PCI_CAP_DEVICE_CFG, VPCI_DEVICE_OFF,
                                   ops->config_size, VIRTIO_CAP_LEN, 0, &off);
        if (r >= 0)
                r = add_virtio_cap(pdev, VIRTIO_PCI_CAP_NOTIFY_CFG, VPCI_NOTIFY_OFF,
                                   VPCI_NOTIFY_MULT * ops->nr_queues, VIRTIO_NOTIFY_CAP_LEN,
                                   VPCI_NOTIFY_MULT, &off);
        if (r >= 0)
                r = add_virtio_cap(pdev, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, VIRTIO_PCI_CFG_CAP_LEN, 0,
                                   &vpci->pci_cfg_cap);
        if (r < 0)
                return r;
        /* The driver picks the window: bar, offset, length, then reads or writes the data. */
        pci_wmask_set(pdev, vpci->pci_cfg_cap + VIRTIO_PCI_CAP_BAR, 1, 0xff);
        pci_wmask_set(pdev, vpci->pci_cfg_cap + VIRTIO_PCI_CAP_OFFSET, 4, UINT32_MAX);
        pci_wmask_set(pdev, vpci->pci_cfg_cap + VIRTIO_PCI_CAP_LENGTH, 4, UINT32_MAX);
        pci_wmask_set(pdev, vpci->pci_cfg_cap + PCI_CFG_DATA, 4, UINT32_MAX);
        return 0;
}

static int pci_function_init(struct virtio_pci *vpci)
{
        const struct virtio_dev_ops *ops = vpci->dev->ops;
        const struct pci_device_id id = {
                .vendor = VPCI_VENDOR_ID,
                .device = VPCI_DEVICE_BASE + ops->device_id,
                .subsys_vendor = VPCI_VENDOR_ID,
                .subsys_id = ops->device_id,
                .class_code = ops->pci_class,
                .revision = VPCI_REVISION,
        };
        int r;

        pci_device_init(&vpci->pci, &vpci_pci_ops, vpci, &id);
        r = pci_device_set_bar(&vpci->pci, VPCI_BAR, VPCI_BAR_SIZE, PCI_BAR_F_64BIT);
        if (r < 0)
                return r;
        return caps_init(vpci);
}

static int ops_valid(const struct virtio_dev_ops *ops)
{
        uint16_t qmax = ops->queue_max_size;

        return ops->nr_queues > 0 && ops->nr_queues <= VIRTIO_MAX_QUEUES && qmax > 0 &&
               !(qmax & (qmax - 1)) && qmax <= VIRTQ_MAX_SIZE &&
               ops->config_size <= VPCI_DEVICE_MAX;
}

int virtio_pci_create(struct pci_bus *pci, struct kvm_vm *vm, struct event_loop *loop,
                      const struct guest_mem *mem, struct virtio_dev *dev, struct virtio_pci **ret)
{
        _cleanup_(vpci_freep) struct virtio_pci *vpci = NULL;
        int r;

        if (!dev || !dev->ops || !ops_valid(dev->ops))
                return -EINVAL;
        vpci = calloc(1, sizeof(*vpci));
        if (!vpci)
                return -ENOMEM;
        for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
                vpci->queues[i].eventfd = -1;
        for (unsigned v = 0; v < VPCI_MAX_VECTORS; v++)
                vpci->vectors[v].eventfd = -1;
        vpci->dev = dev;
        vpci->vm = vm;
        vpci->nr_vectors = dev->ops->nr_queues + 1;
        vpci->config_vector = VIRTIO_MSI_NO_VECTOR;

        r = virtio_dev_attach(dev, &vpci_transport_ops, vpci, mem, loop);
        if (r < 0)
                return r;
        vpci->lock_initialized = true;
        vpci->device_features = dev->ops->features ? dev->ops->features(dev) : 0;
        vpci->device_features =
                (vpci->device_features | TRANSPORT_FEATURES) & ~FEATURES_NOT_OFFERED;

        r = queues_init(vpci, loop);
        if (r < 0)
                return r;
        r = vectors_init(vpci);
        if (r < 0)
                return r;
        r = pci_function_init(vpci);
        if (r < 0)
                return r;
        r = pci_bus_add(pci, &vpci->pci);
        if (r < 0)
                return r;

        if (ret)
                *ret = vpci;
        TAKE_PTR(vpci); /* owned by the bus now */
        return 0;
}

void virtio_pci_reset(struct virtio_pci *vpci)
{
        virtio_dev_lock(vpci->dev);
        device_reset(vpci);
        virtio_dev_unlock(vpci->dev);
}
