/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Counters of what the balloon did since it was created (they survive device resets): plain
 * fields, updated under the device lock and copied out by balloon_get_state().
 */
#pragma once

#include <stdint.h>

struct balloon_metrics {
        uint64_t inflate_requests;  /* chains served on the inflate queue */
        uint64_t deflate_requests;  /* chains served on the deflate queue */
        uint64_t report_requests;   /* chains served on the reporting queue */
        uint64_t inflated_pages;    /* distinct in-RAM pages named by inflate requests */
        uint64_t deflated_pages;    /* distinct in-RAM pages named by deflate requests */
        uint64_t reported_pages;    /* in-RAM pages given back by free page reporting */
        uint64_t discarded_bytes;   /* bytes punched out of the memfd (inflate + reporting) */
        uint64_t discard_calls;     /* guest_mem_discard() calls, i.e. fallocate syscalls */
        uint64_t discard_errors;    /* of which failed (the host keeps the pages) */
        uint64_t deferred_pages;    /* inflated pages punched late, by a flush or an eviction */
        uint64_t evicted_blocks;    /* partial blocks punched because the open table was full */
        uint64_t out_of_range_pfns; /* pages named by the guest outside RAM, skipped */
        uint64_t skipped_reports;   /* reported ranges not page aligned, skipped */
        uint64_t malformed_events;  /* broken rings or requests: the device then needs reset */
        uint64_t stats_updates;     /* stats buffers parsed */
        uint64_t stats_requests;    /* stats buffers returned to the driver to be refilled */
};
