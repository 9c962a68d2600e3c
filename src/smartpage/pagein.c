/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Bringing pages in: a never-written page is a zero page, a paged-out one is read from the file
 * with its paged-out neighbours (read-ahead, within the limit) and copied in with UFFDIO_COPY,
 * which also wakes whoever waits for it.
 */
#include <errno.h>
#include <string.h>

#include "smartpage/engine.h"
#include "smartpage/uffd.h"
#include "tidal/macro.h"

/*
 * The memfd already holds a page we count as not resident: a 4 KiB punch into a huge page the
 * kernel could not split leaves it zeroed in place. Fill it through the alias and map it.
 */
static int fill_present(struct smartpage *sp, uint64_t page, const void *src)
{
        int r;

        if (src)
                memcpy(alias_addr(sp, page), src, PAGE);
        else
                memset(alias_addr(sp, page), 0, PAGE);
        r = uffd_continue(sp->uffd, page_addr(sp, page), PAGE);
        if (r == -EEXIST)
                r = uffd_wake(sp->uffd, page_addr(sp, page), PAGE);
        return r;
}

static int zero_in(struct smartpage *sp, uint64_t page)
{
        int r = uffd_zeropage(sp->uffd, page_addr(sp, page), PAGE);

        if (r == -EEXIST)
                r = fill_present(sp, page, NULL);
        if (r < 0)
                return r;
        pagetab_set_resident(&sp->pt, page, true);
        return 0;
}

/* Copies pages [first, first + n) in from bounce slots [slot, slot + n). */
static int copy_in(struct smartpage *sp, uint64_t first, unsigned n, unsigned slot,
                   uint64_t faulting)
{
        for (unsigned i = 0; i < n;) {
                size_t done = 0;
                int r = uffd_copy(sp->uffd, page_addr(sp, first + i),
                                  pageio_slot(&sp->io, slot + i), (size_t)(n - i) * PAGE, &done);
                unsigned copied = (unsigned)(done / PAGE);

                for (unsigned k = 0; k < copied; k++, i++)
                        pagetab_set_resident(&sp->pt, first + i, first + i == faulting);
                if (r == -EEXIST) {
                        r = fill_present(sp, first + i, pageio_slot(&sp->io, slot + i));
                        if (r < 0)
                                return r;
                        pagetab_set_resident(&sp->pt, first + i, first + i == faulting);
                        i++;
                } else if (r < 0) {
                        return r;
                }
        }
        sp->count.pages_in += n;
        return 0;
}

/*
 * How many pages from `page` on to read at once: it, and when faults run sequentially, the
 * paged-out neighbours that fit. Random faults read one page: read-ahead there only fills the
 * budget with pages nobody asked for and pushes out the ones in use.
 */
static unsigned run_length(struct smartpage *sp, uint64_t page)
{
        uint64_t room = page == sp->seq_next || sp->finishing ? 1 + sp->readahead : 1;
        unsigned n = 1;

        if (!sp->finishing)
                room = MIN(room, sp->limit_pages - sp->pt.resident);
        room = MIN(room, (uint64_t)NR_SLOTS);
        while (n < room && page + n < sp->nr_pages && sp->pt.state[page + n] == PG_PAGED)
                n++;
        return n;
}

int engine_page_in(struct smartpage *sp, uint64_t page)
{
        unsigned n;
        int r = engine_make_room(sp, 1);

        if (r < 0)
                return r;
        sp->count.faults++;
        if (!(sp->pt.state[page] & PG_PAGED)) {
                sp->seq_next = page + 1;
                r = zero_in(sp, page);
                if (r < 0)
                        engine_fail(sp, r, "cannot map a zero page");
                return r;
        }
        n = run_length(sp, page);
        sp->seq_next = page + n;
        r = pageio_queue(&sp->io, false, 0, n, page * PAGE);
        if (r == 0)
                r = pageio_wait(&sp->io);
        if (r < 0) {
                engine_fail(sp, r, "cannot read from the paging file");
                return r;
        }
        r = copy_in(sp, page, n, 0, page);
        if (r < 0)
                engine_fail(sp, r, "cannot copy a page in");
        return r;
}

/* Queues reads of the next paged-out runs from the cursor; returns the runs queued. */
static unsigned queue_chunk(struct smartpage *sp, uint64_t *firsts, unsigned *lens, int *error)
{
        unsigned nr = 0, slot = 0;

        while (sp->finish_cursor < sp->nr_pages && nr < sp->io.max_reqs && slot < NR_SLOTS) {
                uint64_t page = sp->finish_cursor;
                unsigned n;

                if (sp->pt.state[page] != PG_PAGED) {
                        sp->finish_cursor++;
                        continue;
                }
                for (n = 1; n < NR_SLOTS - slot && page + n < sp->nr_pages &&
                            sp->pt.state[page + n] == PG_PAGED;
                     n++)
                        ;
                *error = pageio_queue(&sp->io, false, slot, n, page * PAGE);
                if (*error < 0)
                        break;
                firsts[nr] = page;
                lens[nr++] = n;
                slot += n;
                sp->finish_cursor += n;
        }
        return nr;
}

int engine_finish_chunk(struct smartpage *sp, bool *done)
{
        uint64_t firsts[NR_SLOTS];
        unsigned lens[NR_SLOTS], nr, slot = 0;
        int r = 0;

        nr = queue_chunk(sp, firsts, lens, &r);
        if (r == 0)
                r = pageio_wait(&sp->io);
        if (r < 0) {
                engine_fail(sp, r, "cannot read the paging file back");
                return r;
        }
        for (unsigned i = 0; i < nr; i++) {
                r = copy_in(sp, firsts[i], lens[i], slot, UINT64_MAX);
                if (r < 0) {
                        engine_fail(sp, r, "cannot copy a page back in");
                        return r;
                }
                slot += lens[i];
        }
        if (sp->finish_cursor >= sp->nr_pages)
                sp->finish_cursor = 0; /* one more pass finds nothing, or what a race left */
        *done = sp->pt.paged == 0;
        return 0;
}
