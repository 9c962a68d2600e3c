/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The paging engine's state, shared by its files (not an interface for other components). */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "smartpage/clock.h"
#include "smartpage/dropbehind.h"
#include "smartpage/file.h"
#include "smartpage/io.h"
#include "smartpage/smartpage.h"
#include "tidal/clock.h"

#define PAGE        4096u
#define EVICT_BATCH 64u  /* victims per eviction round, at least */
#define NR_SLOTS    512u /* the largest read run, and the largest batch of victims */
/* Reads land in the bounce area (writes go straight from the alias): fault reads in
 * [0, NR_SLOTS), the asynchronous read of the next sequential window in [AHEAD_SLOTS, +NR_SLOTS).
 */
#define AHEAD_SLOTS    NR_SLOTS
#define BOUNCE_SLOTS   (2 * NR_SLOTS)
#define POOL_PAGES     128u /* free room kept ahead of faults, when the handler is idle */
#define STREAM_SLACK   16u  /* a fault this close past the last run's end continues its stream */
#define MAP_AROUND_MAX 64u  /* sampled pages mapped at once for a stream of MINOR faults */
/* Stream pages kept from drop-behind after the stream passed them: two full read windows. */
#define DROPBEHIND_LAG   (2 * NR_SLOTS)
#define DROPBEHIND_DEPTH (1u << 18) /* stream pages remembered as victims: 1 GiB */

struct smartpage_counters {
        uint64_t pages_in, pages_out, faults, minor_faults, wp_faults, discarded;
        uint64_t pages_written;  /* pages_out that needed a write (the others were clean) */
        uint64_t stream_faults;  /* faults that continued a sequential stream */
        uint64_t dropped_behind; /* victims that came from the drop-behind stack */
};

/* A run of dirty victims whose write is queued (not yet submitted or not yet complete). */
struct victim_run {
        uint64_t first; /* page */
        unsigned n;     /* pages */
        unsigned req;   /* its request in the io queue */
};

struct victim_batch {
        struct victim_run runs[NR_SLOTS];
        unsigned nr;
        uint64_t pages;
};

struct smartpage {
        /* Set at start, then read-only. */
        int memfd;
        uint64_t memfd_off;
        uint8_t *region; /* registered: the guest's view, faults go to the handler */
        uint8_t *alias;  /* the same memfd range, unregistered: the engine's own view */
        uint64_t len, nr_pages;
        unsigned readahead;
        void (*on_error)(int error, void *userdata);
        void *userdata;

        int uffd, wake_fd, error_fd;
        bool wp; /* userfaultfd write-protect on shmem: clean pages are tracked */
        pthread_t thread;
        bool thread_started;

        /* Everything below is under lock; the handler holds it while it works. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct pagetab pt;
        struct dropbehind db;
        struct pageio io;
        struct paging_file file;
        uint64_t victims[NR_SLOTS];
        struct victim_batch pending; /* queued writes of dirty victims */
        uint64_t limit_pages;
        /* UFFDIO_CONTINUE_MODE_WP works (Linux >= 6.4); cleared on the first EINVAL. */
        bool continue_wp;
        bool registered;
        bool finishing; /* finish asked: read everything back, then unregister */
        bool finished;  /* unregistered after reading everything back */
        bool stop;      /* the handler thread is to exit */
        uint64_t finish_cursor;
        uint64_t seq_next;     /* the page a sequential stream of faults would hit next */
        unsigned ra_window;    /* pages read for the last sequential fault; 0 after a random one */
        uint64_t minor_next;   /* the page a sequential stream of MINOR faults would hit next */
        unsigned minor_window; /* pages mapped around the last one of such a stream */
        /* The next window of a sequential stream, read while the current one is used. */
        struct {
                bool active, done;
                uint64_t first;
                unsigned n, req;
                int res;
        } ahead;
        int error;
        uint64_t start_ns, end_ns;
        struct smartpage_counters count;
};

void engine_fail(struct smartpage *sp, int error, const char *what);

/* evict.c: makes room for `need` more resident pages; 0 or a negative errno (engine failed). */
int engine_make_room(struct smartpage *sp, uint64_t need);
/*
 * The same, but the writes of the last batch of dirty victims are left queued in sp->io (their
 * pages still resident): the caller queues its read behind them and submits both; the
 * engine_io_wait() that completes them (at once, or the handler's next engine_settle()) calls
 * engine_evict_complete(), which punches the victims written.
 */
int engine_make_room_queued(struct smartpage *sp, uint64_t need);
int engine_evict_complete(struct smartpage *sp);
/*
 * pageio_wait(), noting the result of the asynchronous read when it was among the requests and
 * completing the eviction of the victims whose writes were (engine_evict_complete(); a failed
 * write fails the engine).
 */
int engine_io_wait(struct smartpage *sp);
/* Completes whatever requests are queued or in flight (the next window's read, its victims'
 * writes): first thing in every handler round and before anything else changes pages. */
void engine_settle(struct smartpage *sp);
/* Forgets the asynchronous read (waiting for it: its slots are reused). */
void engine_drop_ahead(struct smartpage *sp);
/* Evicts one batch towards the free pool when it is low; returns whether it did. */
bool engine_evict_ahead(struct smartpage *sp);
bool engine_pool_low(const struct smartpage *sp);
uint64_t engine_pool_pages(const struct smartpage *sp);

/* pagein.c */
int engine_page_in(struct smartpage *sp, uint64_t page, bool write);
/* A MINOR fault's page is resident: maps it again, write-protected if it is still clean. */
int engine_remap(struct smartpage *sp, uint64_t page, bool write);
int engine_finish_chunk(struct smartpage *sp, bool *done);

/* handler.c */
void *engine_thread(void *arg);
void engine_poke(struct smartpage *sp);

static inline uint8_t *page_addr(const struct smartpage *sp, uint64_t page)
{
        return sp->region + page * PAGE;
}

static inline uint8_t *alias_addr(const struct smartpage *sp, uint64_t page)
{
        return sp->alias + page * PAGE;
}
