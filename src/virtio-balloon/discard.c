/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * How the balloon gives guest pages back to the host, huge-page aware. Reported ranges are
 * discarded at once. Inflated pages go through the open-block table (open-blocks.h): a 2 MiB
 * block is punched as soon as all its pages are ballooned, which frees its shmem huge page
 * whole; the pages of partial blocks wait, and are punched as runs when the table is flushed:
 * before a deflate is served (a page the guest takes back must never be punched after that),
 * on reset and free, when the driver's actual reaches the target, and once inflation has been
 * quiet for FLUSH_QUIET_NS. Punching part of a block while the guest is still ballooning the
 * rest would split the huge page and make the guest fault 4 KiB at a time on the rest.
 *
 * Everything runs with the device lock held. Every range is clipped to RAM as it stands when it
 * is punched (a virtio-mem block may have been unplugged since the guest named its pages).
 */
#include "tidal/event-loop.h"
#include "tidal/log.h"
#include "virtio-balloon/balloon-internal.h"

/* Inflation is over when no inflate request came for this long; the timer checks this often. */
#define FLUSH_QUIET_NS (200 * 1000000ull)

static void discard_one(struct balloon *b, uint64_t gpa, uint64_t len)
{
        int r;

        b->metrics.discard_calls++;
        r = guest_mem_discard(b->mem, gpa, len);
        if (r < 0) {
                /* The host's problem, not the guest's: the pages stay allocated. Log once. */
                b->metrics.discard_errors++;
                if (!b->discard_error_logged) {
                        b->discard_error_logged = true;
                        log_warn_errno(r, "virtio-balloon: cannot discard 0x%llx+0x%llx",
                                       (unsigned long long)gpa, (unsigned long long)len);
                }
                return;
        }
        b->metrics.discarded_bytes += len;
}

/* One discard per piece of [gpa, gpa + len) that is RAM now; the rest is skipped. */
static void punch_now(struct balloon *b, uint64_t gpa, uint64_t len)
{
        uint64_t pos = gpa, stop = gpa + len, s, e;

        while (pos < stop && guest_mem_next_ram(b->mem, pos, stop, &s, &e)) {
                discard_one(b, s, e - s);
                pos = e;
        }
}

void balloon_punch_add(void *opaque, uint64_t gpa, uint64_t len)
{
        struct balloon_punch *p = opaque;

        /* Batches come sorted, but a request's batches need not be: merge on either side. */
        if (p->len > 0 && (gpa == p->gpa + p->len || gpa + len == p->gpa)) {
                p->gpa = MIN(p->gpa, gpa);
                p->len += len;
                return;
        }
        balloon_punch_end(p);
        p->gpa = gpa;
        p->len = len;
}

void balloon_punch_end(struct balloon_punch *p)
{
        if (p->len > 0)
                punch_now(p->b, p->gpa, p->len);
        p->len = 0;
}

void balloon_inflate_range(void *opaque, uint64_t gpa, uint64_t len)
{
        struct balloon_punch *p = opaque;

        open_blocks_add(&p->b->open, gpa, len, balloon_punch_add, p);
}

void balloon_deflate_range(void *opaque, uint64_t gpa, uint64_t len)
{
        struct balloon *b = opaque;

        /* The guest has these back: not punched later. Not now either, they need no host work. */
        open_blocks_forget(&b->open, gpa, len);
}

void balloon_report_range(void *opaque, uint64_t gpa, uint64_t len)
{
        struct balloon_punch *p = opaque;

        /*
         * Free pages cannot be in the balloon, but a lying guest can name both: punched now,
         * so not again by a flush (nor counted twice in discarded_bytes).
         */
        open_blocks_forget(&p->b->open, gpa, len);
        balloon_punch_add(p, gpa, len);
}

static void flush_timer_disarm(struct balloon *b)
{
        if (!b->flush_armed)
                return;
        b->flush_armed = false;
        (void)event_source_set_period(b->flush_timer, 0); /* at worst a spurious tick, harmless */
}

void balloon_flush(struct balloon *b)
{
        struct balloon_punch p = {.b = b};

        open_blocks_flush(&b->open, balloon_punch_add, &p);
        balloon_punch_end(&p);
        flush_timer_disarm(b);
}

void balloon_inflate_done(struct balloon *b)
{
        b->last_inflate_ns = monotonic_ns();
        /* Armed once per burst of inflates, not re-armed (a syscall) for every request. */
        if (b->open.nr == 0 || b->flush_armed || !b->flush_timer)
                return;
        if (event_source_set_period(b->flush_timer, FLUSH_QUIET_NS) == 0)
                b->flush_armed = true;
}

static void flush_timer_fired(void *opaque, uint32_t events)
{
        struct balloon *b = opaque;

        virtio_dev_lock(&b->dev);
        /* Still inflating: wait for the next tick rather than split blocks being filled. */
        if (b->open.nr == 0 || monotonic_ns() - b->last_inflate_ns >= FLUSH_QUIET_NS)
                balloon_flush(b);
        virtio_dev_unlock(&b->dev);
}

int balloon_flush_timer_init(struct balloon *b)
{
        /* Without a loop (unit tests) the other flush points still apply. */
        if (!b->dev.loop || b->flush_timer)
                return 0;
        return event_loop_add_timer(b->dev.loop, 0, flush_timer_fired, b, &b->flush_timer);
}
