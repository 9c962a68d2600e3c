/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Starting the VMM's own threads (vCPUs, the paging engine's handler, its read-back). */
#pragma once

#include <pthread.h>

/*
 * Each thread's stack: 1 MiB, below a huge page. glibc's default (RLIMIT_STACK, 8 MiB) is a
 * mapping that can hold an aligned 2 MiB range, and glibc writes its thread descriptor at the
 * top of the stack when it creates the thread: on a host with anonymous THP "always" (Debian's
 * default) that first write faults in a whole 2 MiB huge page, 2 MiB of RSS per thread for a
 * few KiB of stack (measured: tidal's VMM overhead 3.8 MiB with it, 1.8 without). A mapping
 * smaller than 2 MiB never gets one. These threads run device and paging code with small
 * frames; 1 MiB leaves ample room, also for sanitizer builds.
 */
#define THREAD_STACK_SIZE (1u << 20)

/* pthread_create() with THREAD_STACK_SIZE; 0 or a negative errno. */
static inline int thread_create(pthread_t *thread, void *(*fn)(void *), void *arg)
{
        pthread_attr_t attr;
        int r;

        r = pthread_attr_init(&attr);
        if (r != 0)
                return -r;
        r = pthread_attr_setstacksize(&attr, THREAD_STACK_SIZE);
        if (r == 0)
                r = pthread_create(thread, &attr, fn, arg);
        pthread_attr_destroy(&attr);
        return -r;
}
