/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tidal/macro.h"
#include "virtio-balloon/open-blocks.h"

#define PAGE_SHIFT 12

/* Sets or clears bits [first, first + n) of a block's map; returns how many changed. */
static unsigned change_bits(uint64_t *map, unsigned first, unsigned n, bool set)
{
        unsigned changed = 0;

        while (n > 0) {
                unsigned w = first / 64, off = first % 64, k = MIN(n, 64 - off);
                uint64_t mask = (k == 64 ? UINT64_MAX : (UINT64_C(1) << k) - 1) << off;
                uint64_t flip = (set ? ~map[w] : map[w]) & mask;

                changed += (unsigned)__builtin_popcountll(flip);
                map[w] ^= flip;
                first += k;
                n -= k;
        }
        return changed;
}

/* The first bit at or after from that is set (or clear); OPEN_BLOCK_PAGES if none. */
static unsigned next_bit(const uint64_t *map, unsigned from, bool set)
{
        while (from < OPEN_BLOCK_PAGES) {
                uint64_t w = (set ? map[from / 64] : ~map[from / 64]) & (UINT64_MAX << from % 64);

                if (w)
                        return from / 64 * 64 + (unsigned)__builtin_ctzll(w);
                from = (from / 64 + 1) * 64;
        }
        return OPEN_BLOCK_PAGES;
}

static void emit_runs(const struct open_block *e, pfn_range_fn fn, void *opaque)
{
        uint64_t base = e->block << OPEN_BLOCK_SHIFT;
        unsigned i = 0, end;

        while ((i = next_bit(e->map, i, true)) < OPEN_BLOCK_PAGES) {
                end = next_bit(e->map, i, false);
                fn(opaque, base + ((uint64_t)i << PAGE_SHIFT), (uint64_t)(end - i) << PAGE_SHIFT);
                i = end;
        }
}

/* Index of the entry for block, or -1. Linear, but at most OPEN_BLOCKS_MAX entries. */
static long find(struct open_blocks *t, uint64_t block)
{
        if (t->hint < t->nr && t->keys[t->hint] == block)
                return (long)t->hint;
        for (size_t i = 0; i < t->nr; i++) {
                if (t->keys[i] == block) {
                        t->hint = i;
                        return (long)i;
                }
        }
        return -1;
}

/* Drops entry i (its pages are no longer pending); the last entry takes its slot. */
static void drop(struct open_blocks *t, size_t i)
{
        t->pending_pages -= t->slots[i].nr_set;
        t->nr--;
        t->slots[i] = t->slots[t->nr];
        t->keys[i] = t->keys[t->nr];
        t->seqs[i] = t->seqs[t->nr];
        t->hint = 0;
}

static void evict_oldest(struct open_blocks *t, pfn_range_fn fn, void *opaque)
{
        size_t oldest = 0;

        for (size_t i = 1; i < t->nr; i++)
                if (t->seqs[i] < t->seqs[oldest])
                        oldest = i;
        emit_runs(&t->slots[oldest], fn, opaque);
        t->late_pages += t->slots[oldest].nr_set;
        t->evictions++;
        drop(t, oldest);
}

static size_t open_block(struct open_blocks *t, uint64_t block, pfn_range_fn fn, void *opaque)
{
        struct open_block *e;

        if (t->nr == OPEN_BLOCKS_MAX)
                evict_oldest(t, fn, opaque);
        e = &t->slots[t->nr];
        memset(e, 0, sizeof(*e));
        e->block = block;
        t->keys[t->nr] = block;
        t->seqs[t->nr] = t->next_seq++;
        t->hint = t->nr;
        return t->nr++;
}

