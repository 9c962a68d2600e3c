/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "tidal/macro.h"
#include "virtio-balloon/stats.h"

static const char *const stat_names[BALLOON_STAT_NR] = {
        [BALLOON_STAT_SWAP_IN] = "swap-in",
        [BALLOON_STAT_SWAP_OUT] = "swap-out",
        [BALLOON_STAT_MAJFLT] = "major-faults",
        [BALLOON_STAT_MINFLT] = "minor-faults",
        [BALLOON_STAT_MEMFREE] = "free-memory",
        [BALLOON_STAT_MEMTOT] = "total-memory",
        [BALLOON_STAT_AVAIL] = "available-memory",
        [BALLOON_STAT_CACHES] = "disk-caches",
        [BALLOON_STAT_HTLB_PGALLOC] = "hugetlb-allocations",
        [BALLOON_STAT_HTLB_PGFAIL] = "hugetlb-failures",
        [BALLOON_STAT_OOM_KILL] = "oom-kills",
        [BALLOON_STAT_ALLOC_STALL] = "alloc-stalls",
        [BALLOON_STAT_ASYNC_SCAN] = "async-scans",
        [BALLOON_STAT_DIRECT_SCAN] = "direct-scans",
        [BALLOON_STAT_ASYNC_RECLAIM] = "async-reclaims",
        [BALLOON_STAT_DIRECT_RECLAIM] = "direct-reclaims",
};

const char *balloon_stat_name(unsigned tag)
{
        return tag < BALLOON_STAT_NR ? stat_names[tag] : NULL;
}

int balloon_stats_parse(const void *buf, size_t len, struct balloon_stats *ret)
{
        const uint8_t *p = buf;
        struct balloon_stats st = {0};

        if (len > BALLOON_STATS_MAX_BYTES)
                return -EMSGSIZE;
        if (len % BALLOON_STAT_ENTRY_SIZE)
                return -EBADMSG;
        for (size_t off = 0; off < len; off += BALLOON_STAT_ENTRY_SIZE) {
                uint16_t tag;
                uint64_t val;

                /* Packed and unaligned in the guest's buffer: copy, never cast. */
                memcpy(&tag, p + off, sizeof(tag));
                memcpy(&val, p + off + sizeof(tag), sizeof(val));
                tag = le16toh(tag);
                if (tag >= BALLOON_STAT_NR) {
                        st.nr_unknown++;
                        continue;
                }
                st.val[tag] = le64toh(val);
                st.present |= UINT32_C(1) << tag;
        }
        *ret = st;
        return 0;
}
