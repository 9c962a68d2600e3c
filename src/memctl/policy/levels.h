/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internal to the policy: the three levels every VM's grant is planned between, and the
 * cut-by-weight ("water-filling") both the balancing round and admission use.
 * docs/memctl-policy.md explains why they are what they are.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memctl/policy/policy.h"

/*
 * floor <= need <= want, each a multiple of MEM_BLOCK_SIZE (when the settings are) within
 * [minimum, maximum]:
 *   want  = demand * (1 + buffer), what the VM gets when memory is ample;
 *   need  = demand, below which it is in Warning;
 *   floor = what no cut goes below: minimum, or the current grant for a VM that is pinned
 *           (stale statistics, or none yet).
 */
struct policy_levels {
        uint64_t floor, need, want;
};

/* Weights above MEM_WEIGHT_MAX (never valid) count as MEM_WEIGHT_MAX. */
#define POLICY_WEIGHTS (MEM_WEIGHT_MAX + 1)

/* The helpers below run several times per VM per round: inline. */
static inline unsigned policy_weight(const struct policy_vm *vm)
{
        return vm->weight < MEM_WEIGHT_MAX ? vm->weight : MEM_WEIGHT_MAX;
}

/* maximum, or minimum if maximum is (invalidly) below it. */
static inline uint64_t policy_maximum(const struct policy_vm *vm)
{
        return vm->maximum > vm->minimum ? vm->maximum : vm->minimum;
}

/* x moved into [minimum, maximum]. */
static inline uint64_t policy_clamp(const struct policy_vm *vm, uint64_t x)
{
        uint64_t maximum = policy_maximum(vm);

        x = x > vm->minimum ? x : vm->minimum;
        return x < maximum ? x : maximum;
}

/* The VM's grant moved into [minimum, maximum]. */
static inline uint64_t policy_clamped_grant(const struct policy_vm *vm)
{
        return policy_clamp(vm, vm->grant);
}

/* A VM whose grant no cut may lower: stale statistics, or none yet. */
static inline bool policy_pinned(const struct policy_vm *vm)
{
        return !vm->fresh || !vm->have_demand;
}

static inline uint64_t policy_add_sat(uint64_t a, uint64_t b)
{
        uint64_t sum;

        return __builtin_add_overflow(a, b, &sum) ? UINT64_MAX : sum;
}

/* x rounded up to MEM_BLOCK_SIZE, saturating. */
static inline uint64_t policy_block_up(uint64_t x)
{
        const uint64_t mask = MEM_BLOCK_SIZE - 1;

        return x > UINT64_MAX - mask ? UINT64_MAX & ~mask : (x + mask) & ~mask;
}

void policy_levels_of(const struct policy_vm *vm, struct policy_levels *ret);

/*
 * Where a cut of `amount`, spread over weight groups lowest weight first, stops: every group
 * below `weight` gives all it can, the group at `weight` gives `amount` in proportion to what
 * each member can give (policy_share), groups above give nothing. Built from the per-weight
 * totals of what each VM can give (`by_weight`, POLICY_WEIGHTS entries). `whole` is true when
 * the groups together cannot cover `amount`: everyone gives all.
 */
struct policy_cut {
        unsigned weight;
        uint64_t amount; /* what the group at `weight` gives */
        uint64_t total;  /* what that group could give */
        bool whole;
};

void policy_cut_lowest_first(const uint64_t *by_weight, uint64_t amount, struct policy_cut *ret);
/* The same from the highest weight down (sharing out growth). */
void policy_cut_highest_first(const uint64_t *by_weight, uint64_t amount, struct policy_cut *ret);

/*
 * What one VM of weight w that can give `can` gives under `cut`, taking lower weights first
 * (lowest_first) or higher weights first. Inside the group at cut->weight: `can` *
 * amount/total, rounded up to a block when cutting (round_up; the cuts together then cover
 * the amount) or down when sharing out (together they stay within it), never above `can`.
 */
uint64_t policy_share(const struct policy_cut *cut, bool lowest_first, unsigned w, uint64_t can,
                      bool round_up);
