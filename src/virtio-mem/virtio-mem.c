/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-mem, the device proper: what tidal offers and insists on, the config space, reset,
 * and the API the VMM drives it with. The requests themselves are handled in requests.c.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "tidal/clock.h"
#include "tidal/log.h"
#include "virtio-mem/virtio-mem-internal.h"

#define F(bit) (UINT64_C(1) << (bit))

static struct virtio_mem *to_vmem(struct virtio_dev *dev)
{
        return dev->priv;
}

/* Not ACPI_PXM: tidal publishes no SRAT, so node_id has nothing to name. */
static uint64_t vmem_features(struct virtio_dev *dev)
{
        return F(VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE);
}

/*
 * Unplugged blocks are PROT_NONE: a guest touching one stops (KVM_RUN fails). The spec lets a
 * driver without UNPLUGGED_INACCESSIBLE read unplugged memory in the usable region, so such a
 * driver (Linux before 5.16) is refused, as the spec allows (5.15.5.1), instead of being
 * stopped the first time it dumps memory.
 */
static bool vmem_features_ok(struct virtio_dev *dev, uint64_t features)
{
        struct virtio_mem *m = to_vmem(dev);

        if (features & F(VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE))
                return true;
        if (!m->features_refused_logged) {
                m->features_refused_logged = true;
                log_warn("virtio-mem: the guest's driver does not accept UNPLUGGED_INACCESSIBLE "
                         "(Linux older than 5.16?): refused, no memory can be hot-added");
        }
        return false;
}

static void put_le64(uint8_t *cfg, uint32_t off, uint64_t v)
{
        v = htole64(v);
        memcpy(cfg + off, &v, sizeof(v));
}

static void config_image(const struct virtio_mem *m, uint8_t cfg[VIRTIO_MEM_CONFIG_SIZE])
{
        memset(cfg, 0, VIRTIO_MEM_CONFIG_SIZE); /* node_id 0 and the padding */
        put_le64(cfg, VIRTIO_MEM_CONFIG_BLOCK_SIZE, m->block_size);
        put_le64(cfg, VIRTIO_MEM_CONFIG_ADDR, m->region->gpa);
        put_le64(cfg, VIRTIO_MEM_CONFIG_REGION_SIZE, m->region->size);
        put_le64(cfg, VIRTIO_MEM_CONFIG_USABLE_SIZE, virtio_mem_usable_size(m));
        put_le64(cfg, VIRTIO_MEM_CONFIG_PLUGGED, virtio_mem_plugged_size(m));
        put_le64(cfg, VIRTIO_MEM_CONFIG_REQUESTED, m->requested_size);
}

static void vmem_read_config(struct virtio_dev *dev, uint32_t off, void *data, uint32_t len)
{
        uint8_t cfg[VIRTIO_MEM_CONFIG_SIZE];

        config_image(to_vmem(dev), cfg);
        memcpy(data, cfg + off, len);
}

/* Every field is read-only for the driver (5.15.4.1): writes are dropped. */
static void vmem_write_config(struct virtio_dev *dev, uint32_t off, const void *data, uint32_t len)
{
        log_debug("virtio-mem: the driver wrote %u bytes at config offset %u; ignored", len, off);
}

static int vmem_activate(struct virtio_dev *dev, uint64_t features)
{
        return 0;
}

/* Which way the running driver still has to go: -1 unplug, +1 plug, 0 neither. */
static int behind_direction(const struct virtio_mem *m)
{
        uint64_t plugged = virtio_mem_plugged_size(m);

        if (!virtio_dev_running(&m->dev) || plugged == m->requested_size)
                return 0;
        return plugged > m->requested_size ? -1 : 1;
}

static uint64_t *behind_counter(struct virtio_mem_metrics *metrics, int behind)
{
        return behind < 0 ? &metrics->unplug_behind_ns : &metrics->plug_behind_ns;
}

static void set_behind(struct virtio_mem *m, int behind)
{
        uint64_t now;

        if (behind == m->behind)
                return;
        now = monotonic_ns();
        if (m->behind)
                *behind_counter(&m->metrics, m->behind) += now - m->behind_since_ns;
        m->behind = behind;
        m->behind_since_ns = now;
}

void virtio_mem_track_behind(struct virtio_mem *m)
{
        set_behind(m, behind_direction(m));
}

