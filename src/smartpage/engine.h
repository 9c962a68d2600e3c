/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The paging engine's state, shared by its files (not an interface for other components). */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "smartpage/clock.h"
#include "smartpage/file.h"
#include "smartpage/io.h"
#include "smartpage/smartpage.h"

#define PAGE        4096u
#define EVICT_BATCH 64u  /* victims written per eviction round */
#define NR_SLOTS    256u /* bounce pages: the largest batch of one round */

struct smartpage_counters {
        uint64_t pages_in, pages_out, faults, minor_faults, discarded;
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
        pthread_t thread;
        bool thread_started;

        /* Everything below is under lock; the handler holds it while it works. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct pagetab pt;
        struct pageio io;
        struct paging_file file;
        uint64_t victims[NR_SLOTS];
        uint64_t limit_pages;
        bool registered;
        bool finishing; /* finish asked: read everything back, then unregister */
        bool finished;  /* unregistered after reading everything back */
        bool stop;      /* the handler thread is to exit */
        uint64_t finish_cursor;
        uint64_t seq_next; /* the page a sequential stream of faults would hit next */
        int error;
        uint64_t start_ns, end_ns;
        struct smartpage_counters count;
};

/* stats.c */
uint64_t now_ns(void);
void engine_fail(struct smartpage *sp, int error, const char *what);

/* evict.c: makes room for `need` more resident pages; 0 or a negative errno (engine failed). */
int engine_make_room(struct smartpage *sp, uint64_t need);

/* pagein.c */
int engine_page_in(struct smartpage *sp, uint64_t page);
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
