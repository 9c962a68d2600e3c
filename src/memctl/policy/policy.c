/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One balancing round (policy.h, docs/memctl-policy.md): plan a target per VM by weight, then
 * pace the move from the current grant towards it. No allocation: the per-VM figures are
 * recomputed in each pass (they are a few arithmetic operations) and weights are grouped in a
 * table of MEM_WEIGHT_MAX + 1 totals instead of sorting the VMs, so a round is O(n + 10001)
 * and cannot fail.
 */
#include <string.h>

#include "memctl/policy/levels.h"
#include "memctl/policy/policy.h"
#include "tidal/macro.h"

/* How deep the round has to cut into the levels to fit the budget. */
enum plan_tier {
        TIER_NONE,    /* everyone gets want */
        TIER_BUFFERS, /* cut from want towards need */
        TIER_NEEDS,   /* everyone loses the buffer; cut from need towards floor */
        TIER_FLOORS,  /* even the floors do not fit: everyone at floor, nothing grows */
};

struct plan {
        uint64_t budget;
        enum plan_tier tier;
        struct policy_cut cut; /* lowest weight first, in the tier */
};

enum move_kind {
        MOVE_HOLD,
        MOVE_SHRINK,          /* outside the dead band */
        MOVE_SHRINK_DEADBAND, /* inside it: only made if growth elsewhere needs the memory */
        MOVE_GROW,
};

/* One VM's situation this round. */
struct move {
        unsigned weight;
        uint64_t grant;  /* on entry, within [minimum, maximum] */
        uint64_t target; /* what the plan gives it */
        enum move_kind kind;
        uint64_t shrunk; /* the grant after a (paced) shrink */
        uint64_t held;   /* max(grant, assigned): reserved on entry */
        uint64_t cost;   /* growth: how much more it reserves once at target */
        uint64_t frees;  /* dead-band shrink: how much less it reserves once shrunk */
};

static uint64_t target_of(const struct policy_vm *vm, const struct policy_levels *l,
                          const struct plan *plan)
{
        const struct policy_levels lv = *l;
        unsigned w = policy_weight(vm);

        switch (plan->tier) {
        case TIER_NONE:
                return lv.want;
        case TIER_BUFFERS:
                return lv.want - policy_share(&plan->cut, true, w, lv.want - lv.need, true);
        case TIER_NEEDS:
                return lv.need - policy_share(&plan->cut, true, w, lv.need - lv.floor, true);
        case TIER_FLOORS:
                return lv.floor;
        }
        return lv.floor;
}

static uint64_t deadband_of(uint64_t grant)
{
        return MAX(POLICY_DEADBAND_MIN, grant / 32);
}

static void move_of(const struct policy_vm *vm, const struct plan *plan, struct move *m)
{
        uint64_t grant = policy_clamped_grant(vm), target, band = deadband_of(grant), step_floor;
        struct policy_levels lv;

        policy_levels_of(vm, &lv);
        target = target_of(vm, &lv, plan);

        *m = (struct move){
                .weight = policy_weight(vm),
                .grant = grant,
                .target = target,
                .kind = MOVE_HOLD,
                .shrunk = grant,
                .held = MAX(grant, vm->assigned),
        };
        if (target < grant) {
                /* At most POLICY_SHRINK_MAX per round: a guest cannot give back gigabytes at
                 * once, and a smaller cut lets the next round correct a bad report. */
                step_floor = grant > POLICY_SHRINK_MAX ? grant - POLICY_SHRINK_MAX : 0;
                m->shrunk = MAX(target, policy_block_up(step_floor));
                m->kind = grant - target >= band ? MOVE_SHRINK : MOVE_SHRINK_DEADBAND;
                m->frees = m->held - MAX(m->shrunk, vm->assigned);
                return;
        }
        if (target == grant)
                return;
        /*
         * Growth has no dead band, as in the standalone controller (src/vmm/dynmem): anything
         * below its target leaves a guest Low or worse for good, and a load wandering up and
         * down settles at its top because shrinking has one.
         */
        m->kind = MOVE_GROW;
        m->cost = MAX(target, vm->assigned) - m->held;
}

static void plan_round(const struct policy_vm *vms, size_t n, uint64_t budget, uint64_t *by_weight,
                       struct plan *plan)
{
        uint64_t wants = 0, needs = 0, floors = 0, amount;
        struct policy_levels lv;
        unsigned w;

        for (size_t i = 0; i < n; i++) {
                policy_levels_of(&vms[i], &lv);
                wants = policy_add_sat(wants, lv.want);
                needs = policy_add_sat(needs, lv.need);
                floors = policy_add_sat(floors, lv.floor);
        }
        *plan = (struct plan){.budget = budget};
        if (wants <= budget) {
                plan->tier = TIER_NONE;
                return;
        }
        if (floors > budget) {
                plan->tier = TIER_FLOORS;
                return;
        }
        plan->tier = needs <= budget ? TIER_BUFFERS : TIER_NEEDS;
        amount = (plan->tier == TIER_BUFFERS ? wants : needs) - budget;
        memset(by_weight, 0, POLICY_WEIGHTS * sizeof(*by_weight));
        for (size_t i = 0; i < n; i++) {
                policy_levels_of(&vms[i], &lv);
                w = policy_weight(&vms[i]);
                by_weight[w] = policy_add_sat(by_weight[w], plan->tier == TIER_BUFFERS
                                                                    ? lv.want - lv.need
                                                                    : lv.need - lv.floor);
        }
        policy_cut_lowest_first(by_weight, amount, &plan->cut);
}