/*
 * Nothing to drop: blocks keep their state across a device reset (5.15.5.1), and a new driver
 * finds plugged_size > 0 and unplugs everything first. requested_size is the VMM's.
 */
static void vmem_reset(struct virtio_dev *dev)
{
        set_behind(to_vmem(dev), 0); /* no driver, nobody is behind */
}

static const struct virtio_dev_ops vmem_ops = {
        .name = "mem",
        .device_id = VIRTIO_ID_MEM,
        .pci_class = 0xff0000, /* unclassified: virtio-pci binds on vendor and device ID */
        .nr_queues = VIRTIO_MEM_NR_QUEUES,
        .queue_max_size = VIRTIO_MEM_QUEUE_SIZE,
        .config_size = VIRTIO_MEM_CONFIG_SIZE,
        .features = vmem_features,
        .features_ok = vmem_features_ok,
        .read_config = vmem_read_config,
        .write_config = vmem_write_config,
        .activate = vmem_activate,
        .queue_notify = virtio_mem_queue_notify,
        .reset = vmem_reset,
};

int virtio_mem_new(const struct virtio_mem_options *opts, struct guest_mem *mem,
                   struct virtio_mem **ret)
{
        const struct guest_mem_region *region = mem ? guest_mem_hotplug_region(mem) : NULL;
        struct virtio_mem *m;

        if (!region || mem->hotplug.block_size != VIRTIO_MEM_BLOCK_SIZE ||
            (opts && opts->requested_size > region->size))
                return -EINVAL;
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->mem = mem;
        m->region = region;
        m->block_size = VIRTIO_MEM_BLOCK_SIZE;
        m->requested_size = opts ? ALIGN_UP(opts->requested_size, m->block_size) : 0;
        /* dev.lock stays zeroed (a valid default mutex) until virtio_pci_create() inits it. */
        m->dev.ops = &vmem_ops;
        m->dev.priv = m;
        *ret = m;
        return 0;
}

void virtio_mem_free(struct virtio_mem *m)
{
        free(m);
}

struct virtio_dev *virtio_mem_virtio_dev(struct virtio_mem *m)
{
        return &m->dev;
}

int virtio_mem_set_requested(struct virtio_mem *m, uint64_t bytes)
{
        /* The region is a multiple of the block size, so rounding up cannot leave it. */
        if (bytes > m->region->size)
                return -ERANGE;
        bytes = ALIGN_UP(bytes, m->block_size);
        virtio_dev_lock(&m->dev);
        if (m->requested_size != bytes) {
                m->requested_size = bytes;
                virtio_mem_track_behind(m);
                /* Before DRIVER_OK the driver reads requested_size when it starts anyway. */
                if (virtio_dev_running(&m->dev))
                        virtio_dev_signal_config(&m->dev);
        }
        virtio_dev_unlock(&m->dev);
        return 0;
}

void virtio_mem_nudge(struct virtio_mem *m)
{
        virtio_dev_lock(&m->dev);
        if (virtio_dev_running(&m->dev)) {
                m->metrics.nudges++;
                virtio_dev_signal_config(&m->dev);
        }
        virtio_dev_unlock(&m->dev);
}

static enum virtio_mem_driver driver_state(const struct virtio_dev *dev)
{
        if (dev->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
                return VIRTIO_MEM_DRIVER_NEEDS_RESET;
        return virtio_dev_running(dev) ? VIRTIO_MEM_DRIVER_RUNNING : VIRTIO_MEM_DRIVER_NONE;
}

void virtio_mem_get_state(struct virtio_mem *m, struct virtio_mem_state *ret)
{
        virtio_dev_lock(&m->dev);
        *ret = (struct virtio_mem_state){
                .driver = driver_state(&m->dev),
                .features = m->dev.driver_features,
                .block_size = m->block_size,
                .addr = m->region->gpa,
                .region_size = m->region->size,
                .usable_region_size = virtio_mem_usable_size(m),
                .requested_size = m->requested_size,
                .plugged_size = virtio_mem_plugged_size(m),
                .metrics = m->metrics,
        };
        if (m->behind) /* the interval still running counts too */
                *behind_counter(&ret->metrics, m->behind) += monotonic_ns() - m->behind_since_ns;
        virtio_dev_unlock(&m->dev);
}
