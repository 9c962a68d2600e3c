/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The engine's life: start, limit changes, discards, finish, free. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "smartpage/engine.h"
#include "smartpage/uffd.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "tidal/thread.h"

#define MIN_LIMIT_PAGES 64u
#define MAX_QD          4096u

static bool limit_valid(uint64_t bytes)
{
        return bytes / PAGE >= MIN_LIMIT_PAGES;
}

/* What is in RAM now: the memfd's data ranges (shmem reports pages it holds, or swapped). */
static int count_resident(struct smartpage *sp)
{
        off_t end = (off_t)(sp->memfd_off + sp->len), pos = (off_t)sp->memfd_off;

        while (pos < end) {
                off_t data = lseek(sp->memfd, pos, SEEK_DATA), hole;

                if (data < 0)
                        return errno == ENXIO ? 0 : -errno;
                if (data >= end)
                        break;
                hole = lseek(sp->memfd, data, SEEK_HOLE);
                if (hole < 0)
                        return -errno;
                hole = MIN(hole, end);
                for (uint64_t p = ((uint64_t)data - sp->memfd_off) / PAGE;
                     p < ALIGN_UP((uint64_t)hole - sp->memfd_off, (uint64_t)PAGE) / PAGE; p++)
                        pagetab_set_resident(&sp->pt, p, 0); /* dirty: not in the file */
                pos = hole;
        }
        return 0;
}

static int open_fds(struct smartpage *sp)
{
        sp->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (sp->wake_fd < 0)
                return -errno;
        sp->error_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (sp->error_fd < 0)
                return -errno;
        return uffd_open(&sp->uffd, &sp->wp);
}

static int setup(struct smartpage *sp, const struct smartpage_options *o)
{
        unsigned qd = o->queue_depth ? MIN(MAX(o->queue_depth, 8u), MAX_QD) : SMARTPAGE_DEFAULT_QD;
        void *alias;
        int r;

        r = pagetab_init(&sp->pt, sp->nr_pages);
        if (r < 0)
                return r;
        r = dropbehind_init(&sp->db,
                            (unsigned)MIN((uint64_t)DROPBEHIND_LAG, MAX(sp->limit_pages / 4, 1u)),
                            (unsigned)MIN((uint64_t)DROPBEHIND_DEPTH, sp->nr_pages));
        if (r < 0)
                return r;
        r = count_resident(sp);
        if (r < 0)
                return r;
        /* The engine's own view: it reads victims here and never faults on its own region. */
        alias = mmap(NULL, sp->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, sp->memfd,
                     (off_t)sp->memfd_off);
        if (alias == MAP_FAILED)
                return -errno;
        sp->alias = alias;
        (void)madvise(sp->alias, sp->len, MADV_DONTDUMP);
        r = open_fds(sp);
        if (r < 0)
                return r;
        r = paging_file_create(&sp->file, o->dir, o->name, sp->len);
        if (r < 0)
                return r;
        r = pageio_init(&sp->io, sp->file.fd, qd, BOUNCE_SLOTS);
        if (r < 0)
                return r;
        /* Pages are paged one by one: no new huge pages while paging (see docs). */
        (void)madvise(sp->region, sp->len, MADV_NOHUGEPAGE);
        r = uffd_register(sp->uffd, sp->region, sp->len, sp->wp);
        if (sp->wp && (r == -EINVAL || r == -EOPNOTSUPP)) {
                /* WP together with MINOR refused on this kernel: page without clean tracking. */
                sp->wp = false;
                r = uffd_register(sp->uffd, sp->region, sp->len, false);
        }
        if (r < 0)
                return r;
        sp->continue_wp = sp->wp;
        if (!sp->wp)
                log_info("smart paging: no userfaultfd write-protect on shmem here: every "
                         "evicted page is written");
        sp->registered = true;
        sp->start_ns = monotonic_ns();
        /* Down to the limit, with the free pool, before anything runs on. */
        pthread_mutex_lock(&sp->lock);
        r = engine_make_room(sp, engine_pool_pages(sp));
        pthread_mutex_unlock(&sp->lock);
        if (r < 0)
                return r;
        r = thread_create(&sp->thread, engine_thread, sp);
        if (r < 0)
                return r;
        sp->thread_started = true;
        return 0;
}

