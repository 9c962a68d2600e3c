/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-balloon, the device proper: what tidal offers, the config space (num_pages written by
 * the VMM, actual by the driver), which transport queue plays which role, reset, and the API
 * the VMM drives it with. What arrives in the queues is handled in queues.c.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>

#include "tidal/event-loop.h"
#include "tidal/log.h"
#include "virtio-balloon/balloon-internal.h"

/* struct virtio_balloon_config: num_pages, actual, free_page_hint_cmd_id, poison_val (le32). */
#define CONFIG_NUM_PAGES 0
#define CONFIG_ACTUAL    4
#define CONFIG_SIZE      16

static struct balloon *to_balloon(struct virtio_dev *dev)
{
        return dev->priv;
}

static uint64_t balloon_features(struct virtio_dev *dev)
{
        struct balloon *b = to_balloon(dev);
        /*
         * STATS_VQ is always offered: with a period of 0 the driver's buffer is only held, and the
         * VMM can start polling later. MUST_TELL_HOST is not: deflated pages need no host work.
         */
        uint64_t f =
                (UINT64_C(1) << VIRTIO_F_EVENT_IDX) | (UINT64_C(1) << VIRTIO_BALLOON_F_STATS_VQ);

        if (b->opts.deflate_on_oom)
                f |= UINT64_C(1) << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
        if (b->opts.free_page_reporting)
                f |= UINT64_C(1) << VIRTIO_BALLOON_F_REPORTING;
        return f;
}

static void config_image(const struct balloon *b, uint8_t cfg[CONFIG_SIZE])
{
        uint32_t num_pages = htole32(b->num_pages), actual = htole32(b->actual);

        memset(cfg, 0, CONFIG_SIZE);
        memcpy(cfg + CONFIG_NUM_PAGES, &num_pages, sizeof(num_pages));
        memcpy(cfg + CONFIG_ACTUAL, &actual, sizeof(actual));
}

static void balloon_read_config(struct virtio_dev *dev, uint32_t off, void *data, uint32_t len)
{
        uint8_t cfg[CONFIG_SIZE];

        config_image(to_balloon(dev), cfg);
        memcpy(data, cfg + off, len);
}

/* Only actual is the driver's to write; any access width that touches it is merged in. */
static void balloon_write_config(struct virtio_dev *dev, uint32_t off, const void *data,
                                 uint32_t len)
{
        struct balloon *b = to_balloon(dev);
        uint8_t cfg[CONFIG_SIZE];
        uint32_t actual;

        config_image(b, cfg);
        memcpy(cfg + off, data, len);
        memcpy(&actual, cfg + CONFIG_ACTUAL, sizeof(actual));
        b->actual = le32toh(actual);
        /* The driver is done inflating: punch what partial blocks hold rather than wait. */
        if (b->actual >= b->num_pages)
                balloon_flush(b);
}

/*
 * Linux gives transport queue indexes only to the queues whose feature was negotiated, in the
 * order inflate, deflate, stats, free page hint, reporting (the spec numbers them 0-4 whatever
 * was negotiated; drivers do not). tidal never offers FREE_PAGE_HINT.
 */
static void map_queues(struct balloon *b, uint64_t features)
{
        unsigned n = 0;

        memset(b->roles, 0, sizeof(b->roles));
        b->roles[n++] = BALLOON_ROLE_INFLATE;
        b->roles[n++] = BALLOON_ROLE_DEFLATE;
        if (features & (UINT64_C(1) << VIRTIO_BALLOON_F_STATS_VQ))
                b->roles[n++] = BALLOON_ROLE_STATS;
        if (features & (UINT64_C(1) << VIRTIO_BALLOON_F_REPORTING))
                b->roles[n++] = BALLOON_ROLE_REPORTING;
}

static int balloon_activate(struct virtio_dev *dev, uint64_t features)
{
        struct balloon *b = to_balloon(dev);
        int r;

        map_queues(b, features);
        r = balloon_flush_timer_init(b);
        if (r < 0)
                return r;
        return balloon_stats_timer_update(b);
}

static void balloon_reset(struct virtio_dev *dev)
{
        struct balloon *b = to_balloon(dev);

        /*
         * A new driver starts with an empty balloon; the held stats buffer is gone with it. The
         * old driver's pending pages are punched now: the new one may use them once it runs.
         */
        balloon_flush(b);
        memset(b->roles, 0, sizeof(b->roles));
        b->actual = 0;
        b->inflated_pages = 0;
        b->stats_held = false;
}

