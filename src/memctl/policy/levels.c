/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The levels a VM's grant is planned between, and the cut by weight (levels.h). */
#include "memctl/policy/levels.h"

#include "tidal/macro.h"

/* need and want for a demand: rounded up, so a guest is never planned a part-block short. */
static void levels_for(const struct policy_vm *vm, uint64_t demand, uint64_t floor, uint64_t *need,
                       uint64_t *want)
{
        *need = MAX(policy_clamp(vm, policy_block_up(demand)), floor);
        *want = MAX(policy_clamp(vm, policy_block_up(mem_with_buffer(demand, vm->buffer))), *need);
}

void policy_levels_of(const struct policy_vm *vm, struct policy_levels *ret)
{
        uint64_t floor = vm->minimum, need, want, need_d, want_d, grant;

        /* Stale or missing statistics say nothing about what the guest can give up now. */
        if (policy_pinned(vm))
                floor = policy_clamp(vm, policy_block_up(vm->grant));
        if (!vm->have_demand) {
                /* Nothing to go on: the VM keeps what it has. */
                need = want = floor;
        } else {
                levels_for(vm, vm->demand, floor, &need, &want);
        }
        /*
         * Memory being unplugged has its free pages isolated, and they look used: levels above
         * the grant go only as far as the demand less that memory asks. Levels at or below the
         * grant stay, so the discount never shrinks a VM.
         */
        if (vm->have_demand && vm->unplugging) {
                levels_for(vm, vm->demand - MIN(vm->demand, vm->unplugging), floor, &need_d,
                           &want_d);
                grant = policy_clamp(vm, policy_block_up(vm->grant));
                need = MIN(need, MAX(grant, need_d));
                want = MAX(MIN(want, MAX(grant, want_d)), need);
        }
        *ret = (struct policy_levels){.floor = floor, .need = need, .want = want};
}

void policy_cut_lowest_first(const uint64_t *by_weight, uint64_t amount, struct policy_cut *ret)
{
        for (unsigned w = 0; w < POLICY_WEIGHTS; w++) {
                if (by_weight[w] >= amount) {
                        *ret = (struct policy_cut){w, amount, by_weight[w], false};
                        return;
                }
                amount -= by_weight[w];
        }
        *ret = (struct policy_cut){MEM_WEIGHT_MAX, 0, 0, true};
}

void policy_cut_highest_first(const uint64_t *by_weight, uint64_t amount, struct policy_cut *ret)
{
        for (unsigned w = POLICY_WEIGHTS; w-- > 0;) {
                if (by_weight[w] >= amount) {
                        *ret = (struct policy_cut){w, amount, by_weight[w], false};
                        return;
                }
                amount -= by_weight[w];
        }
        *ret = (struct policy_cut){0, 0, 0, true};
}

/* x * y / d, rounded up or down; at most y when x <= d. */
static uint64_t scale(uint64_t x, uint64_t y, uint64_t d, bool round_up)
{
        unsigned __int128 wide;
        uint64_t product;

        /* 64-bit division when it fits: the 128-bit one is a slow library call, needed only
         * from 4 GiB * 4 GiB on. */
        if (!__builtin_mul_overflow(x, y, &product) && product <= UINT64_MAX - d)
                return round_up ? (product + d - 1) / d : product / d;
        wide = (unsigned __int128)x * y;
        return (uint64_t)(round_up ? (wide + d - 1) / d : wide / d);
}

uint64_t policy_share(const struct policy_cut *cut, bool lowest_first, unsigned w, uint64_t can,
                      bool round_up)
{
        uint64_t share;

        if (cut->whole)
                return can;
        if (w != cut->weight)
                return (w < cut->weight) == lowest_first ? can : 0;
        if (cut->total == 0)
                return 0;
        share = scale(cut->amount, can, cut->total, round_up);
        share = round_up ? policy_block_up(share) : ALIGN_DOWN(share, MEM_BLOCK_SIZE);
        return MIN(share, can);
}
