/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>

#include "tidal/macro.h"
#include "vmm/dynmem/demand.h"

static bool has(const struct balloon_stats *s, unsigned tag)
{
        return s->present & (UINT32_C(1) << tag);
}

/* How much a counter grew; 0 when either report lacks it or it went backwards (a reset). */
static uint64_t grew(const struct demand_sample *cur, const struct demand_sample *prev,
                     unsigned tag)
{
        if (!prev || !has(&cur->stats, tag) || !has(&prev->stats, tag))
                return 0;
        return cur->stats.val[tag] > prev->stats.val[tag]
                       ? cur->stats.val[tag] - prev->stats.val[tag]
                       : 0;
}

static unsigned pressure_of(const struct demand_sample *cur, const struct demand_sample *prev)
{
        unsigned p = 0;

        if (grew(cur, prev, BALLOON_STAT_SWAP_IN))
                p |= DEMAND_PRESSURE_SWAP_IN;
        if (grew(cur, prev, BALLOON_STAT_MAJFLT) >= DEMAND_MAJOR_FAULTS_MIN)
                p |= DEMAND_PRESSURE_MAJOR_FAULTS;
        if (grew(cur, prev, BALLOON_STAT_ALLOC_STALL))
                p |= DEMAND_PRESSURE_ALLOC_STALL;
        if (grew(cur, prev, BALLOON_STAT_DIRECT_RECLAIM) ||
            grew(cur, prev, BALLOON_STAT_DIRECT_SCAN))
                p |= DEMAND_PRESSURE_DIRECT_RECLAIM;
        if (grew(cur, prev, BALLOON_STAT_OOM_KILL))
                p |= DEMAND_PRESSURE_OOM_KILL;
        return p;
}

int demand_overhead(const struct demand_sample *s, uint64_t *ret)
{
        uint64_t ram = s->assigned + (s->deflate_on_oom ? s->balloon_actual : 0);
        uint64_t total;

        if (!has(&s->stats, BALLOON_STAT_MEMTOT))
                return -ENODATA;
        total = s->stats.val[BALLOON_STAT_MEMTOT];
        *ret = MIN(ram > total ? ram - total : 0, s->assigned / 2);
        return 0;
}

int demand_estimate(const struct demand_sample *cur, const struct demand_sample *prev,
                    uint64_t overhead, struct demand *ret)
{
        const struct balloon_stats *s = &cur->stats;
        uint64_t total, avail, used;

        if (!has(s, BALLOON_STAT_MEMTOT) || !has(s, BALLOON_STAT_AVAIL))
                return -ENODATA;
        total = s->val[BALLOON_STAT_MEMTOT];
        avail = s->val[BALLOON_STAT_AVAIL];
        used = total > avail ? total - avail : 0;
        /*
         * With DEFLATE_ON_OOM, Linux leaves ballooned pages in MemTotal (it does not adjust
         * managed pages), so they look used; without it they are gone from MemTotal already.
         */
        if (cur->deflate_on_oom)
                used = used > cur->balloon_actual ? used - cur->balloon_actual : 0;
        /* What the kernel reserved is needed as much as what it counts as used. */
        used += overhead;
        /* A guest cannot use more than it has: a larger figure is a lie or a race. */
        used = MIN(used, cur->assigned);

        *ret = (struct demand){.used = used, .demand = used, .pressure = pressure_of(cur, prev)};
        /*
         * Starving: what it uses is less than what it wants. Ask for an eighth more than it
         * has, so the controller grows it even when used already equals assigned.
         */
        if (ret->pressure)
                ret->demand = MAX(used, cur->assigned + cur->assigned / 8);
        return 0;
}
