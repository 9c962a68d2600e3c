/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Bringing pages in: a never-written page is a zero page, a paged-out one is read from the file
 * with its paged-out neighbours (read-ahead, within the limit) and copied in with UFFDIO_COPY,
 * which also wakes whoever waits for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>

#include "smartpage/engine.h"
#include "smartpage/uffd.h"
#include "tidal/log.h"
#include "tidal/macro.h"

/* The source of clean zero pages: UFFDIO_ZEROPAGE cannot map write-protected. */
static const uint8_t zero_page[PAGE] __attribute__((aligned(PAGE)));

/*
 * The memfd already holds a page we count as not resident: a 4 KiB punch into a huge page the
 * kernel could not split leaves it zeroed in place. Fill it through the alias and map it,
 * writable: the caller counts it dirty.
 */
static int fill_present(struct smartpage *sp, uint64_t page, const void *src)
{
        int r;

        memcpy(alias_addr(sp, page), src, PAGE);
        r = uffd_continue(sp->uffd, page_addr(sp, page), PAGE, false);
        if (r == -EEXIST)
                r = uffd_wake(sp->uffd, page_addr(sp, page), PAGE);
        return r;
}

/* A never-written page: clean zeroes, write-protected, unless the fault is a write. */
static int zero_in(struct smartpage *sp, uint64_t page, bool write)
{
        bool wp = sp->wp && !write;
        uint8_t flags = PG_REF | (wp ? PG_CLEAN : 0);
        size_t done;
        int r;

        if (wp)
                r = uffd_copy(sp->uffd, page_addr(sp, page), zero_page, PAGE, true, &done);
        else
                r = uffd_zeropage(sp->uffd, page_addr(sp, page), PAGE);
        if (r == -EEXIST) {
                r = fill_present(sp, page, zero_page);
                flags = PG_REF;
        }
        if (r < 0)
                return r;
        pagetab_set_resident(&sp->pt, page, flags);
        return 0;
}

/*
 * Copies pages [first, first + n) in from bounce slots [slot, slot + n), write-protected when
 * wp: they are then clean, the file holding their contents.
 */
static int copy_range(struct smartpage *sp, uint64_t first, unsigned n, unsigned slot, bool wp,
                      uint8_t flags)
{
        if (wp)
                flags |= PG_CLEAN | PG_INFILE;
        for (unsigned i = 0; i < n;) {
                size_t done = 0;
                int r = uffd_copy(sp->uffd, page_addr(sp, first + i),
                                  pageio_slot(&sp->io, slot + i), (size_t)(n - i) * PAGE, wp,
                                  &done);
                unsigned copied = (unsigned)(done / PAGE);

                for (unsigned k = 0; k < copied; k++, i++)
                        pagetab_set_resident(&sp->pt, first + i, flags);
                if (r == -EEXIST) {
                        r = fill_present(sp, first + i, pageio_slot(&sp->io, slot + i));
                        if (r < 0)
                                return r;
                        pagetab_set_resident(&sp->pt, first + i, flags & PG_REF);
                        i++;
                } else if (r < 0) {
                        return r;
                }
        }
        return 0;
}

/*
 * Copies a run in. Read-ahead pages come in clean (write-protected); so does the faulting page,
 * unless its fault is a write: it is dirty at once, sparing the write a second fault.
 */
static int copy_in(struct smartpage *sp, uint64_t first, unsigned n, unsigned slot,
                   uint64_t faulting, bool write)
{
        int r = 0;

        if (faulting < first || faulting >= first + n) {
                r = copy_range(sp, first, n, slot, sp->wp, 0);
        } else {
                unsigned at = (unsigned)(faulting - first);

                if (at)
                        r = copy_range(sp, first, at, slot, sp->wp, 0);
                if (r == 0)
                        r = copy_range(sp, faulting, 1, slot + at, sp->wp && !write, PG_REF);
                if (r == 0 && at + 1 < n)
                        r = copy_range(sp, faulting + 1, n - at - 1, slot + at + 1, sp->wp, 0);
        }
        if (r == 0) {
                sp->count.pages_in += n;
                sp->pt.spare_first = first;
                sp->pt.spare_n = n;
        }
        return r;
}

/*
 * How many pages from `page` on to read at once: one for a random fault (read-ahead there only
 * fills the budget with pages nobody asked for and pushes out the ones in use); for a
 * sequential stream 1 + readahead, doubling while the stream goes on, up to a quarter of the
 * limit and the bounce area; everything paged out from there when finishing.
 */
static unsigned run_length(struct smartpage *sp, uint64_t page)
{
        uint64_t want = 1, max = MIN((uint64_t)NR_SLOTS, MAX(sp->limit_pages / 4, 1u));
        unsigned n = 1;

        if (sp->finishing) {
                want = NR_SLOTS;
        } else if (page == sp->seq_next && sp->readahead) {
                sp->ra_window = sp->ra_window ? sp->ra_window * 2 : 1 + sp->readahead;
                sp->ra_window = (unsigned)MIN((uint64_t)sp->ra_window, max);
                want = sp->ra_window;
        } else {
                sp->ra_window = 0;
        }
        while (n < want && page + n < sp->nr_pages && sp->pt.state[page + n] == PG_PAGED)
                n++;
        return n;
}

