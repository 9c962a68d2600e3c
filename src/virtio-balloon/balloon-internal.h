/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The balloon's state, shared by balloon.c (the device: config space, negotiation, the VMM API)
 * and queues.c (what the driver puts in the queues, the stats timer). Not for other components;
 * the unit tests and the fuzzer use it to drive the handlers directly.
 */
#pragma once

#include "tidal/clock.h"

#include "virtio-balloon/balloon.h"
#include "virtio-balloon/open-blocks.h"
#include "virtio-balloon/pfn-ranges.h"

struct event_source;

/* inflate, deflate, stats, reporting: the most the driver can set up with what tidal offers. */
#define BALLOON_NR_QUEUES 4
/* Free page reporting needs 32 entries (PAGE_REPORTING_CAPACITY); stats needs one. */
#define BALLOON_QUEUE_SIZE 128
/* Linux sends 256; the bound keeps one request from holding the event loop for long. */
#define BALLOON_MAX_PFNS_PER_REQUEST (16 * PFN_BATCH_MAX)

enum balloon_role {
        BALLOON_ROLE_NONE,
        BALLOON_ROLE_INFLATE,
        BALLOON_ROLE_DEFLATE,
        BALLOON_ROLE_STATS,
        BALLOON_ROLE_REPORTING,
};

struct balloon {
        struct virtio_dev dev; /* dev.priv == this */
        struct guest_mem *mem;
        struct balloon_options opts;
        uint64_t ram_pages;

        /* Config space. */
        uint32_t num_pages; /* the target, VMM-owned */
        uint32_t actual;    /* as the driver last wrote it: a report, never trusted */

        /* Driver-visible state, dropped on reset. */
        enum balloon_role roles[BALLOON_NR_QUEUES];
        uint64_t inflated_pages;
        bool stats_held; /* the driver's stats buffer, kept until the next period */
        uint16_t stats_head;
        unsigned stats_queue;

        /* Host-side state, kept across resets. */
        struct event_source *stats_timer; /* created at the first activation */
        bool stats_valid;
        struct balloon_stats stats;
        uint64_t stats_seq;
        uint64_t stats_time_ns;
        int stats_event_fd; /* eventfd signalled after each report (balloon_stats_eventfd) */
        struct balloon_metrics metrics;
        bool discard_error_logged;

        /*
         * Inflated pages not punched yet (discard.c). Flushed on reset, so a new driver never
         * has a page punched that the old one ballooned; the flush timer is created at the
         * first activation and armed only while blocks are open and the guest inflates.
         */
        struct open_blocks open;
        struct event_source *flush_timer;
        bool flush_armed;
        uint64_t last_inflate_ns;
};

/* discard.c */

/* Merges adjacent ranges into one discard; balloon_punch_end() punches what is left. */
struct balloon_punch {
        struct balloon *b;
        uint64_t gpa, len;
};
void balloon_punch_add(void *opaque, uint64_t gpa, uint64_t len); /* a pfn_range_fn */
void balloon_punch_end(struct balloon_punch *p);
/* pfn_range_fn for each request type; opaque is a balloon_punch, or the balloon for deflate. */
void balloon_inflate_range(void *opaque, uint64_t gpa, uint64_t len);
void balloon_deflate_range(void *opaque, uint64_t gpa, uint64_t len);
void balloon_report_range(void *opaque, uint64_t gpa, uint64_t len);
/* Punches every open block's pages and disarms the flush timer. */
void balloon_flush(struct balloon *b);
/* After an inflate request: notes the time and arms the flush timer if blocks are open. */
void balloon_inflate_done(struct balloon *b);
/* Creates the (disarmed) flush timer once the device has a loop. 0 or -errno. */
int balloon_flush_timer_init(struct balloon *b);

/* queues.c */
void balloon_queue_notify(struct virtio_dev *dev, unsigned idx);
/* Returns the held stats buffer so the driver refills it (the timer calls this, locked). */
void balloon_stats_tick(struct balloon *b);
/* Creates or re-arms the stats timer for the current period. 0 or -errno. */
int balloon_stats_timer_update(struct balloon *b);
