/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Turns what a balloon driver hands over (a batch of 4 KiB PFNs, or a list of guest-physical
 * ranges) into the fewest page-aligned ranges that each lie inside one RAM region, so that one
 * guest_mem_discard() call covers a whole contiguous run instead of one call per page.
 *
 * Pure functions of their input and the region layout: no allocation, no I/O, no logging.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tidal/guest-mem.h"

/* The Linux driver sends at most 256 PFNs per request (VIRTIO_BALLOON_ARRAY_PFNS_MAX). */
#define PFN_BATCH_MAX 256u

/* Called once per coalesced range: page aligned, non-empty, inside one RAM region. */
typedef void (*pfn_range_fn)(void *opaque, uint64_t gpa, uint64_t len);

struct pfn_ranges_count {
        uint64_t pages;        /* distinct pages inside RAM, passed to the callback */
        uint64_t out_of_range; /* distinct pages outside RAM (the PCI hole, past the end) */
        uint64_t duplicates;   /* PFNs or pages given more than once, counted once */
};

/*
 * Sorts pfns in place, drops duplicates, merges contiguous PFNs into runs, and hands each run to
 * fn clipped to RAM and split where it crosses from one region to the next. Adds to *count.
 * Returns the number of ranges passed to fn.
 */
size_t pfn_ranges_from_pfns(uint32_t *pfns, size_t nr, const struct guest_mem *gm, pfn_range_fn fn,
                            void *opaque, struct pfn_ranges_count *count);

struct pfn_range {
        uint64_t gpa;
        uint64_t len;
};

/*
 * Same for byte ranges: only the whole pages inside each range are used (callers reject
 * unaligned ranges first, this is the safety net). Sorts ranges in place, merges overlapping and
 * adjacent ones, clips and splits as above. Returns the number of ranges passed to fn.
 */
size_t pfn_ranges_merge(struct pfn_range *ranges, size_t nr, const struct guest_mem *gm,
                        pfn_range_fn fn, void *opaque, struct pfn_ranges_count *count);