/* The read and the victims' writes that make room for it go in one submission. */
static int read_run(struct smartpage *sp, uint64_t page, unsigned n)
{
        unsigned req;
        int r = engine_make_room_queued(sp, n);

        if (r < 0)
                return r;
        req = sp->io.nr_reqs;
        r = pageio_queue(&sp->io, false, 0, n, page * PAGE);
        (void)engine_io_wait(sp); /* the victims' writes, and the read if it was queued */
        if (sp->error)
                return sp->error; /* a victim's write failed */
        if (r == 0)
                r = sp->io.reqs[req].res;
        if (r < 0)
                engine_fail(sp, r, "cannot read from the paging file");
        return r;
}

int engine_io_wait(struct smartpage *sp)
{
        int r = pageio_wait(&sp->io), w;

        if (sp->ahead.active && !sp->ahead.done) {
                sp->ahead.res = sp->io.reqs[sp->ahead.req].res;
                sp->ahead.done = true;
        }
        /* Victims whose writes were among the requests leave RAM now, before a later request
         * reuses the results that say which writes succeeded. */
        w = engine_evict_complete(sp);
        if (w < 0)
                engine_fail(sp, w, "cannot evict pages to the paging file");
        return r;
}

void engine_settle(struct smartpage *sp)
{
        if (sp->io.nr_reqs)
                (void)engine_io_wait(sp);
}

void engine_drop_ahead(struct smartpage *sp)
{
        if (sp->ahead.active && !sp->ahead.done)
                (void)engine_io_wait(sp);
        sp->ahead.active = false;
}

/*
 * After a sequential fault: reads the next window into the second half of the bounce area while
 * the current one is used, and makes room for it: the writes of the victims that room needs go
 * in the same submission. Only paged-out pages; nothing waits for it here. The victims stay
 * resident (and zapped: whoever touches one waits in a MINOR fault) until the handler's next
 * round settles the requests (engine_settle()) and punches them.
 */
static void queue_ahead(struct smartpage *sp)
{
        uint64_t first = sp->seq_next;
        unsigned n = 0, want = (unsigned)MIN((uint64_t)sp->ra_window * 2, (uint64_t)NR_SLOTS);
        unsigned req;

        want = (unsigned)MIN((uint64_t)want, MAX(sp->limit_pages / 4, 1u));
        while (n < want && first + n < sp->nr_pages && sp->pt.state[first + n] == PG_PAGED)
                n++;
        if (n == 0 || sp->io.nr_reqs != 0)
                return;
        if (engine_make_room_queued(sp, n) < 0)
                return;
        req = sp->io.nr_reqs;
        if (pageio_queue(&sp->io, false, AHEAD_SLOTS, n, first * PAGE) < 0) {
                engine_settle(sp); /* the victims' writes alone */
                return;
        }
        sp->ahead = (typeof(sp->ahead)){.active = true, .first = first, .n = n, .req = req};
        if (pageio_submit(&sp->io) < 0)
                engine_drop_ahead(sp);
}

/*
 * Whether a fault continues a sequential stream: at the page after the last fault's run, or a
 * little past it (the guest's allocator hands out physical pages in ascending runs with gaps).
 */
static bool continues_stream(const struct smartpage *sp, uint64_t page)
{
        return page >= sp->seq_next && page - sp->seq_next < STREAM_SLACK;
}

/* Pages [first, first + n) a stream brought in: drop-behind victims once it has moved on. */
static void note_stream(struct smartpage *sp, uint64_t first, unsigned n)
{
        for (uint64_t p = first; p < first + n; p++) {
                if (!(sp->pt.state[p] & PG_RESIDENT))
                        continue;
                sp->pt.state[p] |= PG_STREAM;
                dropbehind_push(&sp->db, p);
        }
}

/*
 * The fault is the next window's first page and every page of it is still paged out: nothing
 * brought one in, discarded it or wrote it back since the read was issued (each of those needs
 * a fault elsewhere, which drops the read, or changes the state; a discarded page used again
 * drops it in engine_page_in()).
 */
static bool ahead_usable(const struct smartpage *sp, uint64_t page)
{
        if (!sp->ahead.active || sp->finishing || page != sp->ahead.first)
                return false;
        for (unsigned i = 0; i < sp->ahead.n; i++)
                if (sp->pt.state[page + i] != PG_PAGED)
                        return false;
        return true;
}