/* Pages [first, first + n) of one block. */
static void add_chunk(struct open_blocks *t, uint64_t block, unsigned first, unsigned n,
                      pfn_range_fn fn, void *opaque)
{
        long found = find(t, block);
        struct open_block *e;
        size_t i;
        unsigned changed;

        /* A whole block not held yet: nothing to remember. */
        if (found < 0 && n == OPEN_BLOCK_PAGES) {
                fn(opaque, block << OPEN_BLOCK_SHIFT, OPEN_BLOCK_SIZE);
                return;
        }
        i = found < 0 ? open_block(t, block, fn, opaque) : (size_t)found;
        e = &t->slots[i];
        changed = change_bits(e->map, first, n, true);
        e->nr_set += changed;
        t->pending_pages += changed;
        if (e->nr_set == OPEN_BLOCK_PAGES) {
                /* Complete: one discard frees the huge page whole instead of splitting it. */
                fn(opaque, block << OPEN_BLOCK_SHIFT, OPEN_BLOCK_SIZE);
                drop(t, i);
        }
}

void open_blocks_add(struct open_blocks *t, uint64_t gpa, uint64_t len, pfn_range_fn fn,
                     void *opaque)
{
        uint64_t page = gpa >> PAGE_SHIFT, end = page + (len >> PAGE_SHIFT);

        while (page < end) {
                unsigned first = page % OPEN_BLOCK_PAGES;
                unsigned n = (unsigned)MIN(end - page, OPEN_BLOCK_PAGES - first);

                add_chunk(t, page / OPEN_BLOCK_PAGES, first, n, fn, opaque);
                page += n;
        }
}

/* Clears pages [first, end) (page numbers) from entry i, if they meet it. */
static void forget_in(struct open_blocks *t, size_t i, uint64_t first, uint64_t end)
{
        struct open_block *e = &t->slots[i];
        uint64_t bfirst = e->block * OPEN_BLOCK_PAGES, bend = bfirst + OPEN_BLOCK_PAGES;
        uint64_t s = MAX(first, bfirst), x = MIN(end, bend);
        unsigned changed;

        if (s >= x)
                return;
        changed = change_bits(e->map, (unsigned)(s - bfirst), (unsigned)(x - s), false);
        e->nr_set -= changed;
        t->pending_pages -= changed;
        if (e->nr_set == 0)
                drop(t, i);
}

void open_blocks_forget(struct open_blocks *t, uint64_t gpa, uint64_t len)
{
        /* Saturates: a range the guest made up must not wrap around. */
        uint64_t first = gpa >> PAGE_SHIFT;
        uint64_t end = (len > UINT64_MAX - gpa ? UINT64_MAX : gpa + len) >> PAGE_SHIFT;
        uint64_t bfirst = first / OPEN_BLOCK_PAGES, blast;

        if (t->nr == 0 || end <= first)
                return;
        blast = (end - 1) / OPEN_BLOCK_PAGES;
        /* A deflate run spans a block or two: look those up rather than walk the table. */
        if (blast - bfirst < 4) {
                for (uint64_t b = bfirst; b <= blast; b++) {
                        long i = find(t, b);

                        if (i >= 0)
                                forget_in(t, (size_t)i, first, end);
                }
                return;
        }
        /* Backwards: drop() moves the last entry into the hole, which was already seen. */
        for (size_t i = t->nr; i-- > 0;)
                forget_in(t, i, first, end);
}

static int cmp_block(const void *a, const void *b)
{
        uint64_t x = ((const struct open_block *)a)->block,
                 y = ((const struct open_block *)b)->block;

        return (x > y) - (x < y);
}

void open_blocks_flush(struct open_blocks *t, pfn_range_fn fn, void *opaque)
{
        if (t->nr == 0)
                return;
        /*
         * In address order, so that the caller can merge runs that meet at a block boundary.
         * keys and seqs no longer match slots afterwards, but the table is empty then.
         */
        qsort(t->slots, t->nr, sizeof(t->slots[0]), cmp_block);
        for (size_t i = 0; i < t->nr; i++)
                emit_runs(&t->slots[i], fn, opaque);
        t->late_pages += t->pending_pages;
        t->pending_pages = 0;
        t->nr = 0;
        t->hint = 0;
}
