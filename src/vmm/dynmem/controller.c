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

uint64_t controller_next_target(const struct controller_input *in)
{
        const struct mem_settings *s = in->settings;
        uint64_t cur = clamp_settings(ALIGN_DOWN(in->target, MEM_BLOCK_SIZE), s);
        /* Clamped first: the buffered demand saturates, and aligning that up would wrap. */
        uint64_t want =
                ALIGN_UP(clamp_settings(mem_with_buffer(in->demand, s->buffer), s), MEM_BLOCK_SIZE);
        uint64_t step;

        /*
         * Growth has no dead band: anything below want leaves the guest Low, and a load
         * wandering up and down settles at its top, since shrinking has one.
         */
        if (want > cur)
                return cur + MIN(want - cur, CONTROLLER_GROW_MAX);
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
        uint64_t want =
                ALIGN_UP(clamp_settings(mem_with_buffer(in->demand, s->buffer), s), MEM_BLOCK_SIZE);

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