static int ahead_in(struct smartpage *sp, uint64_t page, bool write)
{
        unsigned n = sp->ahead.n;
        int r;

        if (!sp->ahead.done)
                (void)engine_io_wait(sp);
        sp->ahead.active = false;
        if (sp->ahead.res < 0) { /* read it again the usual way: it fails or it was a fluke */
                sp->seq_next = UINT64_MAX;
                return engine_page_in(sp, page, write);
        }
        r = engine_make_room(sp, n);
        if (r < 0)
                return r;
        sp->ra_window = (unsigned)MIN((uint64_t)sp->ra_window * 2, (uint64_t)NR_SLOTS);
        sp->seq_next = page + n;
        r = copy_in(sp, page, n, AHEAD_SLOTS, page, write);
        if (r < 0) {
                engine_fail(sp, r, "cannot copy a page in");
                return r;
        }
        note_stream(sp, page, n);
        queue_ahead(sp);
        return 0;
}

int engine_page_in(struct smartpage *sp, uint64_t page, bool write)
{
        bool stream;
        unsigned n;
        int r;

        if (sp->error)
                return sp->error;
        sp->count.faults++;
        stream = continues_stream(sp, page);
        sp->count.stream_faults += stream;
        if (!(sp->pt.state[page] & PG_PAGED)) {
                /*
                 * A page of the next window that was discarded and is used again: once evicted
                 * it would be paged out again, and the window's read would hold its old data.
                 */
                if (sp->ahead.active && page >= sp->ahead.first &&
                    page - sp->ahead.first < sp->ahead.n)
                        engine_drop_ahead(sp);
                r = engine_make_room(sp, 1);
                if (r < 0)
                        return r;
                sp->seq_next = page + 1;
                r = zero_in(sp, page, write);
                if (r < 0)
                        engine_fail(sp, r, "cannot map a zero page");
                else if (stream)
                        note_stream(sp, page, 1);
                return r;
        }
        if (ahead_usable(sp, page))
                return ahead_in(sp, page, write);
        engine_drop_ahead(sp);
        n = run_length(sp, page);
        sp->seq_next = page + n;
        r = read_run(sp, page, n);
        if (r == 0)
                r = copy_in(sp, page, n, 0, page, write);
        if (r < 0) {
                engine_fail(sp, r, "cannot copy a page in");
                return r;
        }
        if (stream)
                note_stream(sp, page, n);
        if (sp->ra_window)
                queue_ahead(sp);
        return 0;
}

/*
 * Without UFFDIO_CONTINUE_MODE_WP (Linux < 6.4) a clean page cannot be mapped again
 * write-protected; mapping it writable would lose track of writes. So it is brought in anew:
 * its contents are saved, the page punched and copied in write-protected. Whoever touches it
 * meanwhile faults MISSING and waits for this thread, which finds it resident by then.
 */
static int remap_by_copy(struct smartpage *sp, uint64_t page, bool *clean)
{
        uint8_t *save = pageio_slot(&sp->io, 0); /* no read is in flight between faults */
        size_t done;
        int r;

        memcpy(save, alias_addr(sp, page), PAGE);
        if (fallocate(sp->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(sp->memfd_off + page * PAGE), PAGE) < 0)
                return -errno;
        r = uffd_copy(sp->uffd, page_addr(sp, page), save, PAGE, true, &done);
        if (r == -EEXIST) { /* the punch only zeroed it (a huge page): it is mapped writable */
                *clean = false;
                r = fill_present(sp, page, save);
        }
        return r;
}

int engine_remap(struct smartpage *sp, uint64_t page, bool write)
{
        uint8_t *s = &sp->pt.state[page];
        bool clean = (*s & PG_CLEAN) && !write;
        int r = -EINVAL;

        if (clean && sp->continue_wp) {
                r = uffd_continue(sp->uffd, page_addr(sp, page), PAGE, true);
                if (r == -EINVAL) {
                        log_debug("smart paging: no UFFDIO_CONTINUE_MODE_WP, clean pages are "
                                  "mapped again by copy");
                        sp->continue_wp = false;
                }
        }
        if (r == -EINVAL)
                r = clean ? remap_by_copy(sp, page, &clean)
                          : uffd_continue(sp->uffd, page_addr(sp, page), PAGE, false);
        /* Mapped meanwhile (another thread's fault on it came first): as it was mapped then. */
        if (r == -EEXIST)
                r = uffd_wake(sp->uffd, page_addr(sp, page), PAGE);
        if (r < 0)
                return r;
        /* Used again after the clock sampled it: no longer a page a stream left behind. */
        *s = (uint8_t)((*s | PG_REF) & ~(PG_ZAPPED | PG_STREAM));
        if (!clean)
                *s &= (uint8_t) ~(PG_CLEAN | PG_INFILE);
        return 0;
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

        engine_drop_ahead(sp);
        nr = queue_chunk(sp, firsts, lens, &r);
        if (r == 0)
                r = engine_io_wait(sp);
        if (r < 0) {
                engine_fail(sp, r, "cannot read the paging file back");
                return r;
        }
        for (unsigned i = 0; i < nr; i++) {
                r = copy_in(sp, firsts[i], lens[i], slot, UINT64_MAX, false);
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