int smartpage_start(const struct smartpage_options *o, int memfd, uint64_t off, void *region,
                    size_t len, struct smartpage **ret)
{
        struct smartpage *sp;
        int r;

        if (!o || !ret || memfd < 0 || !region || len == 0 ||
            !IS_ALIGNED((uintptr_t)region | off | len, (uint64_t)PAGE) ||
            !limit_valid(o->resident_limit) || o->readahead_pages >= NR_SLOTS)
                return -EINVAL;
        sp = calloc(1, sizeof(*sp));
        if (!sp)
                return -ENOMEM;
        *sp = (struct smartpage){
                .memfd = memfd,
                .memfd_off = off,
                .region = region,
                .len = len,
                .nr_pages = len / PAGE,
                .readahead = o->readahead_pages,
                .on_error = o->on_error,
                .userdata = o->userdata,
                .uffd = -1,
                .wake_fd = -1,
                .error_fd = -1,
                .file = {.fd = -1},
                .limit_pages = o->resident_limit / PAGE,
        };
        pthread_mutex_init(&sp->lock, NULL);
        pthread_cond_init(&sp->cond, NULL);
        r = setup(sp, o);
        if (r < 0) {
                smartpage_free(sp);
                return r;
        }
        log_debug("smart paging started: %" PRIu64 " MiB of guest RAM within %" PRIu64
                  " MiB, paging file %s",
                  len / MiB, o->resident_limit / MiB, sp->file.path);
        *ret = sp;
        return 0;
}

int smartpage_set_limit(struct smartpage *sp, uint64_t resident_limit)
{
        if (!limit_valid(resident_limit))
                return -EINVAL;
        pthread_mutex_lock(&sp->lock);
        sp->limit_pages = resident_limit / PAGE;
        pthread_mutex_unlock(&sp->lock);
        engine_poke(sp);
        return 0;
}

void smartpage_discard(struct smartpage *sp, uint64_t offset, uint64_t len)
{
        uint64_t first, end;

        offset = MIN(offset, sp->len);
        len = MIN(len, sp->len - offset);
        /* Only whole pages: a partial one at either end still holds guest data. */
        first = ALIGN_UP(offset, (uint64_t)PAGE) / PAGE;
        end = ALIGN_DOWN(offset + len, (uint64_t)PAGE) / PAGE;
        if (first >= end)
                return;
        pthread_mutex_lock(&sp->lock);
        if (sp->registered && !sp->finished) {
                /* A victim whose write is in flight must not be punched under it. */
                engine_settle(sp);
                for (uint64_t p = first; p < end; p++) {
                        if (sp->pt.state[p] & PG_PAGED)
                                sp->count.discarded++;
                        pagetab_set_absent(&sp->pt, p);
                }
                /* Resident ones leave RAM too (the balloon may have punched them already). */
                if (fallocate(sp->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              (off_t)(sp->memfd_off + first * PAGE),
                              (off_t)((end - first) * PAGE)) < 0)
                        log_warn_errno(errno, "smart paging: cannot punch discarded pages");
                if (paging_file_punch(&sp->file, first * PAGE, (end - first) * PAGE) < 0)
                        log_warn_errno(errno, "smart paging: cannot free discarded file blocks");
        }
        pthread_mutex_unlock(&sp->lock);
}

static void stop_thread(struct smartpage *sp)
{
        if (!sp->thread_started)
                return;
        pthread_mutex_lock(&sp->lock);
        sp->stop = true;
        pthread_mutex_unlock(&sp->lock);
        engine_poke(sp);
        pthread_join(sp->thread, NULL);
        sp->thread_started = false;
}

int smartpage_finish(struct smartpage *sp)
{
        struct smartpage_stats st;
        int r;

        pthread_mutex_lock(&sp->lock);
        sp->finishing = true;
        pthread_mutex_unlock(&sp->lock);
        engine_poke(sp);
        pthread_mutex_lock(&sp->lock);
        while (!sp->finished && !sp->error)
                pthread_cond_wait(&sp->cond, &sp->lock);
        r = sp->finished ? 0 : sp->error;
        pthread_mutex_unlock(&sp->lock);
        if (r < 0)
                return r;
        stop_thread(sp);
        r = paging_file_remove(&sp->file);
        if (r < 0)
                log_warn_errno(r, "smart paging: cannot remove the paging file");
        smartpage_get_stats(sp, &st);
        log_debug("smart paging ended after %" PRIu64 " ms: %" PRIu64 " pages out (%" PRIu64
                  " written, the others clean), %" PRIu64 " in, %" PRIu64 " discarded",
                  st.active_ms, st.pages_out, sp->count.pages_written, st.pages_in, st.discarded);
        return 0;
}

void smartpage_free(struct smartpage *sp)
{
        if (!sp)
                return;
        stop_thread(sp);
        if (sp->registered) {
                if (sp->pt.paged)
                        log_warn("smart paging: released with %" PRIu64
                                 " pages still in the paging file",
                                 sp->pt.paged);
                (void)uffd_unregister(sp->uffd, sp->region, sp->len);
        }
        pageio_done(&sp->io);
        if (sp->file.fd >= 0 || sp->file.path)
                (void)paging_file_remove(&sp->file);
        if (sp->alias)
                munmap(sp->alias, sp->len);
        pagetab_done(&sp->pt);
        dropbehind_done(&sp->db);
        closep(&sp->uffd);
        closep(&sp->wake_fd);
        closep(&sp->error_fd);
        pthread_cond_destroy(&sp->cond);
        pthread_mutex_destroy(&sp->lock);
        free(sp);
}