/* What the moves decided so far leave free, and whom the dead band has to give way for. */
struct pacing {
        uint64_t reserved;      /* after the shrinks outside the dead band */
        uint64_t growth;        /* what all growers would reserve more */
        bool release;           /* some dead-band shrinks are made */
        struct policy_cut cut;  /* which ones: lowest weight first */
        uint64_t free;          /* for growth, after all shrinks */
        struct policy_cut grow; /* growth, highest weight first */
};

static uint64_t sub_floor0(uint64_t a, uint64_t b)
{
        return a > b ? a - b : 0;
}

static bool released(const struct pacing *p, const struct move *m)
{
        return p->release && (p->cut.whole || m->weight <= p->cut.weight);
}

/*
 * A VM that stays a dead band above its target holds memory the plan gave to another; if a
 * grower needs it, the dead band gives way (lowest weights first), or that grower could be
 * stuck short of its target for good.
 */
static void pace_shrinks(const struct policy_vm *vms, size_t n, const struct plan *plan,
                         uint64_t *by_weight, struct pacing *p)
{
        struct move m;
        uint64_t free;

        memset(by_weight, 0, POLICY_WEIGHTS * sizeof(*by_weight));
        for (size_t i = 0; i < n; i++) {
                move_of(&vms[i], plan, &m);
                if (m.kind == MOVE_SHRINK)
                        p->reserved = policy_add_sat(p->reserved, MAX(m.shrunk, vms[i].assigned));
                else
                        p->reserved = policy_add_sat(p->reserved, m.held);
                if (m.kind == MOVE_SHRINK_DEADBAND)
                        by_weight[m.weight] = policy_add_sat(by_weight[m.weight], m.frees);
                else if (m.kind == MOVE_GROW)
                        p->growth = policy_add_sat(p->growth, m.cost);
        }
        free = sub_floor0(plan->budget, p->reserved);
        if (p->growth > free) {
                p->release = true;
                policy_cut_lowest_first(by_weight, p->growth - free, &p->cut);
        }
}

static void pace_growth(const struct policy_vm *vms, size_t n, const struct plan *plan,
                        uint64_t *by_weight, struct pacing *p)
{
        uint64_t reserved = p->reserved;
        struct move m;

        memset(by_weight, 0, POLICY_WEIGHTS * sizeof(*by_weight));
        for (size_t i = 0; i < n; i++) {
                move_of(&vms[i], plan, &m);
                /* A saturated sum (absurd inputs) stays saturated: nothing grows. */
                if (m.kind == MOVE_SHRINK_DEADBAND && released(p, &m) && reserved != UINT64_MAX)
                        reserved -= m.frees;
                else if (m.kind == MOVE_GROW)
                        by_weight[m.weight] = policy_add_sat(by_weight[m.weight], m.cost);
        }
        p->free = sub_floor0(plan->budget, reserved);
        policy_cut_highest_first(by_weight, p->free, &p->grow);
}

static uint64_t new_grant(const struct pacing *p, const struct move *m)
{
        uint64_t given, top;

        switch (m->kind) {
        case MOVE_HOLD:
                return m->grant;
        case MOVE_SHRINK:
                return m->shrunk;
        case MOVE_SHRINK_DEADBAND:
                return released(p, m) ? m->shrunk : m->grant;
        case MOVE_GROW:
                given = policy_share(&p->grow, false, m->weight, m->cost, false);
                if (given == m->cost)
                        return m->target;
                /* Part of the way: as far as the free memory given reaches, in whole blocks. */
                top = ALIGN_DOWN(m->held + given, MEM_BLOCK_SIZE);
                return MIN(MAX(m->grant, top), m->target);
        }
        return m->grant;
}

void policy_balance(struct policy_vm *vms, size_t n, uint64_t budget, struct policy_result *ret)
{
        /* 80 KiB of stack, reused by each pass: no allocation that could fail. */
        uint64_t by_weight[POLICY_WEIGHTS];
        struct pacing pacing = {};
        struct policy_result result = {};
        struct plan plan;
        struct move m;
        uint64_t grant;

        plan_round(vms, n, budget, by_weight, &plan);
        pace_shrinks(vms, n, &plan, by_weight, &pacing);
        pace_growth(vms, n, &plan, by_weight, &pacing);
        for (size_t i = 0; i < n; i++) {
                move_of(&vms[i], &plan, &m);
                grant = new_grant(&pacing, &m);
                if (grant != vms[i].grant)
                        result.changed++;
                vms[i].grant = grant;
                result.granted = policy_add_sat(result.granted, grant);
                result.reserved = policy_add_sat(result.reserved, MAX(grant, vms[i].assigned));
        }
        result.short_of_memory = plan.tier != TIER_NONE;
        if (ret)
                *ret = result;
}

uint64_t policy_reserved(const struct policy_vm *vms, size_t n)
{
        uint64_t sum = 0;

        for (size_t i = 0; i < n; i++)
                sum = policy_add_sat(sum, MAX(vms[i].grant, vms[i].assigned));
        return sum;
}
