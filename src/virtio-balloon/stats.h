/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The balloon statistics a driver puts in the stats queue: an array of packed
 * struct virtio_balloon_stat { le16 tag; le64 val; } (10 bytes each, no padding). Tags 0-9 are
 * in the virtio spec; Linux 6.12 added 10-15. Memory amounts are in bytes, the rest are counts.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

enum balloon_stat_tag {
        BALLOON_STAT_SWAP_IN = 0,
        BALLOON_STAT_SWAP_OUT = 1,
        BALLOON_STAT_MAJFLT = 2,
        BALLOON_STAT_MINFLT = 3,
        BALLOON_STAT_MEMFREE = 4,
        BALLOON_STAT_MEMTOT = 5,
        BALLOON_STAT_AVAIL = 6,
        BALLOON_STAT_CACHES = 7,
        BALLOON_STAT_HTLB_PGALLOC = 8,
        BALLOON_STAT_HTLB_PGFAIL = 9,
        BALLOON_STAT_OOM_KILL = 10,
        BALLOON_STAT_ALLOC_STALL = 11,
        BALLOON_STAT_ASYNC_SCAN = 12,
        BALLOON_STAT_DIRECT_SCAN = 13,
        BALLOON_STAT_ASYNC_RECLAIM = 14,
        BALLOON_STAT_DIRECT_RECLAIM = 15,
        BALLOON_STAT_NR
};

#define BALLOON_STAT_ENTRY_SIZE 10u
/*
 * Linux sends at most one entry per tag it knows (16 in 6.12). The bound leaves room for future
 * tags while keeping what one guest request costs the event loop small.
 */
#define BALLOON_STATS_MAX_ENTRIES 128u
#define BALLOON_STATS_MAX_BYTES   (BALLOON_STATS_MAX_ENTRIES * BALLOON_STAT_ENTRY_SIZE)

struct balloon_stats {
        uint64_t val[BALLOON_STAT_NR];
        uint32_t present;    /* bit (1 << tag) for each tag the buffer carried */
        uint32_t nr_unknown; /* entries with tags tidal does not know, ignored */
};

/*
 * Parses one stats buffer into *ret (zeroed first; a tag given twice keeps the last value).
 * 0, -EBADMSG if len is not a whole number of entries, -EMSGSIZE above
 * BALLOON_STATS_MAX_BYTES. On error *ret is not touched.
 */
int balloon_stats_parse(const void *buf, size_t len, struct balloon_stats *ret);

/* "swap-in", "available-memory", ... as Linux names them; NULL for unknown tags. */
const char *balloon_stat_name(unsigned tag);
