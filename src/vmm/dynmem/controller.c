/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vmm/dynmem/controller.h"
#include "tidal/macro.h"

static uint64_t clamp_settings(uint64_t v, const struct mem_settings *s)
{
        return MIN(MAX(v, s->minimum), s->maximum);
}

static uint64_t deadband(uint64_t target)
{
        return MAX(CONTROLLER_DEADBAND_MIN, target / 32);
}

/* The target demand asks for, whole blocks within the settings. */
static uint64_t want_of(uint64_t demand, const struct mem_settings *s)
{
        /* Clamped first: the buffered demand saturates, and aligning that up would wrap. */
        return ALIGN_UP(clamp_settings(mem_with_buffer(demand, s->buffer), s), MEM_BLOCK_SIZE);
}

/*
 * The demand growth may act on. While a block is being unplugged, its free pages, isolated,
 * look used: growing on them would ask the guest's driver to keep part of the block, and it
 * would then unplug the rest 2 MiB at a time (dozens of requests instead of one) and leave a
 * partly plugged block behind. Starving is never discounted.
 */
static uint64_t growth_demand(const struct controller_input *in)
{
        if (in->pressure)
                return in->demand;
        return in->demand - MIN(in->demand, in->unplugging);
}

uint64_t controller_next_target(const struct controller_input *in)
{
        const struct mem_settings *s = in->settings;
        uint64_t cur = clamp_settings(ALIGN_DOWN(in->target, MEM_BLOCK_SIZE), s);
        uint64_t want = want_of(in->demand, s), grow_to = want_of(growth_demand(in), s);
        uint64_t step;

        /*
         * Growth has no dead band: anything below want leaves the guest Low, and a load
         * wandering up and down settles at its top, since shrinking has one.
         */
        if (grow_to > cur)
                return cur + MIN(grow_to - cur, CONTROLLER_GROW_MAX);
        /*
         * Never squeeze a guest on stale figures (it may be too busy to report), nor on one low
         * reading, which may be a blip; once the next report confirms it, the whole gap goes
         * in one step, so the guest's driver unplugs it in one pass.
         */
        if (!controller_wants_less(in) || !in->settled)
                return cur;
        step = MIN(cur - want, CONTROLLER_SHRINK_MAX);
        return cur - step;
}

bool controller_wants_less(const struct controller_input *in)
{
        const struct mem_settings *s = in->settings;
        uint64_t cur = clamp_settings(ALIGN_DOWN(in->target, MEM_BLOCK_SIZE), s);
        uint64_t want = want_of(in->demand, s);

        return in->fresh && want < cur && cur - want >= deadband(cur);
}

uint64_t controller_external_target(const struct mem_settings *s, uint64_t bytes)
{
        /* minimum and maximum are whole blocks: aligning first keeps the result inside. */
        return clamp_settings(ALIGN_DOWN(bytes, MEM_BLOCK_SIZE), s);
}

void controller_split(uint64_t target, uint64_t startup, uint64_t region, uint64_t vmem_stuck,
                      struct mem_split *ret)
{
        ret->vmem = target > startup ? MIN(target - startup, region) : 0;
        ret->balloon = (target < startup ? startup - target : 0) + vmem_stuck;
}
