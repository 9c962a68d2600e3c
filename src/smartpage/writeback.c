/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Background writeback: the clock's second hand. When no fault waits and the free pool is full,
 * the handler writes dirty resident pages that the hand will reach soonest to their slot of the
 * paging file and marks them clean, so that evicting them later is only a punch, and a fault's
 * read no longer waits for its victims' writes (the kernel's writeback does the same for the
 * page cache; its benchmark run starts msync()ed).
 *
 * Which pages: resident, dirty and unreferenced ones, in the hand's order from the hand on, at
 * most one turn ahead of it. Referenced pages are skipped: the hand spares them this turn, and a
 * page just written is likely to be written again. The second hand (wb.next) looks at each
 * position once per turn of the first: when it is a turn ahead, or the budget below is used up,
 * there is nothing to do until the first hand moves or a page cleaned here is evicted or
 * written, and the handler sleeps.
 *
 * How much: pages made clean here and still resident and clean (PG_WB) are at most the gap
 * (region pages - limit). Every other copy in the file was written by an eviction, which writes
 * it without writeback too; so writeback adds at most the gap's worth of copies (and blocks) to
 * what the file would hold without it, never more than one copy per page of the region.
 *
 * Why no write is lost: a page mapped in the region is write-protected (userfaultfd WP) before
 * its write is issued; a guest write after that raises a WP fault, which waits for this thread
 * and marks the page dirty again (wp_fault) after the batch is done. A zapped page needs no
 * protection: any access to it waits in a MINOR fault for this thread, and engine_remap() maps
 * it write-protected while it is clean. A page is marked clean only after its write succeeded;
 * a failed write stops paging, like an eviction's.
 */
#include <errno.h>

#include "smartpage/engine.h"
#include "smartpage/uffd.h"
#include "tidal/log.h"
#include "tidal/macro.h"

static uint64_t budget(const struct smartpage *sp)
{
        return sp->nr_pages > sp->limit_pages ? sp->nr_pages - sp->limit_pages : 0;
}

/* The second hand's position; the first may have passed it. */
static uint64_t next_pos(const struct smartpage *sp)
{
        return MAX(sp->wb.next, sp->pt.swept);
}

bool engine_writeback_wanted(const struct smartpage *sp)
{
        return sp->wp && !sp->wb.off && !sp->error && !sp->finishing && !sp->finished &&
               sp->pt.written_back < budget(sp) && next_pos(sp) < sp->pt.swept + sp->nr_pages;
}

static bool candidate(uint8_t s)
{
        return (s & (PG_RESIDENT | PG_CLEAN | PG_REF)) == PG_RESIDENT;
}

/* Moves the second hand over the next dirty unreferenced pages: one batch, runs of them. */
static void collect(struct smartpage *sp, struct victim_batch *b)
{
        uint64_t end = sp->pt.swept + sp->nr_pages;
        uint64_t want = MIN(budget(sp) - sp->pt.written_back, (uint64_t)NR_SLOTS), pos;

        *b = (struct victim_batch){0};
        for (pos = next_pos(sp); pos < end && b->pages < want; pos++) {
                uint64_t page = (sp->pt.hand + (pos - sp->pt.swept)) % sp->nr_pages;
                struct victim_run *last = b->nr ? &b->runs[b->nr - 1] : NULL;

                if (!candidate(sp->pt.state[page]))
                        continue;
                if (!last || last->first + last->n != page) {
                        /* A request per run, beside what is in flight (the next window's read). */
                        if (sp->io.nr_reqs + b->nr + 1 > sp->io.max_reqs)
                                break;
                        last = &b->runs[b->nr++];
                        *last = (struct victim_run){.first = page};
                }
                last->n++;
                b->pages++;
        }
        sp->wb.next = pos;
}

/*
 * A run with a mapped page is write-protected as a whole: on a zapped page WP leaves a marker
 * (Linux >= 5.19 for shmem), whose next access still faults MINOR first, as after the clock's
 * zap of a clean page. One ioctl per run.
 */
static int protect(struct smartpage *sp, const struct victim_run *run)
{
        for (unsigned k = 0; k < run->n; k++)
                if (!(sp->pt.state[run->first + k] & PG_ZAPPED))
                        return uffd_writeprotect(sp->uffd, page_addr(sp, run->first),
                                                 (size_t)run->n * PAGE, true);
        return 0;
}

/* After the writes: the runs written are clean, with their copy in the file. */
static int complete(struct smartpage *sp, const struct victim_batch *b)
{
        int first_error = 0;

        for (unsigned i = 0; i < b->nr; i++) {
                const struct victim_run *run = &b->runs[i];
                int r = sp->io.reqs[run->req].res;

                if (r < 0) { /* not marked: dirty, and its slot was stale anyway */
                        if (first_error == 0)
                                first_error = r;
                        continue;
                }
                for (unsigned k = 0; k < run->n; k++)
                        pagetab_set_written_back(&sp->pt, run->first + k);
                sp->count.pages_written_back += run->n;
        }
        return first_error;
}

int engine_writeback(struct smartpage *sp)
{
        struct victim_batch *b = &sp->wb.batch;
        int r = 0, w;

        if (!engine_writeback_wanted(sp))
                return 0;
        collect(sp, b);
        for (unsigned i = 0; i < b->nr && r == 0; i++)
                r = protect(sp, &b->runs[i]);
        if (r < 0) {
                /* Nothing written: the pages stay dirty (a protected one faults WP once). */
                log_warn_errno(r, "smart paging: cannot write-protect pages; background "
                                  "writeback is off");
                sp->wb.off = true;
                return 0;
        }
        r = engine_queue_writes(sp, b); /* on an error, b keeps only the runs queued */
        (void)engine_io_wait(sp);       /* the writes, and the next window's read if in flight */
        w = complete(sp, b);
        if (r == 0)
                r = w;
        if (r < 0) {
                engine_fail(sp, r, "cannot write pages back to the paging file");
                return r;
        }
        return (int)b->pages;
}
