/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Memory demand: how much memory a guest actually needs, estimated from its balloon
 * statistics (docs/dynamic-memory.md has the formula and the reasons behind it). Pure
 * functions; the statistics come from the guest and are not trusted.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "virtio-balloon/stats.h"

/* One statistics report and what the VMM knew when it arrived. */
struct demand_sample {
        struct balloon_stats stats;
        uint64_t assigned;       /* bytes the guest could use: RAM + plugged - ballooned */
        uint64_t balloon_actual; /* bytes in the balloon, by the driver's own count */
        bool deflate_on_oom;     /* negotiated: ballooned pages still count in MemTotal */
};

/* Signals that the guest is short of memory, seen between two reports. */
enum {
        DEMAND_PRESSURE_SWAP_IN = 1u << 0,
        DEMAND_PRESSURE_MAJOR_FAULTS = 1u << 1,
        DEMAND_PRESSURE_ALLOC_STALL = 1u << 2,
        DEMAND_PRESSURE_DIRECT_RECLAIM = 1u << 3,
        DEMAND_PRESSURE_OOM_KILL = 1u << 4,
};

/* Major faults per report above which the guest is taken to be thrashing its page cache. */
#define DEMAND_MAJOR_FAULTS_MIN 256u

struct demand {
        uint64_t used;     /* MemTotal - MemAvailable, ballooned pages taken out, + overhead */
        uint64_t demand;   /* used, raised under pressure */
        unsigned pressure; /* DEMAND_PRESSURE_* seen since the previous report */
};

/*
 * What the guest kernel keeps out of MemTotal (its image, the memmap of every page, hot-added
 * memory's included): assigned RAM not in MemTotal. Meaningful only when assigned did not
 * change around the report; capped at half of assigned, against a lying guest. -ENODATA
 * without MemTotal.
 */
int demand_overhead(const struct demand_sample *s, uint64_t *ret);

/*
 * Estimates demand from report `cur` and the guest's `overhead` (demand_overhead() of a
 * stable moment); `prev` (the previous report, or NULL) gives the pressure signals, which are
 * counters. 0, or -ENODATA when the report lacks total or available memory.
 */
int demand_estimate(const struct demand_sample *cur, const struct demand_sample *prev,
                    uint64_t overhead, struct demand *ret);
