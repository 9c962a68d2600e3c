/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Eviction. Victims are the pages sequential streams left behind (dropbehind.h), else the
 * clock's; a victim is always a page whose page-table entries are
 * gone (PG_ZAPPED): anything touching it meanwhile waits in a MINOR fault for this thread.
 *  - A clean victim (PG_CLEAN: write-protected since it was brought in, so never written) has its
 *    copy already, in the file or as zeroes: it is only punched out of the memfd.
 *  - A dirty one is written to the paging file straight from the alias mapping, and only after
 *    the write succeeded punched. The writes of one batch go in one submission; the last
 *    batch before a read (a fault's, or the next sequential window's) goes with that read.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux >= 5.14, as MINOR faults on shmem */
#endif

#include "smartpage/engine.h"
#include "tidal/macro.h"

static int zap(void *ctx, uint64_t first, uint64_t n)
{
        struct smartpage *sp = ctx;

        /* Shared shmem: only the page-table entries go (a WP one leaves a marker); the page
         * stays in the memfd. */
        if (madvise(page_addr(sp, first), n * PAGE, MADV_DONTNEED) < 0)
                return -errno;
        return 0;
}

static int punch(struct smartpage *sp, uint64_t first, uint64_t n)
{
        if (fallocate(sp->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(sp->memfd_off + first * PAGE), (off_t)(n * PAGE)) < 0)
                return -errno;
        return 0;
}

/* Pages [first, first + n) left RAM; their copy is in the file, or (clean zero pages) nowhere. */
static void mark_out(struct smartpage *sp, uint64_t first, uint64_t n)
{
        for (uint64_t p = first; p < first + n; p++) {
                uint8_t s = sp->pt.state[p];

                if ((s & PG_CLEAN) && !(s & PG_INFILE))
                        pagetab_set_absent(&sp->pt, p);
                else
                        pagetab_set_paged(&sp->pt, p);
        }
        sp->count.pages_out += n;
}

/* Clean victims: punched, contiguous ones together. Dirty ones are compacted to the front. */
static int drop_clean(struct smartpage *sp, unsigned n, unsigned *nr_dirty)
{
        unsigned dirty = 0;

        for (unsigned i = 0; i < n;) {
                uint64_t first = sp->victims[i];
                unsigned k = 1;
                int r;

                if (!(sp->pt.state[first] & PG_CLEAN)) {
                        sp->victims[dirty++] = sp->victims[i++];
                        continue;
                }
                while (i + k < n && sp->victims[i + k] == first + k &&
                       (sp->pt.state[first + k] & PG_CLEAN))
                        k++;
                r = punch(sp, first, k);
                if (r < 0)
                        return r;
                mark_out(sp, first, k);
                i += k;
        }
        *nr_dirty = dirty;
        return 0;
}

/*
 * Groups dirty victims [from, to) into runs of contiguous pages, at most max_reqs - 1 runs (one
 * request stays free for a fault's read); returns where it stopped.
 */
static unsigned batch_victims(struct smartpage *sp, unsigned from, unsigned to)
{
        struct victim_batch *b = &sp->pending;
        unsigned i;

        for (i = from; i < to; i++) {
                uint64_t page = sp->victims[i];
                struct victim_run *last = b->nr ? &b->runs[b->nr - 1] : NULL;

                if (!last || last->first + last->n != page) {
                        if (b->nr + 1 >= sp->io.max_reqs)
                                break;
                        last = &b->runs[b->nr++];
                        *last = (struct victim_run){.first = page};
                }
                last->n++;
                b->pages++;
        }
        return i;
}

/*
 * Queues the runs' writes straight from the alias mapping: no copy. Its page-table entries are
 * filled first, with one call per run, rather than by a fault per page in the kernel's copy.
 * Nobody writes these pages meanwhile: they are zapped in the region, and punched only after.
 */
static int submit_runs(struct smartpage *sp)
{
        for (unsigned i = 0; i < sp->pending.nr; i++) {
                struct victim_run *run = &sp->pending.runs[i];
                int r;

                (void)madvise(alias_addr(sp, run->first), (size_t)run->n * PAGE,
                              MADV_POPULATE_READ);
                run->req = sp->io.nr_reqs;
                r = pageio_queue_write_from(&sp->io, alias_addr(sp, run->first), run->n,
                                            run->first * PAGE);
                if (r < 0)
                        return r;
        }
        return 0;
}

int engine_evict_complete(struct smartpage *sp)
{
        struct victim_batch *b = &sp->pending;
        int first_error = 0;

        for (unsigned i = 0; i < b->nr; i++) {
                const struct victim_run *run = &b->runs[i];
                int r = sp->io.reqs[run->req].res;

                /* A run whose write failed is not punched: it stays resident and correct. */
                if (r == 0)
                        r = punch(sp, run->first, run->n);
                if (r == 0) {
                        for (unsigned k = 0; k < run->n; k++)
                                sp->pt.state[run->first + k] &= (uint8_t)~PG_CLEAN;
                        mark_out(sp, run->first, run->n);
                        sp->count.pages_written += run->n;
                }
                if (r < 0 && first_error == 0)
                        first_error = r;
        }
        *b = (struct victim_batch){0};
        return first_error;
}

