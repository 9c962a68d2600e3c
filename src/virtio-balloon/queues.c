/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the balloon driver puts in the queues, and the stats timer. Everything here runs with
 * the device lock held. The guest is untrusted: virtq_pop() has checked the chains; this file
 * checks their contents (lengths, counts, PFNs, ranges) and gives nothing back to the host that
 * is not guest RAM. A request that breaks the protocol puts the device in DEVICE_NEEDS_RESET;
 * pages outside RAM and unaligned reported ranges are only skipped and counted.
 */
#include <endian.h>
#include <errno.h>
#include <sys/eventfd.h>

#include "tidal/event-loop.h"
#include "tidal/log.h"
#include "virtio-balloon/balloon-internal.h"

/*
 * Inflate or deflate: an array of le32 4 KiB PFNs, read 256 at a time. Inflated pages go to the
 * open-block table (discard.c), which punches the 2 MiB blocks they complete. Deflated pages
 * leave it, and the rest of it is flushed before the request is acknowledged: the balloon is
 * shrinking, and no page the guest takes back may be punched after it has it back.
 */
static int handle_pfns(struct balloon *b, const struct virtq_chain *chain, bool inflate,
                       const char **why)
{
        struct balloon_punch punch = {.b = b};
        pfn_range_fn fn = inflate ? balloon_inflate_range : balloon_deflate_range;
        void *opaque = inflate ? (void *)&punch : (void *)b;
        struct pfn_ranges_count count = {0};
        uint32_t pfns[PFN_BATCH_MAX];
        uint32_t nr = chain->out_bytes / sizeof(uint32_t);

        if (chain->out_bytes % sizeof(uint32_t) || nr > BALLOON_MAX_PFNS_PER_REQUEST) {
                *why = inflate ? "malformed inflate request" : "malformed deflate request";
                return -EBADMSG;
        }
        for (uint32_t done = 0; done < nr;) {
                uint32_t n = MIN(nr - done, PFN_BATCH_MAX);

                virtq_chain_read(chain, done * sizeof(uint32_t), pfns, n * sizeof(uint32_t));
                for (uint32_t i = 0; i < n; i++)
                        pfns[i] = le32toh(pfns[i]);
                pfn_ranges_from_pfns(pfns, n, b->mem, fn, opaque, &count);
                done += n;
        }
        b->metrics.out_of_range_pfns += count.out_of_range;
        if (inflate) {
                balloon_punch_end(&punch);
                balloon_inflate_done(b);
                b->metrics.inflate_requests++;
                b->metrics.inflated_pages += count.pages;
                /* A guest inflating the same page twice must not push this past its RAM. */
                b->inflated_pages = MIN(b->inflated_pages + count.pages, b->ram_pages);
        } else {
                balloon_flush(b);
                b->metrics.deflate_requests++;
                b->metrics.deflated_pages += count.pages;
                b->inflated_pages -= MIN(b->inflated_pages, count.pages);
        }
        return 0;
}

/*
 * Free page reporting: each buffer of the chain is a free guest range (Linux queues them as
 * device-writable scatterlist entries of page blocks). virtq_pop() checked they are RAM.
 */
static int handle_report(struct balloon *b, const struct virtq_chain *chain, const char **why)
{
        struct balloon_punch punch = {.b = b};
        struct pfn_ranges_count count = {0};
        struct pfn_range ranges[VIRTQ_MAX_CHAIN];
        size_t nr = 0;

        for (unsigned i = 0; i < chain->nr_bufs; i++) {
                const struct virtq_buf *buf = &chain->bufs[i];

                if (buf->len == 0)
                        continue;
                if (!IS_ALIGNED(buf->gpa | buf->len, (uint64_t)GUEST_PAGE_SIZE)) {
                        b->metrics.skipped_reports++;
                        continue;
                }
                ranges[nr++] = (struct pfn_range){.gpa = buf->gpa, .len = buf->len};
        }
        pfn_ranges_merge(ranges, nr, b->mem, balloon_report_range, &punch, &count);
        balloon_punch_end(&punch);
        b->metrics.report_requests++;
        b->metrics.reported_pages += count.pages;
        b->metrics.out_of_range_pfns += count.out_of_range;
        return 0;
}

