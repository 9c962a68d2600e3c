/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tidald's policy (src/memctl/policy): the worked example of docs/memctl-policy.md with its
 * exact numbers, the pacing rules one by one, and properties over thousands of random hosts.
 * A failing property names the seed and case: TIDAL_POLICY_SEED=<seed> reruns the same hosts.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "memctl/policy/policy.h"
#include "tidal/macro.h"

#define N_MAX        48
#define CASES        3000
#define ROUNDS_MAX   200 /* convergence must come well before this */
#define STABLE_AFTER 20

static uint64_t seed = 0x7469dal;

/* splitmix64: small, good enough, and the same on every machine. */
static uint64_t rnd(uint64_t *s)
{
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* In [lo, hi]. */
static uint64_t rnd_in(uint64_t *s, uint64_t lo, uint64_t hi)
{
        return lo + rnd(s) % (hi - lo + 1);
}

static uint64_t rnd_blocks(uint64_t *s, uint64_t lo, uint64_t hi)
{
        return rnd_in(s, lo / MEM_BLOCK_SIZE, hi / MEM_BLOCK_SIZE) * MEM_BLOCK_SIZE;
}

#define CHECK(cond, ...)                                                                           \
        do {                                                                                       \
                if (!(cond))                                                                       \
                        fail_msg("seed %#" PRIx64 " case %d: " __VA_ARGS__);                       \
        } while (0)

static struct policy_vm vm(unsigned weight, uint64_t minimum, uint64_t maximum, unsigned buffer,
                           uint64_t demand, uint64_t grant)
{
        return (struct policy_vm){
                .startup = grant,
                .minimum = minimum,
                .maximum = maximum,
                .buffer = buffer,
                .weight = weight,
                .have_demand = true,
                .demand = demand,
                .fresh = true,
                .assigned = grant,
                .grant = grant,
        };
}

static void follow(struct policy_vm *vms, size_t n)
{
        for (size_t i = 0; i < n; i++)
                vms[i].assigned = vms[i].grant;
}

/*
 * An oracle written apart from the policy: the levels each grant is planned between
 * (docs/memctl-policy.md, "Levels").
 */
struct levels {
        uint64_t floor, need, want;
};

static uint64_t clamp_up(const struct policy_vm *v, uint64_t x)
{
        x = (x + MEM_BLOCK_SIZE - 1) / MEM_BLOCK_SIZE * MEM_BLOCK_SIZE;
        return MIN(MAX(x, v->minimum), v->maximum);
}

static struct levels levels(const struct policy_vm *v)
{
        struct levels l = {.floor = v->minimum};

        if (!v->fresh || !v->have_demand)
                l.floor = clamp_up(v, v->grant);
        if (!v->have_demand) {
                l.need = l.want = l.floor;
                return l;
        }
        l.need = MAX(clamp_up(v, v->demand), l.floor);
        l.want = MAX(clamp_up(v, v->demand + v->demand / 100 * v->buffer +
                                         v->demand % 100 * v->buffer / 100),
                     l.need);
        return l;
}

static uint64_t deadband(uint64_t grant)
{
        return MAX(POLICY_DEADBAND_MIN, grant / 32);
}

/* ---- The worked example of docs/memctl-policy.md ---- */

enum { A, B, C };

static void example_host(struct policy_vm *vms)
{
        vms[A] = vm(1000, 512 * MiB, 4096 * MiB, 20, 1000 * MiB, 1024 * MiB);
        vms[B] = vm(5000, 512 * MiB, 4096 * MiB, 25, 1600 * MiB, 2048 * MiB);
        vms[C] = vm(9000, 1024 * MiB, 8192 * MiB, 50, 2400 * MiB, 2048 * MiB);
}

static void expect_grants(const struct policy_vm *vms, uint64_t a, uint64_t b, uint64_t c)
{
        assert_int_equal(vms[A].grant, a * MiB);
        assert_int_equal(vms[B].grant, b * MiB);
        assert_int_equal(vms[C].grant, c * MiB);
}

static void worked_example(void **state)
{
        const uint64_t budget = 6000 * MiB;
        struct policy_vm vms[3];
        struct policy_result r;

        example_host(vms);
        /* Round 1: wants 1200 + 2000 + 3600 = 6800 > 6000; needs 5000 fit: cut 800 of
         * buffers, A's 200, B's 400, then 200 of C's 1200. A and B shrink at once; C grows only
         * into what is free while A and B still hold their old memory. */
        policy_balance(vms, 3, budget, &r);
        expect_grants(vms, 1000, 1600, 2928);
        assert_true(r.short_of_memory);
        assert_int_equal(r.changed, 3);
        assert_int_equal(r.granted, 5528 * MiB);
        assert_int_equal(r.reserved, 6000 * MiB);

        /* Round 2: A and B have shrunk; C takes the rest of its target. */
        follow(vms, 3);
        policy_balance(vms, 3, budget, &r);
        expect_grants(vms, 1000, 1600, 3400);
        assert_int_equal(r.changed, 1);
        assert_int_equal(r.reserved, 6000 * MiB);

        /* Round 3: nothing moves. */
        follow(vms, 3);
        policy_balance(vms, 3, budget, &r);
        expect_grants(vms, 1000, 1600, 3400);
        assert_int_equal(r.changed, 0);

        /* C's demand jumps to 3600: needs 1000 + 1600 + 3600 = 6200 > 6000. Every buffer goes
         * and the 200 short comes from the lightest, A, down towards its minimum. C is in
         * Warning but must wait a round for A to give the memory back. */
        vms[C].demand = 3600 * MiB;
        policy_balance(vms, 3, budget, &r);
        expect_grants(vms, 800, 1600, 3400);
        assert_int_equal(r.changed, 1);
        assert_int_equal(r.reserved, 6000 * MiB);

        follow(vms, 3);
        policy_balance(vms, 3, budget, &r);
        expect_grants(vms, 800, 1600, 3600);
        assert_int_equal(r.granted, 6000 * MiB);

        follow(vms, 3);
        policy_balance(vms, 3, budget, &r);
        assert_int_equal(r.changed, 0);
}

static void worked_example_admission(void **state)
{
        const uint64_t budget = 6000 * MiB;
        struct policy_vm vms[3], before[3];
        struct policy_admission adm;

        /* After round 2: A 1000, B 1600, C 3400 (C's demand 2400: a buffer of 1000). A fourth
         * VM D of weight 5000 asks for 1024: no free memory; C's buffer gives 1000 although C
         * is the heaviest (buffers go first), and A, the only lighter VM, the other 24. B, of
         * D's weight, is not touched. */
        example_host(vms);
        vms[A].grant = vms[A].assigned = 1000 * MiB;
        vms[B].grant = vms[B].assigned = 1600 * MiB;
        vms[C].grant = vms[C].assigned = 3400 * MiB;
        policy_admit(vms, 3, budget, 1024 * MiB, 5000, &adm);
        assert_true(adm.admit);
        assert_int_equal(adm.needed, 1024 * MiB);
        assert_int_equal(adm.found, 1488 * MiB); /* 0 free + 1000 of C's buffer + 488 of A's */
        expect_grants(vms, 976, 1600, 2400);

        /* After the spike: A 800, B 1600, C 3600, no buffers left. For D (weight 5000, 1024)
         * only A can give, 800 - 512 = 288: refused, nothing touched. */
        example_host(vms);
        vms[C].demand = 3600 * MiB;
        vms[A].grant = vms[A].assigned = 800 * MiB;
        vms[B].grant = vms[B].assigned = 1600 * MiB;
        vms[C].grant = vms[C].assigned = 3600 * MiB;
        memcpy(before, vms, sizeof(vms));
        policy_admit(vms, 3, budget, 1024 * MiB, 5000, &adm);
        assert_false(adm.admit);
        assert_int_equal(adm.needed, 1024 * MiB);
        assert_int_equal(adm.found, 288 * MiB);
        assert_memory_equal(vms, before, sizeof(vms));

        /* A heavier D (9500, 512) may take from everyone lighter: A to its minimum (288),
         * then B the other 224; C keeps its need. */
        policy_admit(vms, 3, budget, 512 * MiB, 9500, &adm);
        assert_true(adm.admit);
        assert_int_equal(adm.found, (288 + 1088 + 2576) * MiB);
        expect_grants(vms, 512, 1376, 3600);
}

/* ---- Partial admission of a restarting VM (smart paging) ---- */

/* The worked example after the spike, with C's demand back at 3000 (a buffer of 600) and a
 * budget of 6101: 101 free, not a whole number of blocks. */
static void squeezed_host(struct policy_vm *vms)
{
        example_host(vms);
        vms[C].demand = 3000 * MiB;
        vms[A].grant = vms[A].assigned = 800 * MiB;
        vms[B].grant = vms[B].assigned = 1600 * MiB;
        vms[C].grant = vms[C].assigned = 3600 * MiB;
}

static void partial_admission(void **state)
{
        const uint64_t budget = 6101 * MiB;
        struct policy_vm vms[3], before[3];
        struct policy_admission adm;

        /* D (weight 5000) restarts with startup 2048, minimum 512: found = 101 free + 600 of
         * C's buffer + A's 800 - 512 = 989, rounded down to a block: a grant of 988. Everything
         * the rules allow is taken: A to its minimum, C to its need; B, of D's weight, keeps
         * its need. */
        squeezed_host(vms);
        policy_admit_partial(vms, 3, budget, 2048 * MiB, 512 * MiB, 5000, &adm);
        assert_true(adm.admit);
        assert_true(adm.partial);
        assert_int_equal(adm.needed, 2048 * MiB);
        assert_int_equal(adm.found, 989 * MiB);
        assert_int_equal(adm.grant, 988 * MiB);
        expect_grants(vms, 512, 1600, 3000);
        /* Once they have shrunk, the grant fits. */
        follow(vms, 3);
        assert_true(policy_reserved(vms, 3) + adm.grant <= budget);

        /* A cold start in the same situation is refused, nothing touched. */
        squeezed_host(vms);
        memcpy(before, vms, sizeof(vms));
        policy_admit(vms, 3, budget, 2048 * MiB, 5000, &adm);
        assert_false(adm.admit);
        assert_false(adm.partial);
        assert_int_equal(adm.found, 989 * MiB);
        assert_memory_equal(vms, before, sizeof(vms));

        /* A restart whose minimum (1024) cannot be found is refused too, nothing touched. */
        policy_admit_partial(vms, 3, budget, 2048 * MiB, 1024 * MiB, 5000, &adm);
        assert_false(adm.admit);
        assert_int_equal(adm.found, 989 * MiB);
        assert_memory_equal(vms, before, sizeof(vms));

        /* A minimum of exactly the rounded-down found is enough. */
        policy_admit_partial(vms, 3, budget, 2048 * MiB, 988 * MiB, 5000, &adm);
        assert_true(adm.admit && adm.partial);
        assert_int_equal(adm.grant, 988 * MiB);

        /* When the startup can be found, a restart is a normal admission: only what is missing
         * is taken (101 free + 411 of C's buffer for 512), the grant is the startup. */
        squeezed_host(vms);
        memcpy(before, vms, sizeof(vms));
        policy_admit_partial(vms, 3, budget, 512 * MiB, 256 * MiB, 5000, &adm);
        assert_true(adm.admit);
        assert_false(adm.partial);
        assert_int_equal(adm.grant, 512 * MiB);
        expect_grants(vms, 800, 1600, 3188);
        memcpy(vms, before, sizeof(vms));
        policy_admit(vms, 3, budget, 512 * MiB, 5000, &adm);
        assert_true(adm.admit);
        assert_int_equal(adm.grant, 512 * MiB);
        expect_grants(vms, 800, 1600, 3188);
}

/* ---- The rules one by one ---- */

static void ample_memory_gives_want(void **state)
{
        struct policy_vm vms[2] = {
                vm(100, 512 * MiB, 8 * GiB, 20, 1000 * MiB, 512 * MiB),
                vm(100, 512 * MiB, 1024 * MiB, 20, 1000 * MiB, 512 * MiB),
        };
        struct policy_result r;

        policy_balance(vms, 2, 64 * GiB, &r);
        assert_false(r.short_of_memory);
        assert_int_equal(vms[0].grant, 1200 * MiB);
        assert_int_equal(vms[1].grant, 1024 * MiB); /* want clamped to maximum */
}

static void equal_weights_share_in_proportion(void **state)
{
        /* Buffers of 400 and 200; 300 short: each loses half its buffer. */
        struct policy_vm vms[3] = {
                vm(7, 512 * MiB, 8 * GiB, 40, 1000 * MiB, 1400 * MiB),
                vm(7, 512 * MiB, 8 * GiB, 20, 1000 * MiB, 1200 * MiB),
                vm(8, 512 * MiB, 8 * GiB, 20, 1000 * MiB, 1200 * MiB),
        };

        policy_balance(vms, 3, 3500 * MiB, NULL);
        assert_int_equal(vms[0].grant, 1200 * MiB);
        assert_int_equal(vms[1].grant, 1100 * MiB);
        assert_int_equal(vms[2].grant, 1200 * MiB);

        /* Needs 1000 + 1000 + 1000 with 2400: the weight-7 pair gives 600, in proportion to
         * need - minimum: 488 and 288 of 776, rounded up to blocks (378, 224). */
        vms[0].minimum = 512 * MiB;
        vms[1].minimum = 712 * MiB;
        for (int round = 0; round < 3; round++) {
                policy_balance(vms, 3, 2400 * MiB, NULL);
                follow(vms, 3);
        }
        assert_int_equal(vms[0].grant, 1000 * MiB - 378 * MiB);
        assert_int_equal(vms[1].grant, 1000 * MiB - 224 * MiB);
        assert_int_equal(vms[2].grant, 1000 * MiB);
}

/*
 * A VM unplugging memory reports demand inflated by the isolated free pages of the block in
 * flight: no grant grows on what that explains, and none shrinks further because of it.
 */
static void memory_being_unplugged_grows_nothing(void **state)
{
        struct policy_vm v = vm(5000, 256 * MiB, 4 * GiB, 30, 212 * MiB, 256 * MiB);

        /* The bench's wobble: 212 MiB wants 276, 128 MiB of it possibly in flight. */
        v.assigned = 384 * MiB;
        v.unplugging = 128 * MiB;
        policy_balance(&v, 1, 64 * GiB, NULL);
        assert_int_equal(v.grant, 256 * MiB);
        /* More than the memory in flight can explain: grown, but only by the rest. */
        v.demand = 500 * MiB; /* 372 MiB for sure: wants 484 (483.6 rounded up) */
        policy_balance(&v, 1, 64 * GiB, NULL);
        assert_int_equal(v.grant, 484 * MiB);
        /* Nothing in flight: the whole demand counts. */
        v.grant = 256 * MiB;
        v.unplugging = 0;
        policy_balance(&v, 1, 64 * GiB, NULL);
        assert_int_equal(v.grant, 650 * MiB);
        /* The discount never shrinks: above its want, a VM goes to its want, not lower. */
        v = vm(5000, 256 * MiB, 4 * GiB, 30, 500 * MiB, 2 * GiB);
        v.unplugging = 1 * GiB;
        policy_balance(&v, 1, 64 * GiB, NULL);
        assert_int_equal(v.grant, 650 * MiB);
}

static void shrink_is_paced(void **state)
{
        struct policy_vm v = vm(5000, 512 * MiB, 16 * GiB, 20, 800 * MiB, 7 * GiB);

        /* Target 960 MiB: at most POLICY_SHRINK_MAX a round. */
        policy_balance(&v, 1, 64 * GiB, NULL);
        assert_int_equal(v.grant, 5 * GiB);
        policy_balance(&v, 1, 64 * GiB, NULL);
        assert_int_equal(v.grant, 3 * GiB);
        policy_balance(&v, 1, 64 * GiB, NULL);
        assert_int_equal(v.grant, 1 * GiB);
        /* 64 MiB left: more than the dead band, one last step. */
        policy_balance(&v, 1, 64 * GiB, NULL);
        assert_int_equal(v.grant, 960 * MiB);
}

static void dead_band(void **state)
{
        struct policy_vm v = vm(5000, 512 * MiB, 16 * GiB, 20, 1000 * MiB, 1190 * MiB);
        struct policy_result r;

        /* Want 1200: growth has no dead band (a guest below its want is Low for good). */
        policy_balance(&v, 1, 64 * GiB, &r);
        assert_int_equal(v.grant, 1200 * MiB);
        assert_int_equal(r.changed, 1);
        /* 12 MiB above want: inside the 16 MiB band, not worth a message. */
        v.grant = v.assigned = 1212 * MiB;
        policy_balance(&v, 1, 64 * GiB, &r);
        assert_int_equal(v.grant, 1212 * MiB);
        assert_int_equal(r.changed, 0);

        /* A band of 1/32 on large grants: want 66 GiB; from 67.5 GiB, 1.5 GiB is inside the
         * 2160 MiB band of a 67.5 GiB grant; from 69 GiB, 3 GiB is not (and the first step
         * is the largest allowed, 2 GiB). */
        v = vm(5000, 512 * MiB, 128 * GiB, 20, 55 * GiB, 67 * GiB + 512 * MiB);
        policy_balance(&v, 1, 256 * GiB, &r);
        assert_int_equal(v.grant, 67 * GiB + 512 * MiB);
        assert_int_equal(r.changed, 0);
        v.grant = v.assigned = 69 * GiB;
        policy_balance(&v, 1, 256 * GiB, &r);
        assert_int_equal(v.grant, 67 * GiB);
}

static void dead_band_gives_way_to_growth(void **state)
{
        /* Budget 7600. Light B: need 6000, want 7200, band 225 at 7200. Heavy A: need 400, want
         * 600, band 16. Wants 7800: B's buffer loses 200, target 7000, which is inside B's
         * band. But A, 200 below its target, needs exactly that memory: B's band gives way, or
         * A would stay 200 MiB short for good. */
        struct policy_vm vms[2] = {
                vm(9000, 256 * MiB, 8 * GiB, 50, 400 * MiB, 400 * MiB),
                vm(1000, 512 * MiB, 16 * GiB, 20, 6000 * MiB, 7200 * MiB),
        };

        policy_balance(vms, 2, 7600 * MiB, NULL);
        assert_int_equal(vms[1].grant, 7000 * MiB);
        assert_int_equal(vms[0].grant, 400 * MiB); /* B has not given it back yet */
        follow(vms, 2);
        policy_balance(vms, 2, 7600 * MiB, NULL);
        assert_int_equal(vms[0].grant, 600 * MiB);
        assert_int_equal(vms[1].grant, 7000 * MiB);

        /* With memory to spare, nobody needs B's 100 above its want: it stays in its band. */
        vms[0].grant = vms[0].assigned = 400 * MiB;
        vms[1].grant = vms[1].assigned = 7300 * MiB;
        policy_balance(vms, 2, 9000 * MiB, NULL);
        assert_int_equal(vms[0].grant, 600 * MiB);
        assert_int_equal(vms[1].grant, 7300 * MiB);
}

static void growth_goes_to_the_heaviest_first(void **state)
{
        struct policy_vm vms[3] = {
                vm(1000, 512 * MiB, 8 * GiB, 20, 1000 * MiB, 512 * MiB),
                vm(9000, 512 * MiB, 8 * GiB, 20, 1000 * MiB, 512 * MiB),
                vm(5000, 512 * MiB, 8 * GiB, 20, 1000 * MiB, 2048 * MiB),
        };

        /* Wants 3600 in 3600, but the third VM still holds 2048 until it shrinks to 1200:
         * 3600 - 512 - 512 - 2048 = 528 free. The heavy one grows first, all of it. */
        policy_balance(vms, 3, 3600 * MiB, NULL);
        assert_int_equal(vms[2].grant, 1200 * MiB);
        assert_int_equal(vms[1].grant, 1040 * MiB);
        assert_int_equal(vms[0].grant, 512 * MiB);
        follow(vms, 3);
        policy_balance(vms, 3, 3600 * MiB, NULL);
        assert_int_equal(vms[1].grant, 1200 * MiB);
        assert_int_equal(vms[0].grant, 1200 * MiB);
}

static void stale_and_silent_vms_keep_their_grant(void **state)
{
        struct policy_vm vms[3] = {
                vm(10000, 512 * MiB, 8 * GiB, 20, 4000 * MiB, 2048 * MiB),
                vm(0, 512 * MiB, 8 * GiB, 20, 600 * MiB, 3000 * MiB),
                vm(0, 512 * MiB, 8 * GiB, 20, 0, 1500 * MiB),
        };

        /* The heavy VM wants 4800 of a 6548 budget: the weight-0 VMs would be squeezed, but one
         * has stale statistics and the other none yet: both keep what they have. */
        vms[1].fresh = false;
        vms[2].have_demand = false;
        for (int round = 0; round < 5; round++) {
                policy_balance(vms, 3, 6548 * MiB, NULL);
                follow(vms, 3);
        }
        assert_int_equal(vms[1].grant, 3000 * MiB);
        assert_int_equal(vms[2].grant, 1500 * MiB);
        assert_int_equal(vms[0].grant, 2048 * MiB);

        /* Fresh again: the stale one's memory goes to the heavy one. */
        vms[1].fresh = true;
        for (int round = 0; round < 5; round++) {
                policy_balance(vms, 3, 6548 * MiB, NULL);
                follow(vms, 3);
        }
        /* Wants 4800 + 720 + 1500 (pinned) = 7020: 472 short. The weight-0 buffer (120)
         * goes first, then 352 of the heavy one's 800. */
        assert_int_equal(vms[0].grant, 4448 * MiB);
        assert_int_equal(vms[1].grant, 600 * MiB);
}

static void over_budget_on_entry_grows_nothing(void **state)
{
        /* After a daemon restart the VMs hold 5 GiB of a 4 GiB budget. */
        struct policy_vm vms[2] = {
                vm(5000, 512 * MiB, 8 * GiB, 20, 2000 * MiB, 1 * GiB),
                vm(5000, 512 * MiB, 8 * GiB, 20, 500 * MiB, 4 * GiB),
        };

        vms[1].assigned = 4 * GiB;
        policy_balance(vms, 2, 4 * GiB, NULL);
        assert_int_equal(vms[0].grant, 1 * GiB); /* wants 2400 but nothing is free yet */
        assert_true(vms[1].grant < 4 * GiB);
        follow(vms, 2);
        for (int round = 0; round < 5; round++) {
                policy_balance(vms, 2, 4 * GiB, NULL);
                follow(vms, 2);
        }
        assert_int_equal(vms[0].grant, 2400 * MiB);
        assert_int_equal(vms[1].grant, 600 * MiB);
}

static void empty_and_absurd_inputs(void **state)
{
        struct policy_vm v = vm(UINT32_MAX, 512 * MiB, 1 * GiB, UINT32_MAX, UINT64_MAX, 1 * GiB);
        struct policy_admission adm;
        struct policy_result r;

        policy_balance(NULL, 0, 1 * GiB, &r);
        assert_int_equal(r.granted, 0);
        policy_admit(NULL, 0, 1 * GiB, 512 * MiB, 5000, &adm);
        assert_true(adm.admit);
        policy_admit(NULL, 0, 1 * GiB, 2 * GiB, 5000, &adm);
        assert_false(adm.admit);
        assert_int_equal(adm.found, 1 * GiB);

        v.assigned = UINT64_MAX;
        policy_balance(&v, 1, UINT64_MAX, &r);
        assert_int_equal(v.grant, 1 * GiB);
        /* Minimums that do not fit: everyone at minimum, nothing grows. */
        v = vm(5000, 512 * MiB, 1 * GiB, 20, 900 * MiB, 700 * MiB);
        policy_balance(&v, 1, 256 * MiB, &r);
        assert_int_equal(v.grant, 512 * MiB);
}

/* ---- Properties over random hosts ---- */

struct host {
        struct policy_vm vms[N_MAX];
        size_t n;
        uint64_t budget;
};

static const unsigned weights[] = {0, 1000, 5000, 5000, 5000, 9000, 10000};

static void random_vm(uint64_t *s, struct policy_vm *v)
{
        uint64_t minimum = rnd_blocks(s, 32 * MiB, 2 * GiB);
        uint64_t maximum = rnd_blocks(s, minimum, minimum + rnd_in(s, 0, 3) * 8 * GiB);
        unsigned buffer = rnd_in(s, 0, 9) ? rnd_in(s, MEM_BUFFER_MIN, 100)
                                          : rnd_in(s, MEM_BUFFER_MIN, MEM_BUFFER_MAX);
        unsigned weight = rnd_in(s, 0, 2) ? weights[rnd(s) % ARRAY_SIZE(weights)]
                                          : rnd_in(s, 0, MEM_WEIGHT_MAX);

        *v = vm(weight, minimum, maximum, buffer, rnd_in(s, 0, maximum + maximum / 2),
                rnd_blocks(s, minimum, maximum));
        v->have_demand = rnd_in(s, 0, 19) != 0;
        v->fresh = rnd_in(s, 0, 9) != 0;
}

/* Budgets from below the sum of minimums to well above the sum of wants. */
static void random_host(uint64_t *s, struct host *h)
{
        uint64_t minimums = 0, wants = 0, reserved;

        h->n = rnd_in(s, 1, N_MAX - 1); /* room for a newcomer */
        for (size_t i = 0; i < h->n; i++) {
                random_vm(s, &h->vms[i]);
                minimums += h->vms[i].minimum;
                wants += levels(&h->vms[i]).want;
        }
        reserved = policy_reserved(h->vms, h->n);
        switch (rnd_in(s, 0, 3)) {
        case 0: /* ample */
                h->budget = MAX(wants, reserved) + rnd_in(s, 0, 4 * GiB);
                break;
        case 1: /* anything, within reach of what is held */
                h->budget = rnd_in(s, minimums / 2, wants + wants / 4);
                break;
        default: /* short, but what is held fits */
                h->budget = rnd_in(s, MIN(reserved, wants), MAX(reserved, wants));
                break;
        }
}

static void check_bounds(const struct host *h, const struct policy_vm *before, int c)
{
        for (size_t i = 0; i < h->n; i++) {
                const struct policy_vm *v = &h->vms[i], *b = &before[i];

                CHECK(v->grant >= v->minimum && v->grant <= v->maximum,
                      "vm %zu grant %" PRIu64 " outside [%" PRIu64 ", %" PRIu64 "]", seed, c, i,
                      v->grant, v->minimum, v->maximum);
                CHECK(v->grant == b->grant || v->grant % MEM_BLOCK_SIZE == 0,
                      "vm %zu new grant %" PRIu64 " not in blocks", seed, c, i, v->grant);
                CHECK(v->grant + POLICY_SHRINK_MAX >= b->grant, "vm %zu cut by more than the max",
                      seed, c, i);
                CHECK((b->fresh && b->have_demand) || v->grant >= b->grant,
                      "vm %zu pinned (stale or silent) but cut from %" PRIu64 " to %" PRIu64, seed,
                      c, i, b->grant, v->grant);
        }
}

/* Guests shrink part of the way, or not at all, before the next round. */
static void lag(uint64_t *s, struct host *h)
{
        for (size_t i = 0; i < h->n; i++) {
                struct policy_vm *v = &h->vms[i];

                if (v->assigned > v->grant)
                        v->assigned = rnd_blocks(s, v->grant, v->assigned);
                else
                        v->assigned = v->grant;
        }
}

static void property_bounds_and_budget(void **state)
{
        struct policy_vm before[N_MAX];
        struct policy_result r;
        struct host h;
        uint64_t s = seed;

        for (int c = 0; c < CASES; c++) {
                random_host(&s, &h);
                for (int round = 0; round < 10; round++) {
                        bool fit = policy_reserved(h.vms, h.n) <= h.budget;

                        memcpy(before, h.vms, sizeof(before));
                        policy_balance(h.vms, h.n, h.budget, &r);
                        check_bounds(&h, before, c);
                        CHECK(r.reserved == policy_reserved(h.vms, h.n), "result reserved", seed,
                              c);
                        CHECK(!fit || r.reserved <= h.budget,
                              "round %d: reserved %" PRIu64 " > budget %" PRIu64, seed, c, round,
                              r.reserved, h.budget);
                        lag(&s, &h);
                }
        }
}

/* Rounds with assigned following grant until nothing moves; then nothing may move again. */
static int converge(struct host *h, int c)
{
        struct policy_result r;
        int rounds = 0;

        do {
                CHECK(rounds < ROUNDS_MAX, "no fixed point after %d rounds", seed, c, rounds);
                policy_balance(h->vms, h->n, h->budget, &r);
                follow(h->vms, h->n);
                rounds++;
        } while (r.changed > 0);
        for (int i = 0; i < STABLE_AFTER; i++) {
                policy_balance(h->vms, h->n, h->budget, &r);
                CHECK(r.changed == 0, "moved again %d rounds after the fixed point", seed, c, i);
        }
        return rounds;
}

/*
 * Satisfaction. A VM's grant sits in a tier: 2 when it has its want, [1, 2) while it loses its
 * buffer (want -> need), [0, 1) while it loses memory it needs (need -> floor). "Higher weight
 * never worse off" means: for w_i > w_j, satisfaction_i >= satisfaction_j, except where j has
 * nothing left to give in the tier i is cut in (its want is its need because its maximum
 * holds it, or its need is its floor because of its minimum or stale statistics). Stated
 * without the exception, which is what is checked: i loses buffer only once j's buffer is gone,
 * and i loses needed memory only once j is at its floor. Each within one dead band (and a
 * block of rounding): pacing leaves a grant anywhere inside its band.
 */
static void check_weight_order(const struct host *h, int c)
{
        for (size_t i = 0; i < h->n; i++) {
                const struct policy_vm *vi = &h->vms[i];
                struct levels li = levels(vi);
                uint64_t tol_i = deadband(vi->grant) + MEM_BLOCK_SIZE;

                for (size_t j = 0; j < h->n; j++) {
                        const struct policy_vm *vj = &h->vms[j];
                        struct levels lj = levels(vj);
                        uint64_t tol_j = deadband(vj->grant) + MEM_BLOCK_SIZE;

                        if (MIN(vi->weight, MEM_WEIGHT_MAX) <= MIN(vj->weight, MEM_WEIGHT_MAX))
                                continue;
                        if (vi->grant + tol_i < li.want)
                                CHECK(vj->grant <= lj.need + tol_j,
                                      "vm %zu (w %u) lost buffer while lighter vm %zu (w %u) "
                                      "kept %" PRIu64 " above need",
                                      seed, c, i, vi->weight, j, vj->weight, vj->grant - lj.need);
                        if (vi->grant + tol_i < li.need)
                                CHECK(vj->grant <= lj.floor + tol_j,
                                      "vm %zu (w %u) below need while lighter vm %zu (w %u) "
                                      "is %" PRIu64 " above its floor",
                                      seed, c, i, vi->weight, j, vj->weight, vj->grant - lj.floor);
                }
        }
}

static void property_convergence_and_weights(void **state)
{
        uint64_t s = seed ^ 0x5555;
        int worst = 0, rounds;
        struct host h;

        for (int c = 0; c < CASES; c++) {
                random_host(&s, &h);
                follow(h.vms, h.n);
                rounds = converge(&h, c);
                worst = MAX(worst, rounds);
                check_weight_order(&h, c);
        }
        print_message("converged in at most %d rounds\n", worst);
}

static void property_ample_gives_want(void **state)
{
        uint64_t s = seed ^ 0xaaaa, wants;
        struct host h;

        for (int c = 0; c < CASES; c++) {
                random_host(&s, &h);
                wants = 0;
                for (size_t i = 0; i < h.n; i++)
                        wants += levels(&h.vms[i]).want;
                h.budget = MAX(wants, policy_reserved(h.vms, h.n)) + rnd_in(&s, 0, 1 * GiB);
                converge(&h, c);
                for (size_t i = 0; i < h.n; i++) {
                        const struct policy_vm *v = &h.vms[i];
                        uint64_t want = levels(v).want;
                        uint64_t off = v->grant > want ? v->grant - want : want - v->grant;

                        CHECK(off < deadband(v->grant), "vm %zu at %" PRIu64 ", want %" PRIu64,
                              seed, c, i, v->grant, want);
                }
        }
}

/* What admission may take, computed apart from the policy. */
static uint64_t oracle_found(const struct host *h, unsigned weight)
{
        uint64_t reserved = policy_reserved(h->vms, h->n);
        uint64_t found = h->budget > reserved ? h->budget - reserved : 0;

        for (size_t i = 0; i < h->n; i++) {
                const struct policy_vm *v = &h->vms[i];
                struct levels l = levels(v);
                uint64_t kept = MIN(v->grant, l.need);

                found += v->grant - kept;
                if (v->weight < weight)
                        found += kept - l.floor;
        }
        return found;
}

static void check_admission(const struct host *h, const struct policy_vm *before, uint64_t startup,
                            unsigned weight, const struct policy_admission *adm, int c)
{
        uint64_t taken = 0;

        CHECK(adm->needed == startup, "needed", seed, c);
        CHECK(adm->found == oracle_found(h, weight) || adm->admit,
              "found %" PRIu64 ", expected %" PRIu64, seed, c, adm->found, oracle_found(h, weight));
        CHECK(adm->admit == (adm->found >= startup), "admit", seed, c);
        if (!adm->admit) {
                CHECK(memcmp(h->vms, before, h->n * sizeof(*before)) == 0, "refusal changed grants",
                      seed, c);
                return;
        }
        for (size_t i = 0; i < h->n; i++) {
                const struct policy_vm *v = &h->vms[i], *b = &before[i];
                struct levels l = levels(b);

                CHECK(v->grant <= b->grant, "vm %zu grew", seed, c, i);
                CHECK(v->grant >= l.floor, "vm %zu below floor", seed, c, i);
                if (b->weight >= weight)
                        CHECK(v->grant >= MIN(b->grant, l.need),
                              "vm %zu (w %u >= %u) cut below need", seed, c, i, b->weight, weight);
                taken += b->grant - v->grant;
        }
        /* Not more than asked for, but for a block of rounding per VM. */
        CHECK(taken <= startup + h->n * MEM_BLOCK_SIZE, "took %" PRIu64 " for %" PRIu64, seed, c,
              taken, startup);
}

static void property_admission(void **state)
{
        struct policy_vm before[N_MAX];
        struct policy_admission adm;
        uint64_t s = seed ^ 0xadad, startup, reserved;
        unsigned weight;
        struct host h;

        for (int c = 0; c < CASES; c++) {
                random_host(&s, &h);
                /* From a settled host whose grants fit, as admission meets it. */
                if (rnd_in(&s, 0, 1)) {
                        follow(h.vms, h.n);
                        converge(&h, c);
                }
                reserved = policy_reserved(h.vms, h.n);
                if (reserved > h.budget)
                        h.budget = reserved + rnd_in(&s, 0, 256 * MiB);
                startup = rnd_blocks(&s, 32 * MiB, 16 * GiB);
                weight = rnd_in(&s, 0, 2) ? weights[rnd(&s) % ARRAY_SIZE(weights)]
                                          : rnd_in(&s, 0, MEM_WEIGHT_MAX);
                memcpy(before, h.vms, sizeof(before));
                policy_admit(h.vms, h.n, h.budget, startup, weight, &adm);
                check_admission(&h, before, startup, weight, &adm, c);
                if (!adm.admit)
                        continue;
                /* Once the others are down to their grants, startup fits. */
                follow(h.vms, h.n);
                CHECK(h.budget >= policy_reserved(h.vms, h.n) + startup,
                      "admitted %" PRIu64 " but only %" PRIu64 " free after the shrink", seed, c,
                      startup, h.budget - policy_reserved(h.vms, h.n));
                /* Balancing with the newcomer in (pinned at its startup until it reports)
                 * keeps its memory for it, and the host within the budget. */
                h.vms[h.n] = vm(weight, MIN(startup, 512 * MiB), 2 * startup, 20, 0, startup);
                h.vms[h.n].have_demand = false;
                h.n++;
                converge(&h, c);
                CHECK(h.vms[h.n - 1].grant == startup, "newcomer lost its startup", seed, c);
                CHECK(policy_reserved(h.vms, h.n) <= h.budget, "newcomer overcommits", seed, c);
        }
}

/* A restart: the same as a cold admission when startup is found; else all that may be taken. */
static void property_partial_admission(void **state)
{
        struct policy_vm before[N_MAX], cold[N_MAX];
        struct policy_admission adm, cold_adm;
        uint64_t s = seed ^ 0x5a9e, startup, minimum, reserved, found;
        unsigned weight;
        struct host h;

        for (int c = 0; c < CASES; c++) {
                random_host(&s, &h);
                if (rnd_in(&s, 0, 1)) {
                        follow(h.vms, h.n);
                        converge(&h, c);
                }
                reserved = policy_reserved(h.vms, h.n);
                if (reserved > h.budget)
                        h.budget = reserved + rnd_in(&s, 0, 256 * MiB);
                startup = rnd_blocks(&s, 32 * MiB, 16 * GiB);
                minimum = rnd_blocks(&s, 32 * MiB, startup);
                weight = weights[rnd(&s) % ARRAY_SIZE(weights)];
                found = oracle_found(&h, weight);
                memcpy(before, h.vms, sizeof(before));
                memcpy(cold, h.vms, sizeof(cold));
                policy_admit(cold, h.n, h.budget, startup, weight, &cold_adm);
                policy_admit_partial(h.vms, h.n, h.budget, startup, minimum, weight, &adm);
                CHECK(adm.found == found, "found %" PRIu64 ", expected %" PRIu64, seed, c,
                      adm.found, found);
                if (cold_adm.admit) {
                        CHECK(adm.admit && !adm.partial && adm.grant == startup &&
                                      memcmp(h.vms, cold, h.n * sizeof(*cold)) == 0,
                              "a restart that fits differs from a cold admission", seed, c);
                        continue;
                }
                CHECK(adm.admit == (ALIGN_DOWN(found, MEM_BLOCK_SIZE) >= minimum), "admit", seed,
                      c);
                if (!adm.admit) {
                        CHECK(memcmp(h.vms, before, h.n * sizeof(*before)) == 0,
                              "refusal changed grants", seed, c);
                        continue;
                }
                CHECK(adm.partial && adm.grant == ALIGN_DOWN(found, MEM_BLOCK_SIZE) &&
                              adm.grant >= minimum && adm.grant < startup,
                      "partial grant %" PRIu64 " of found %" PRIu64, seed, c, adm.grant, found);
                /* Everything on offer was taken: lighter VMs at their floor, the others at
                 * their need (or less, if they had less), each within a block of rounding. */
                for (size_t i = 0; i < h.n; i++) {
                        struct levels l = levels(&before[i]);
                        uint64_t kept = MIN(before[i].grant, l.need);
                        uint64_t low = before[i].weight < weight ? l.floor : kept;

                        CHECK(h.vms[i].grant >= low && h.vms[i].grant <= low + MEM_BLOCK_SIZE,
                              "vm %zu at %" PRIu64 ", not squeezed to %" PRIu64, seed, c, i,
                              h.vms[i].grant, low);
                }
                follow(h.vms, h.n);
                CHECK(h.budget >= policy_reserved(h.vms, h.n) + adm.grant,
                      "partial grant does not fit after the shrink", seed, c);
        }
}

int main(void)
{
        const char *env = getenv("TIDAL_POLICY_SEED");
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(worked_example),
                cmocka_unit_test(worked_example_admission),
                cmocka_unit_test(partial_admission),
                cmocka_unit_test(ample_memory_gives_want),
                cmocka_unit_test(equal_weights_share_in_proportion),
                cmocka_unit_test(memory_being_unplugged_grows_nothing),
                cmocka_unit_test(shrink_is_paced),
                cmocka_unit_test(dead_band),
                cmocka_unit_test(dead_band_gives_way_to_growth),
                cmocka_unit_test(growth_goes_to_the_heaviest_first),
                cmocka_unit_test(stale_and_silent_vms_keep_their_grant),
                cmocka_unit_test(over_budget_on_entry_grows_nothing),
                cmocka_unit_test(empty_and_absurd_inputs),
                cmocka_unit_test(property_bounds_and_budget),
                cmocka_unit_test(property_convergence_and_weights),
                cmocka_unit_test(property_ample_gives_want),
                cmocka_unit_test(property_admission),
                cmocka_unit_test(property_partial_admission),
        };

        if (env)
                seed = strtoull(env, NULL, 0);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
