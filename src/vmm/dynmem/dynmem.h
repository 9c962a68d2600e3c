/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Dynamic memory for one boot of a guest: as each balloon statistics report arrives (and at
 * least once a period), the report gives the demand, the controller a target, and the target is
 * carried out with virtio-mem (above Startup) and the balloon (below it). With the host daemon
 * (tidald) the target comes from it instead of the controller; everything else stays. Runs on the
 * VMM's event loop; every function here must be called on that thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tidal/memory-settings.h"

struct balloon;
struct event_loop;
struct virtio_mem;
struct dynmem;

#define DYNMEM_PERIOD_NS    1000000000ULL /* longest time between rounds (one per report) */
#define DYNMEM_STUCK_ROUNDS 5 /* rounds without unplug progress before the balloon steps in */
#define DYNMEM_NUDGE_ROUNDS 3 /* rounds without virtio-mem progress before it is nudged */
/* A low reading's confirmation is asked for this soon, not a period later: long enough for a
 * blip (a process between two allocations) to pass, short enough not to hold a shrink back. */
#define DYNMEM_CONFIRM_NS 250000000ULL

/* Where the target comes from. */
enum dynmem_source {
        DYNMEM_SOURCE_CONTROLLER, /* the standalone controller (controller_next_target) */
        DYNMEM_SOURCE_EXTERNAL,   /* the host daemon, through dynmem_set_external_target() */
};

struct dynmem_state {
        enum dynmem_source source;
        uint64_t target;   /* where the guest is being moved */
        uint64_t assigned; /* what the guest can use now: startup + plugged - ballooned */
        bool have_demand;  /* a usable statistics report has arrived */
        uint64_t demand;
        unsigned pressure; /* DEMAND_PRESSURE_* of the latest report */
        bool fresh;        /* the latest statistics are recent */
        enum mem_status status;
        uint64_t balloon;      /* bytes in the balloon (the driver's count) */
        uint64_t vmem_plugged; /* bytes plugged with virtio-mem */
        uint64_t vmem_stuck;   /* plugged memory virtio-mem cannot unplug, ballooned instead */
        uint64_t unplugging;   /* what virtio-mem is taking out now (controller_input) */
};

/* Called at the end of every round that used a new statistics report. */
typedef void (*dynmem_report_fn)(void *opaque, const struct dynmem_state *state);

/*
 * Starts controlling a booted guest. settings must outlive it (the VMM changes them at
 * runtime, then calls dynmem_kick()); vmem may be NULL (no region), region is its size.
 * 0 or a negative errno.
 */
int dynmem_new(struct event_loop *loop, const struct mem_settings *settings, struct balloon *b,
               struct virtio_mem *vmem, uint64_t region, struct dynmem **ret);
void dynmem_free(struct dynmem *d);

/* Runs one controller round now (after a settings change). */
void dynmem_kick(struct dynmem *d);

/* The state: assigned, balloon and vmem_plugged as the devices hold them now, the rest as of
 * the last round (status is that round's verdict). */
void dynmem_get_state(struct dynmem *d, struct dynmem_state *ret);

/*
 * Switches the target's source. Leaving the controller keeps the current target until
 * dynmem_set_external_target() moves it; nothing else changes: demand, status and the split
 * between virtio-mem and the balloon work the same in both.
 */
void dynmem_set_source(struct dynmem *d, enum dynmem_source source);

/*
 * The host daemon's target: clamped to [minimum, maximum] and whole blocks
 * (controller_external_target), applied at once. Only in DYNMEM_SOURCE_EXTERNAL (-EPERM
 * otherwise).
 */
int dynmem_set_external_target(struct dynmem *d, uint64_t bytes);

/* fn (NULL: none) hears about every new statistics report, after the round it fed. */
void dynmem_set_report_fn(struct dynmem *d, dynmem_report_fn fn, void *opaque);