/*
 * The stats queue runs backwards: the driver posts one buffer of statistics, the device keeps it
 * and returns it when it wants fresh values; the driver then refills and posts it again. A
 * second buffer while one is held (Linux never does this) sends the older one back at once.
 */
static int handle_stats(struct balloon *b, unsigned idx, const struct virtq_chain *chain,
                        const char **why)
{
        uint8_t buf[BALLOON_STATS_MAX_BYTES];
        struct balloon_stats st;
        int r;

        if (chain->out_bytes > BALLOON_STATS_MAX_BYTES ||
            balloon_stats_parse(buf, virtq_chain_read(chain, 0, buf, chain->out_bytes), &st) < 0) {
                *why = "malformed stats buffer";
                return -EBADMSG;
        }
        b->stats = st;
        b->stats_valid = true;
        b->stats_seq++;
        b->stats_time_ns = monotonic_ns();
        b->metrics.stats_updates++;
        /* Cannot fail short of a counter at 2^64 - 1; the reader drains it each time. */
        (void)eventfd_write(b->stats_event_fd, 1);

        if (b->stats_held) {
                r = virtq_push(&b->dev.queues[b->stats_queue], b->stats_head, 0);
                if (r < 0) {
                        *why = "malformed stats queue";
                        return r;
                }
                virtio_dev_signal_queue(&b->dev, b->stats_queue);
        }
        b->stats_held = true;
        b->stats_head = chain->head;
        b->stats_queue = idx;
        return 0;
}

/* Serves one chain; 1 if it was returned to the driver, 0 if held, or -EBADMSG. */
static int handle_chain(void *opaque, unsigned idx, const struct virtq_chain *chain,
                        const char **why)
{
        struct balloon *b = opaque;
        int r;

        switch (b->roles[idx]) {
        case BALLOON_ROLE_INFLATE:
                r = handle_pfns(b, chain, true, why);
                break;
        case BALLOON_ROLE_DEFLATE:
                r = handle_pfns(b, chain, false, why);
                break;
        case BALLOON_ROLE_REPORTING:
                r = handle_report(b, chain, why);
                break;
        case BALLOON_ROLE_STATS:
                return handle_stats(b, idx, chain, why);
        default:
                *why = "request on a queue without a role";
                return -EBADMSG;
        }
        if (r < 0)
                return r;
        /* Nothing is written back: the driver only waits for the buffer to come back. */
        if (virtq_push(&b->dev.queues[idx], chain->head, 0) < 0) {
                *why = "malformed used ring";
                return -EBADMSG;
        }
        return 1;
}

void balloon_queue_notify(struct virtio_dev *dev, unsigned idx)
{
        struct balloon *b = dev->priv;

        if (idx >= BALLOON_NR_QUEUES)
                return;
        if (virtio_dev_serve_queue(dev, idx, handle_chain, b) < 0)
                b->metrics.malformed_events++;
}

void balloon_stats_tick(struct balloon *b)
{
        if (!b->stats_held || !virtio_dev_running(&b->dev))
                return;
        b->stats_held = false;
        if (virtq_push(&b->dev.queues[b->stats_queue], b->stats_head, 0) < 0) {
                b->metrics.malformed_events++;
                virtio_dev_needs_reset(&b->dev, "malformed stats queue");
                return;
        }
        b->metrics.stats_requests++;
        virtio_dev_signal_queue(&b->dev, b->stats_queue);
}

static void stats_timer_fired(void *opaque, uint32_t events)
{
        struct balloon *b = opaque;

        virtio_dev_lock(&b->dev);
        balloon_stats_tick(b);
        virtio_dev_unlock(&b->dev);
}

int balloon_stats_timer_update(struct balloon *b)
{
        uint64_t period_ns = (uint64_t)b->opts.stats_period_s * 1000000000;

        /* Until the transport gives the device its loop there is nothing to arm; activate will. */
        if (!b->dev.loop)
                return 0;
        if (b->stats_timer)
                return event_source_set_period(b->stats_timer, period_ns);
        return event_loop_add_timer(b->dev.loop, period_ns, stats_timer_fired, b, &b->stats_timer);
}
