/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Eviction: victims from the clock are copied through the alias mapping into bounce pages,
 * written to the paging file in one batch, and only then punched out of the memfd. A victim is
 * always a page whose page-table entries are gone (PG_ZAPPED): anything touching it meanwhile
 * waits in a MINOR fault for this thread, so what is written is what the guest last wrote.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/mman.h>

#include "smartpage/engine.h"
#include "tidal/macro.h"

struct run {
        uint64_t first;   /* page */
        unsigned slot, n; /* bounce slot of the first page, pages */
};

static int zap(void *ctx, uint64_t first, uint64_t n)
{
        struct smartpage *sp = ctx;

        /* Shared shmem: only the page-table entries go; the page stays in the memfd. */
        if (madvise(page_addr(sp, first), n * PAGE, MADV_DONTNEED) < 0)
                return -errno;
        return 0;
}

static unsigned make_runs(const uint64_t *victims, unsigned n, struct run *runs)
{
        unsigned nr = 0;

        for (unsigned i = 0; i < n; i++) {
                if (nr && runs[nr - 1].first + runs[nr - 1].n == victims[i]) {
                        runs[nr - 1].n++;
                        continue;
                }
                runs[nr++] = (struct run){.first = victims[i], .slot = i, .n = 1};
        }
        return nr;
}

/* The run is on disk: drop it from RAM. */
static int drop_run(struct smartpage *sp, const struct run *run)
{
        if (fallocate(sp->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(sp->memfd_off + run->first * PAGE), (off_t)(run->n * PAGE)) < 0)
                return -errno;
        for (unsigned i = 0; i < run->n; i++)
                pagetab_set_paged(&sp->pt, run->first + i);
        sp->count.pages_out += run->n;
        return 0;
}

/* Writes runs [0, nr) in waves of the queue depth; returns the first error. */
static int write_runs(struct smartpage *sp, const struct run *runs, unsigned nr)
{
        int first_error = 0;

        for (unsigned done = 0; done < nr;) {
                unsigned wave = MIN(nr - done, sp->io.max_reqs);
                int r = 0;

                for (unsigned i = 0; i < wave && r == 0; i++) {
                        const struct run *run = &runs[done + i];

                        memcpy(pageio_slot(&sp->io, run->slot), alias_addr(sp, run->first),
                               (size_t)run->n * PAGE);
                        r = pageio_queue(&sp->io, true, run->slot, run->n, run->first * PAGE);
                }
                if (r < 0)
                        return r;
                (void)pageio_wait(&sp->io);
                /* A run whose write failed is not punched: it stays resident and correct. */
                for (unsigned i = 0; i < wave; i++) {
                        r = sp->io.reqs[i].res;
                        if (r == 0)
                                r = drop_run(sp, &runs[done + i]);
                        if (r < 0 && first_error == 0)
                                first_error = r;
                }
                done += wave;
        }
        return first_error;
}

static int evict(struct smartpage *sp, uint64_t want)
{
        struct run runs[NR_SLOTS];
        unsigned nr;
        int n;

        want = MIN(want, (uint64_t)NR_SLOTS);
        n = clock_pick(&sp->pt, want, sp->victims, zap, sp);
        if (n < 0)
                return n;
        if (n == 0)
                return -ENOMEM; /* nothing resident to evict: the limit cannot be met */
        nr = make_runs(sp->victims, (unsigned)n, runs);
        return write_runs(sp, runs, nr);
}

int engine_make_room(struct smartpage *sp, uint64_t need)
{
        if (sp->error)
                return sp->error;
        if (sp->finishing)
                return 0; /* reading everything back: the limit no longer holds */
        while (sp->pt.resident + need > sp->limit_pages) {
                uint64_t excess = sp->pt.resident + need - sp->limit_pages;
                int r = evict(sp, MAX(excess, (uint64_t)EVICT_BATCH));

                if (r < 0) {
                        engine_fail(sp, r, "cannot evict pages to the paging file");
                        return r;
                }
        }
        return 0;
}