static const struct virtio_dev_ops balloon_ops = {
        .name = "balloon",
        .device_id = VIRTIO_ID_BALLOON,
        .pci_class = 0xff0000, /* unclassified: virtio-pci binds on vendor and device ID */
        .nr_queues = BALLOON_NR_QUEUES,
        .queue_max_size = BALLOON_QUEUE_SIZE,
        .config_size = CONFIG_SIZE,
        .features = balloon_features,
        .read_config = balloon_read_config,
        .write_config = balloon_write_config,
        .activate = balloon_activate,
        .queue_notify = balloon_queue_notify,
        .reset = balloon_reset,
};

void balloon_options_default(struct balloon_options *opts)
{
        *opts = (struct balloon_options){
                .deflate_on_oom = true,
                .free_page_reporting = true,
                .stats_period_s = 1,
        };
}

int balloon_new(const struct balloon_options *opts, struct guest_mem *mem, struct balloon **ret)
{
        struct balloon *b;

        if (!mem || (opts && opts->stats_period_s > BALLOON_STATS_PERIOD_MAX_S))
                return -EINVAL;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->stats_event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (b->stats_event_fd < 0) {
                free(b);
                return -errno;
        }
        if (opts)
                b->opts = *opts;
        else
                balloon_options_default(&b->opts);
        b->mem = mem;
        /*
         * Hot-added (virtio-mem) memory can be ballooned too: dynamic memory covers plugged
         * blocks virtio-mem cannot unplug with the balloon. So the most the guest can ever have.
         */
        b->ram_pages = MAX(mem->size, mem->map_size) / GUEST_PAGE_SIZE;
        /* dev.lock stays zeroed (a valid default mutex) until virtio_pci_create() inits it. */
        b->dev.ops = &balloon_ops;
        b->dev.priv = b;
        *ret = b;
        return 0;
}

void balloon_free(struct balloon *b)
{
        if (!b)
                return;
        balloon_flush(b); /* the host gets back what was ballooned, even on the way out */
        event_source_free(b->flush_timer);
        event_source_free(b->stats_timer);
        close(b->stats_event_fd);
        free(b);
}

int balloon_stats_eventfd(struct balloon *b)
{
        return b->stats_event_fd;
}

struct virtio_dev *balloon_virtio_dev(struct balloon *b)
{
        return &b->dev;
}

int balloon_set_target(struct balloon *b, uint64_t bytes)
{
        uint64_t pages = bytes / GUEST_PAGE_SIZE;

        /* num_pages is 32 bits: 16 TiB, above any guest tidal runs, but check anyway. */
        if (pages > b->ram_pages || pages > UINT32_MAX)
                return -ERANGE;
        virtio_dev_lock(&b->dev);
        if (b->num_pages != pages) {
                b->num_pages = pages;
                /* Before DRIVER_OK the driver reads num_pages when it starts anyway. */
                if (virtio_dev_running(&b->dev))
                        virtio_dev_signal_config(&b->dev);
        }
        virtio_dev_unlock(&b->dev);
        return 0;
}

int balloon_set_stats_period(struct balloon *b, uint32_t seconds)
{
        int r;

        if (seconds > BALLOON_STATS_PERIOD_MAX_S)
                return -ERANGE;
        virtio_dev_lock(&b->dev);
        b->opts.stats_period_s = seconds;
        r = balloon_stats_timer_update(b);
        virtio_dev_unlock(&b->dev);
        return r;
}

void balloon_request_stats(struct balloon *b)
{
        virtio_dev_lock(&b->dev);
        balloon_stats_tick(b);
        virtio_dev_unlock(&b->dev);
}

void balloon_get_state(struct balloon *b, struct balloon_state *ret)
{
        uint64_t now = monotonic_ns();

        virtio_dev_lock(&b->dev);
        *ret = (struct balloon_state){
                .driver_ok = virtio_dev_running(&b->dev),
                .needs_reset = b->dev.status & VIRTIO_STATUS_DEVICE_NEEDS_RESET,
                .features = b->dev.driver_features,
                .target_bytes = (uint64_t)b->num_pages * GUEST_PAGE_SIZE,
                .actual_bytes = MIN((uint64_t)b->actual, b->ram_pages) * GUEST_PAGE_SIZE,
                .inflated_bytes = b->inflated_pages * GUEST_PAGE_SIZE,
                .pending_bytes = b->open.pending_pages * GUEST_PAGE_SIZE,
                .open_blocks = b->open.nr,
                .stats_period_s = b->opts.stats_period_s,
                .stats_valid = b->stats_valid,
                .stats = b->stats,
                .stats_seq = b->stats_seq,
                .stats_age_ns =
                        b->stats_valid && now > b->stats_time_ns ? now - b->stats_time_ns : 0,
                .metrics = b->metrics,
        };
        ret->metrics.deferred_pages = b->open.late_pages;
        ret->metrics.evicted_blocks = b->open.evictions;
        virtio_dev_unlock(&b->dev);
}
