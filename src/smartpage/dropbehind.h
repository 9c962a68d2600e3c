/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Drop-behind for sequential streams of faults: the pages a stream has passed are the first
 * victims, most recently passed first.
 *
 * The clock approximates LRU, and LRU is at its worst on a loop over more memory than the
 * budget: every page is evicted just before the loop comes back to it, so every access misses.
 * Evicting the pages the stream passed most recently instead keeps the loop's beginning
 * resident, and each turn misses only what does not fit (plus the lag). Pages a stream brought
 * in wait `lag` pages (a FIFO) before they can be dropped, so the window in use and its
 * neighbours stay; then they go on a stack, popped newest first. The stack forgets its oldest
 * entries when full: those pages are left to the clock.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct page_ring {
        uint64_t *pages;
        unsigned cap, head, n; /* head: the oldest entry */
};

struct dropbehind {
        struct page_ring lag;   /* the newest stream pages, not yet victims */
        struct page_ring stack; /* victims, newest at the end */
};

/* lag and depth in pages, depth > 0; 0 or -ENOMEM. */
int dropbehind_init(struct dropbehind *db, unsigned lag, unsigned depth);
void dropbehind_done(struct dropbehind *db);

/* A page a sequential stream brought in. */
void dropbehind_push(struct dropbehind *db, uint64_t page);

/* The most recently passed page on the stack; false when it is empty. */
bool dropbehind_pop(struct dropbehind *db, uint64_t *page);