/* Submits and completes what is queued (victims' writes, an asynchronous read). */
static int flush_pending(struct smartpage *sp)
{
        if (sp->pending.nr == 0)
                return 0;
        (void)engine_io_wait(sp);
        return sp->error;
}

static int cmp_page(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return (x > y) - (x < y);
}

/*
 * Up to `want` victims from the drop-behind stack: pages a stream brought in and left behind,
 * still resident and not sampled as used since. Sorted, so that neighbours make one write, and
 * zapped, as every victim must be before it is written (an access now waits for this thread).
 */
static int dropbehind_pick(struct smartpage *sp, uint64_t want)
{
        unsigned n = 0;
        uint64_t page;
        int r;

        while (n < want && dropbehind_pop(&sp->db, &page)) {
                uint8_t *s = &sp->pt.state[page];

                /* Stale entries: evicted or discarded since, used again, or pushed twice. */
                if (!(*s & PG_RESIDENT) || !(*s & PG_STREAM) ||
                    page - sp->pt.spare_first < sp->pt.spare_n)
                        continue;
                *s = (uint8_t)((*s & ~(PG_STREAM | PG_REF)) | PG_ZAPPED);
                sp->victims[n++] = page;
        }
        qsort(sp->victims, n, sizeof(sp->victims[0]), cmp_page);
        for (unsigned i = 0; i < n;) {
                unsigned k = 1;

                while (i + k < n && sp->victims[i + k] == sp->victims[i] + k)
                        k++;
                r = zap(sp, sp->victims[i], k);
                if (r < 0)
                        return r;
                i += k;
        }
        sp->count.dropped_behind += n;
        return (int)n;
}

/*
 * Picks up to `want` victims (those a stream left behind first, else the clock's), drops the
 * clean ones and queues the writes of the dirty ones, whose pages stay resident until
 * engine_evict_complete(). One source per round: a page the stack gives is zapped and
 * unreferenced, which the clock would take for a victim of its own.
 */
static int evict_queue(struct smartpage *sp, uint64_t want)
{
        unsigned dirty;
        int n, r;

        want = MIN(want, (uint64_t)NR_SLOTS);
        n = dropbehind_pick(sp, want);
        if (n == 0)
                n = clock_pick(&sp->pt, want, sp->victims, zap, sp);
        if (n < 0)
                return n;
        if (n == 0)
                return -ENOMEM; /* nothing resident to evict: the limit cannot be met */
        r = drop_clean(sp, (unsigned)n, &dirty);
        if (r < 0)
                return r;
        /* Scattered victims can make more runs than requests: write full batches first. */
        for (unsigned done = 0; done < dirty;) {
                if (sp->pending.nr) {
                        r = submit_runs(sp);
                        if (r == 0)
                                r = flush_pending(sp);
                        if (r < 0)
                                return r;
                }
                done = batch_victims(sp, done, dirty);
        }
        return submit_runs(sp);
}

static uint64_t excess(const struct smartpage *sp, uint64_t need)
{
        uint64_t resident = sp->pt.resident - sp->pending.pages;

        return resident + need > sp->limit_pages ? resident + need - sp->limit_pages : 0;
}

int engine_make_room_queued(struct smartpage *sp, uint64_t need)
{
        if (sp->error)
                return sp->error;
        if (sp->finishing)
                return 0; /* reading everything back: the limit no longer holds */
        for (uint64_t over; (over = excess(sp, need)) > 0;) {
                int r = flush_pending(sp);

                if (r == 0)
                        r = evict_queue(sp, MAX(over, (uint64_t)EVICT_BATCH));
                if (r < 0) {
                        engine_fail(sp, r, "cannot evict pages to the paging file");
                        return r;
                }
        }
        return 0;
}

int engine_make_room(struct smartpage *sp, uint64_t need)
{
        int r = engine_make_room_queued(sp, need);

        if (r == 0)
                r = flush_pending(sp);
        if (r < 0) {
                engine_fail(sp, r, "cannot evict pages to the paging file");
                return r;
        }
        return 0;
}

uint64_t engine_pool_pages(const struct smartpage *sp)
{
        return MIN((uint64_t)POOL_PAGES, sp->limit_pages / 4);
}

bool engine_pool_low(const struct smartpage *sp)
{
        return !sp->error && !sp->finishing && !sp->finished &&
               sp->pt.resident + engine_pool_pages(sp) > sp->limit_pages;
}

bool engine_evict_ahead(struct smartpage *sp)
{
        uint64_t free_room;

        if (!engine_pool_low(sp))
                return false;
        /* One batch at a time: a fault that arrives meanwhile waits for one batch at most. */
        free_room = sp->pt.resident < sp->limit_pages ? sp->limit_pages - sp->pt.resident : 0;
        (void)engine_make_room(sp, MIN(free_room + EVICT_BATCH, engine_pool_pages(sp)));
        return true;
}
