/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The table of open 2 MiB blocks: inflated pages whose discard is put off.
 *
 * Guest RAM is backed by shmem huge pages. Punching part of a 2 MiB block splits its huge page,
 * KVM then drops its 2 MiB mapping, and the guest, which zeroes each page before ballooning it,
 * takes a nested page fault per 4 KiB page for the rest of the block. So inflated pages are
 * collected per 2 MiB guest-physical block: a block all of whose pages are ballooned is handed
 * back whole at once; a partial block waits here (one bit per page) until the balloon's owner
 * flushes it (quiet inflate, deflate, reset) or it is the oldest when the table is full.
 *
 * Memory is bounded (OPEN_BLOCKS_MAX entries, ~80 KiB); no allocation, no I/O: what is to be
 * discarded goes to a callback, in page-aligned ranges that never leave one block (the caller
 * merges neighbours and clips them to RAM).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "virtio-balloon/pfn-ranges.h"

#define OPEN_BLOCK_SHIFT 21 /* x86 PMD: the huge page size of shmem and of KVM's mappings */
#define OPEN_BLOCK_SIZE  (UINT64_C(1) << OPEN_BLOCK_SHIFT)
#define OPEN_BLOCK_PAGES (OPEN_BLOCK_SIZE / 4096)
#define OPEN_BLOCK_WORDS (OPEN_BLOCK_PAGES / 64)
/* 2 GiB of scattered partial blocks; past that the oldest is discarded as it stands. */
#define OPEN_BLOCKS_MAX 1024

struct open_block {
        uint64_t block;  /* guest-physical address >> OPEN_BLOCK_SHIFT */
        uint32_t nr_set; /* pages ballooned, bits set in map */
        uint64_t map[OPEN_BLOCK_WORDS];
};

struct open_blocks {
        size_t nr;
        size_t hint; /* the entry hit last: consecutive pages mostly fall in the same block */
        uint64_t next_seq;
        uint64_t pending_pages; /* bits set over all entries */
        /* Cumulative, never reset. */
        uint64_t late_pages; /* pages handed to the callback by a flush or an eviction */
        uint64_t evictions;  /* blocks flushed because the table was full */
        /*
         * Entry i is slots[i], keys[i] its block and seqs[i] when it was opened (the oldest goes
         * first when the table is full). Lookups and evictions scan keys and seqs, 8 KiB each,
         * not the 80 KiB of slots: a hostile request of 4096 scattered pages stays cheap.
         */
        uint64_t keys[OPEN_BLOCKS_MAX];
        uint64_t seqs[OPEN_BLOCKS_MAX];
        struct open_block slots[OPEN_BLOCKS_MAX];
};

/*
 * Inflated pages [gpa, gpa + len) (page aligned, any length): each block they complete goes to
 * fn whole; the rest are held. A page already held is counted once. When a new block finds the
 * table full, the oldest entry goes to fn first, as runs of its pages.
 */
void open_blocks_add(struct open_blocks *t, uint64_t gpa, uint64_t len, pfn_range_fn fn,
                     void *opaque);

/*
 * Pages [gpa, gpa + len) are no longer to be discarded later: deflated (the guest has them back)
 * or reported (discarded right now). Blocks left empty are dropped.
 */
void open_blocks_forget(struct open_blocks *t, uint64_t gpa, uint64_t len);

/* Hands every held page to fn, as runs in ascending address order, and empties the table. */
void open_blocks_flush(struct open_blocks *t, pfn_range_fn fn, void *opaque);
