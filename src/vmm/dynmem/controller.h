/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The standalone memory controller: where a guest's memory should go next, from its settings
 * and its demand, and how that splits between virtio-mem (above Startup) and the balloon
 * (below it, and whatever virtio-mem cannot unplug). Pure functions, called once per
 * statistics report; docs/dynamic-memory.md explains the choices.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tidal/memory-settings.h"

#define CONTROLLER_DEADBAND_MIN (16ULL << 20) /* or 1/32 of the target, whichever is larger */
#define CONTROLLER_SHRINK_MAX   (2ULL << 30)  /* largest step down per report */
#define CONTROLLER_GROW_MAX     (8ULL << 30)  /* largest step up per report */

struct controller_input {
        const struct mem_settings *settings;
        uint64_t target; /* the current target: what the guest is being moved to */
        uint64_t demand; /* bytes, from demand_estimate() */
        bool fresh;      /* demand comes from a recent report; stale data never shrinks */
        bool settled;    /* the previous report wanted less too: the low demand is no blip */
        bool pressure;   /* the guest showed signs of starving (demand_estimate()) */
        /*
         * Memory on its way out right now: virtio-mem's plugged size above its requested size.
         * The guest's driver isolates the free pages of the block it is offlining, and Linux
         * counts isolated pages neither free nor available: a report taken meanwhile shows up
         * to this much more in use than there is.
         */
        uint64_t unplugging;
};

/*
 * The next target: clamp(demand * (1 + buffer), minimum, maximum). It grows at once (up to
 * CONTROLLER_GROW_MAX), but while memory is being unplugged only on demand that the memory in
 * flight cannot explain, or under pressure; it shrinks only on fresh statistics, outside the dead
 * band, and once a second report confirms the low demand (`settled`), then by the whole gap (at
 * most CONTROLLER_SHRINK_MAX). Always within [minimum, maximum] and a multiple of MEM_BLOCK_SIZE.
 */
uint64_t controller_next_target(const struct controller_input *in);

/* True if this report, on its own, wants the guest smaller: fresh, below the dead band. */
bool controller_wants_less(const struct controller_input *in);

/*
 * A target set from outside (the host daemon): clamped to [minimum, maximum] and rounded down
 * to whole MEM_BLOCK_SIZE blocks. The daemon is not trusted to respect the settings, which may
 * also have changed since it decided.
 */
uint64_t controller_external_target(const struct mem_settings *s, uint64_t bytes);

struct mem_split {
        uint64_t vmem;    /* virtio-mem requested size: memory plugged above startup */
        uint64_t balloon; /* balloon target */
};

/*
 * Splits a target between the two mechanisms. region: the virtio-mem region's size (0 for
 * none). vmem_stuck: bytes virtio-mem still has plugged above its requested size and has
 * stopped unplugging; the balloon covers them.
 */
void controller_split(uint64_t target, uint64_t startup, uint64_t region, uint64_t vmem_stuck,
                      struct mem_split *ret);
