/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Counters of what the virtio-mem device did since it was created (they survive device resets):
 * plain fields, updated under the device lock and copied out by virtio_mem_get_state().
 */
#pragma once

#include <stdint.h>

struct virtio_mem_metrics {
        uint64_t plug_requests;       /* PLUG requests answered, whatever the answer */
        uint64_t unplug_requests;     /* UNPLUG requests answered */
        uint64_t unplug_all_requests; /* UNPLUG_ALL requests answered */
        uint64_t state_requests;      /* STATE requests answered */
        uint64_t nacks;               /* PLUG refused: it would go past requested_size */
        uint64_t errors;              /* ERROR answers: bad range, wrong state, unknown type */
        uint64_t busy;                /* BUSY answers: the host could not (un)map the blocks */
        uint64_t plugged_blocks;      /* blocks plugged, in total */
        uint64_t unplugged_blocks;    /* blocks unplugged, in total */
        uint64_t discarded_bytes;     /* bytes punched out of the memfd */
        uint64_t discard_calls;       /* guest_mem_discard() calls: one per contiguous run */
        uint64_t discard_errors;      /* of which failed (the host keeps the pages) */
        uint64_t malformed_events;    /* broken rings or requests: the device then needs reset */
        uint64_t nudges;              /* config interrupts re-sent to a driver that stalled */
        /*
         * How long the driver took to do what was asked: the time plugged_size was above
         * requested_size (an unplug in progress), and below it while the driver ran (a plug in
         * progress). Of which request_ns is the host's own share, spent carrying out requests
         * (mapping, unmapping, punching holes); the rest is the guest finding, offlining or
         * onlining memory.
         */
        uint64_t unplug_behind_ns;
        uint64_t plug_behind_ns;
        uint64_t request_ns;
};
