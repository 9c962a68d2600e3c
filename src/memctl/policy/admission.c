/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Admission (policy.h, docs/memctl-policy.md): find a new VM's startup memory in free budget,
 * then in other VMs' buffers, then in lower-weight VMs' memory down to their floor.
 */
#include <string.h>

#include "memctl/policy/levels.h"
#include "memctl/policy/policy.h"
#include "tidal/macro.h"

/* What a running VM can give up for a newcomer: its buffer, then (if lighter) its need. */
struct giveable {
        uint64_t grant;  /* within [minimum, maximum] */
        uint64_t buffer; /* grant above need */
        uint64_t need;   /* need (or grant, if lower) above floor; 0 unless lighter */
};

static void giveable_of(const struct policy_vm *vm, unsigned weight, struct giveable *ret)
{
        struct policy_levels lv;
        uint64_t grant = policy_clamped_grant(vm), kept;

        /* A pinned VM's floor is its grant: it gives nothing. */
        policy_levels_of(vm, &lv);
        kept = MIN(grant, lv.need);
        *ret = (struct giveable){
                .grant = grant,
                .buffer = grant - kept,
                .need = policy_weight(vm) < weight ? kept - MIN(kept, lv.floor) : 0,
        };
}

/* Fills by_weight with the buffers (or needs) on offer; returns their sum. */
static uint64_t offer(const struct policy_vm *vms, size_t n, unsigned weight, bool buffers,
                      uint64_t *by_weight)
{
        struct giveable g;
        uint64_t sum = 0, can;
        unsigned w;

        memset(by_weight, 0, POLICY_WEIGHTS * sizeof(*by_weight));
        for (size_t i = 0; i < n; i++) {
                giveable_of(&vms[i], weight, &g);
                can = buffers ? g.buffer : g.need;
                w = policy_weight(&vms[i]);
                by_weight[w] = policy_add_sat(by_weight[w], can);
                sum = policy_add_sat(sum, can);
        }
        return sum;
}

/* Lowers grants by `amount` in total from the buffers (or needs), lowest weight first. */
static void take(struct policy_vm *vms, size_t n, unsigned weight, bool buffers, uint64_t amount,
                 uint64_t *by_weight)
{
        struct policy_cut cut;
        struct giveable g;
        uint64_t given;

        if (amount == 0)
                return;
        offer(vms, n, weight, buffers, by_weight);
        policy_cut_lowest_first(by_weight, amount, &cut);
        for (size_t i = 0; i < n; i++) {
                giveable_of(&vms[i], weight, &g);
                given = policy_share(&cut, true, policy_weight(&vms[i]),
                                     buffers ? g.buffer : g.need, true);
                if (given > 0)
                        vms[i].grant = g.grant - given;
        }
}

/*
 * Finds `startup` if it can; with minimum < startup it settles for less, down to `minimum`
 * (a block multiple): then it takes everything on offer.
 */
static void admit_at_least(struct policy_vm *vms, size_t n, uint64_t budget, uint64_t startup,
                           uint64_t minimum, unsigned weight, struct policy_admission *ret)
{
        uint64_t by_weight[POLICY_WEIGHTS];
        uint64_t reserved = policy_reserved(vms, n), free, buffers, needs, found, short_by;

        weight = MIN(weight, MEM_WEIGHT_MAX);
        free = budget > reserved ? budget - reserved : 0;
        buffers = offer(vms, n, weight, true, by_weight);
        needs = offer(vms, n, weight, false, by_weight);
        found = policy_add_sat(free, policy_add_sat(buffers, needs));
        *ret = (struct policy_admission){.needed = startup, .found = found};
        if (found >= startup)
                ret->grant = startup;
        else if (ALIGN_DOWN(found, MEM_BLOCK_SIZE) >= minimum)
                ret->grant = ALIGN_DOWN(found, MEM_BLOCK_SIZE);
        else
                return; /* refused: nothing touched */
        ret->admit = true;
        ret->partial = ret->grant < startup;
        if (free >= ret->grant)
                return;
        short_by = ret->grant - free;
        take(vms, n, weight, true, MIN(short_by, buffers), by_weight);
        if (short_by > buffers)
                take(vms, n, weight, false, short_by - buffers, by_weight);
}

void policy_admit(struct policy_vm *vms, size_t n, uint64_t budget, uint64_t startup,
                  unsigned weight, struct policy_admission *ret)
{
        /* A cold start gets its startup or nothing. */
        admit_at_least(vms, n, budget, startup, startup, weight, ret);
}

void policy_admit_partial(struct policy_vm *vms, size_t n, uint64_t budget, uint64_t startup,
                          uint64_t minimum, unsigned weight, struct policy_admission *ret)
{
        /* At least one block, even for absurd settings: a grant of 0 is no admission. */
        admit_at_least(vms, n, budget, startup, MAX(MIN(minimum, startup), MEM_BLOCK_SIZE), weight,
                       ret);
}
