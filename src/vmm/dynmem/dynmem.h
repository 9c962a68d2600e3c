/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Dynamic memory for one boot of a guest: once a second, the latest balloon statistics give
 * the demand, the controller a target, and the target is carried out with virtio-mem (above
 * Startup) and the balloon (below it). Runs on the VMM's event loop; every function here must
 * be called on that thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tidal/memory-settings.h"

struct balloon;
struct event_loop;
struct virtio_mem;
struct dynmem;

#define DYNMEM_PERIOD_NS    1000000000ULL /* how often the controller runs */
#define DYNMEM_STUCK_ROUNDS 5 /* rounds without unplug progress before the balloon steps in */
#define DYNMEM_NUDGE_ROUNDS 3 /* rounds without virtio-mem progress before it is nudged */

struct dynmem_state {
        uint64_t target;   /* where the controller is moving the guest */
        uint64_t assigned; /* what the guest can use now: startup + plugged - ballooned */
        bool have_demand;  /* a usable statistics report has arrived */
        uint64_t demand;
        unsigned pressure; /* DEMAND_PRESSURE_* of the latest report */
        enum mem_status status;
        uint64_t vmem_stuck; /* plugged memory virtio-mem cannot unplug, ballooned instead */
};

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

void dynmem_get_state(struct dynmem *d, struct dynmem_state *ret);
