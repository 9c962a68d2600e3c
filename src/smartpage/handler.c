/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The handler thread: waits for userfaultfd messages and requests (the wake eventfd), resolves
 * faults, keeps the resident set within the limit, and does the read-back when paging ends.
 * After an error it keeps mapping pages that are resident (MINOR faults) but brings nothing in:
 * whoever needs such a page waits until the VM is stopped.
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdint.h>
#include <unistd.h>

#include "smartpage/engine.h"
#include "smartpage/uffd.h"
#include "tidal/log.h"
#include "tidal/macro.h"

#define MSGS 64

void engine_poke(struct smartpage *sp)
{
        uint64_t one = 1;

        if (write(sp->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                log_warn_errno(errno, "smart paging: cannot wake the handler");
}

/*
 * A sequential stream of MINOR faults, a sweep over pages the clock sampled: the sampled pages
 * right after this one are mapped too, up to a window that doubles while the stream goes on,
 * rather than one fault round trip through this thread each. Clean pages are mapped only where
 * that keeps them write-protected without a copy (UFFDIO_CONTINUE_MODE_WP). A page that cannot
 * be mapped is left to its own fault.
 */
static void map_around(struct smartpage *sp, uint64_t page)
{
        unsigned n = 0;

        if (page != sp->minor_next) {
                sp->minor_window = 0;
                sp->minor_next = page + 1;
                return;
        }
        sp->minor_window = sp->minor_window ? MIN(sp->minor_window * 2, MAP_AROUND_MAX) : 8;
        for (uint64_t p = page + 1; n < sp->minor_window && p < sp->nr_pages; p++, n++) {
                uint8_t s = sp->pt.state[p];

                if ((s & (PG_RESIDENT | PG_ZAPPED)) != (PG_RESIDENT | PG_ZAPPED) ||
                    ((s & PG_CLEAN) && !sp->continue_wp) || engine_remap(sp, p, false) < 0)
                        break;
        }
        sp->minor_next = page + 1 + n;
}

/* An access to a resident page whose entries the clock zapped: the reference bit. */
static void minor_fault(struct smartpage *sp, uint64_t page, bool write)
{
        int r;

        sp->count.minor_faults++;
        if (!(sp->pt.state[page] & PG_RESIDENT)) {
                /* Evicted while the access waited, or discarded: bring it in. */
                (void)engine_page_in(sp, page, write);
                return;
        }
        r = engine_remap(sp, page, write);
        if (r == -ENOENT || r == -EFAULT) {
                /* Gone from the memfd behind our back (punched by the VMM): it is zeroes. */
                pagetab_set_absent(&sp->pt, page);
                (void)engine_page_in(sp, page, write);
                return;
        }
        if (r < 0)
                engine_fail(sp, r, "cannot map a resident page again");
        else
                map_around(sp, page);
}

static void missing_fault(struct smartpage *sp, uint64_t page, bool write)
{
        uint8_t *s = &sp->pt.state[page];
        int r;

        if (!(*s & PG_RESIDENT)) {
                (void)engine_page_in(sp, page, write);
                return;
        }
        /*
         * Counted resident but missing: a message queued before the copy that resolved it
         * (EEXIST), or a page punched behind our back, which is zeroes, mapped writable now.
         */
        r = uffd_zeropage(sp->uffd, page_addr(sp, page), PAGE);
        if (r == 0)
                *s &= (uint8_t) ~(PG_CLEAN | PG_INFILE);
        if (r == -EEXIST)
                r = uffd_wake(sp->uffd, page_addr(sp, page), PAGE);
        if (r < 0)
                engine_fail(sp, r, "cannot resolve a fault on a resident page");
}

/*
 * A write to a clean page: from now on it is dirty, and written to the file when evicted.
 * Marked before the protection goes, so no write can land unrecorded. If the page was evicted
 * while the fault waited (it was not written: the writer waits here), it is only woken: its
 * retry faults again and brings the page in.
 */
static void wp_fault(struct smartpage *sp, uint64_t page)
{
        uint8_t *s = &sp->pt.state[page];
        int r;

        sp->count.wp_faults++;
        if (*s & PG_RESIDENT)
                *s = (uint8_t)((*s | PG_REF) & ~(PG_CLEAN | PG_INFILE));
        r = uffd_writeprotect(sp->uffd, page_addr(sp, page), PAGE, false);
        if (r < 0)
                r = uffd_wake(sp->uffd, page_addr(sp, page), PAGE);
        if (r < 0)
                engine_fail(sp, r, "cannot remove the write protection of a page");
}

static void handle_msg(struct smartpage *sp, const struct uffd_msg *msg)
{
        uint64_t addr = msg->arg.pagefault.address, flags = msg->arg.pagefault.flags, page;
        bool write = flags & UFFD_PAGEFAULT_FLAG_WRITE;

        if (msg->event != UFFD_EVENT_PAGEFAULT)
                return;
        if (addr < (uintptr_t)sp->region || addr - (uintptr_t)sp->region >= sp->len)
                return;
        page = (addr - (uintptr_t)sp->region) / PAGE;
        /* Victims whose writes are in flight are still mapped in the memfd: a MINOR fault on
         * one must not map it again under its write. Settled first, they are paged out. */
        if (sp->pending.nr)
                engine_settle(sp);
        if (flags & UFFD_PAGEFAULT_FLAG_WP)
                wp_fault(sp, page);
        else if (flags & UFFD_PAGEFAULT_FLAG_MINOR)
                minor_fault(sp, page, write);
        else
                missing_fault(sp, page, write);
}

static int read_msgs(struct smartpage *sp)
{
        struct uffd_msg msgs[MSGS];

        for (;;) {
                ssize_t n = read(sp->uffd, msgs, sizeof(msgs));

                if (n < 0)
                        return errno == EAGAIN ? 0 : errno == EINTR ? 0 : -errno;
                for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++)
                        handle_msg(sp, &msgs[i]);
                if ((size_t)n < sizeof(msgs))
                        return 0;
        }
}

static void finish_step(struct smartpage *sp)
{
        bool done = false;
        int r;

        if (engine_finish_chunk(sp, &done) < 0 || !done)
                return;
        /* Every page is in RAM: faults now are the kernel's business again. */
        r = uffd_unregister(sp->uffd, sp->region, sp->len);
        if (r < 0) {
                engine_fail(sp, r, "cannot unregister guest memory from userfaultfd");
                return;
        }
        sp->registered = false;
        sp->finished = true;
        sp->end_ns = monotonic_ns();
        pthread_cond_broadcast(&sp->cond);
}

static void drain(int fd)
{
        uint64_t v;

        (void)!read(fd, &v, sizeof(v));
}

/* One round under the lock; idle: no fault was waiting when it began. */
static void round_locked(struct smartpage *sp, bool idle)
{
        int r;

        drain(sp->wake_fd);
        engine_settle(sp);
        if (sp->finished)
                return;
        /* A lowered limit, or pages brought in above it by the MINOR path's races. */
        if (!sp->error && !sp->finishing && sp->pt.resident > sp->limit_pages)
                (void)engine_make_room(sp, 0);
        r = read_msgs(sp);
        if (r < 0)
                engine_fail(sp, r, "cannot read userfaultfd");
        if (sp->finishing && !sp->error)
                finish_step(sp);
        /* Nobody waits: make room now, so that the next fault's read does not wait for it. */
        if (idle)
                (void)engine_evict_ahead(sp);
}

void *engine_thread(void *arg)
{
        struct smartpage *sp = arg;

        for (;;) {
                struct pollfd fds[2] = {
                        {.fd = sp->uffd, .events = POLLIN},
                        {.fd = sp->wake_fd, .events = POLLIN},
                };
                bool busy;

                pthread_mutex_lock(&sp->lock);
                busy = (sp->finishing && !sp->finished && !sp->error) || engine_pool_low(sp);
                if (sp->stop) {
                        pthread_mutex_unlock(&sp->lock);
                        break;
                }
                pthread_mutex_unlock(&sp->lock);
                /* While reading back or evicting ahead, faults are checked between steps. */
                if (poll(fds, 2, busy ? 0 : -1) < 0 && errno != EINTR) {
                        int r = -errno;

                        pthread_mutex_lock(&sp->lock);
                        engine_fail(sp, r, "cannot poll userfaultfd");
                        pthread_mutex_unlock(&sp->lock);
                        break;
                }
                pthread_mutex_lock(&sp->lock);
                round_locked(sp, !(fds[0].revents & POLLIN));
                pthread_mutex_unlock(&sp->lock);
        }
        /* No request outlives the thread: the ring and the alias go after it. */
        pthread_mutex_lock(&sp->lock);
        engine_settle(sp);
        pthread_mutex_unlock(&sp->lock);
        return NULL;
}
