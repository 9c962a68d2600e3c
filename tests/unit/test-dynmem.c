/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The demand estimate and the standalone controller (src/vmm/dynmem). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/dynmem/controller.h"
#include "vmm/dynmem/demand.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

static void set_stat(struct demand_sample *s, unsigned tag, uint64_t val)
{
        s->stats.val[tag] = val;
        s->stats.present |= 1u << tag;
}

/* A report as a Debian 6.1 guest sends it (tags 0-9). */
static struct demand_sample sample(uint64_t total, uint64_t avail, uint64_t assigned)
{
        struct demand_sample s = {.assigned = assigned};

        set_stat(&s, BALLOON_STAT_MEMTOT, total);
        set_stat(&s, BALLOON_STAT_AVAIL, avail);
        set_stat(&s, BALLOON_STAT_MEMFREE, avail / 2);
        set_stat(&s, BALLOON_STAT_MAJFLT, 100);
        set_stat(&s, BALLOON_STAT_SWAP_IN, 0);
        return s;
}

static void demand_is_total_minus_available(void **state)
{
        struct demand_sample s = sample(1000 * MiB, 600 * MiB, 1024 * MiB);
        struct demand d;

        assert_int_equal(demand_estimate(&s, NULL, 0, &d), 0);
        assert_int_equal(d.used, 400 * MiB);
        assert_int_equal(d.demand, 400 * MiB);
        assert_int_equal(d.pressure, 0);

        /* Without deflate-on-OOM the balloon has already left MemTotal: nothing to subtract. */
        s.balloon_actual = 300 * MiB;
        assert_int_equal(demand_estimate(&s, NULL, 0, &d), 0);
        assert_int_equal(d.used, 400 * MiB);

        /* With it, ballooned pages sit in MemTotal as used memory. */
        s.deflate_on_oom = true;
        assert_int_equal(demand_estimate(&s, NULL, 0, &d), 0);
        assert_int_equal(d.used, 100 * MiB);
        s.balloon_actual = 900 * MiB;
        assert_int_equal(demand_estimate(&s, NULL, 0, &d), 0);
        assert_int_equal(d.used, 0);
}

static void kernel_overhead_counts_as_demand(void **state)
{
        /* A 256 MiB guest whose kernel keeps 46 MiB out of MemTotal. */
        struct demand_sample s = sample(210 * MiB, 160 * MiB, 256 * MiB);
        uint64_t overhead;
        struct demand d;

        assert_int_equal(demand_overhead(&s, &overhead), 0);
        assert_int_equal(overhead, 46 * MiB);
        assert_int_equal(demand_estimate(&s, NULL, overhead, &d), 0);
        assert_int_equal(d.used, 96 * MiB);

        /* Ballooned without deflate-on-OOM: gone from MemTotal and from assigned alike. */
        s = sample(146 * MiB, 96 * MiB, 192 * MiB);
        s.balloon_actual = 64 * MiB;
        assert_int_equal(demand_overhead(&s, &overhead), 0);
        assert_int_equal(overhead, 46 * MiB);
        /* With it: still in MemTotal. */
        s = sample(210 * MiB, 96 * MiB, 192 * MiB);
        s.balloon_actual = 64 * MiB;
        s.deflate_on_oom = true;
        assert_int_equal(demand_overhead(&s, &overhead), 0);
        assert_int_equal(overhead, 46 * MiB);
        assert_int_equal(demand_estimate(&s, NULL, overhead, &d), 0);
        assert_int_equal(d.used, 96 * MiB);

        /* A guest claiming a tiny MemTotal cannot make its overhead more than half of it. */
        s = sample(1 * MiB, 0, 512 * MiB);
        assert_int_equal(demand_overhead(&s, &overhead), 0);
        assert_int_equal(overhead, 256 * MiB);
        memset(&s, 0, sizeof(s));
        assert_int_equal(demand_overhead(&s, &overhead), -ENODATA);
}

static void demand_distrusts_the_guest(void **state)
{
        struct demand_sample s = sample(100 * MiB, 900 * MiB, 512 * MiB);
        struct demand d;

        /* available > total */
        assert_int_equal(demand_estimate(&s, NULL, 0, &d), 0);
        assert_int_equal(d.demand, 0);
        /* claims to use more than it has */
        s = sample(UINT64_MAX, 0, 512 * MiB);
        assert_int_equal(demand_estimate(&s, NULL, 0, &d), 0);
        assert_int_equal(d.demand, 512 * MiB);
        /* missing tags */
        memset(&s, 0, sizeof(s));
        set_stat(&s, BALLOON_STAT_MEMTOT, 1 * GiB);
        assert_int_equal(demand_estimate(&s, NULL, 0, &d), -ENODATA);
}

static void pressure_raises_demand(void **state)
{
        struct demand_sample prev = sample(1000 * MiB, 100 * MiB, 1000 * MiB);
        struct demand_sample cur = prev;
        struct demand d;

        /* The same counters: no pressure. */
        assert_int_equal(demand_estimate(&cur, &prev, 0, &d), 0);
        assert_int_equal(d.pressure, 0);
        assert_int_equal(d.demand, 900 * MiB);

        set_stat(&cur, BALLOON_STAT_SWAP_IN, 4096);
        assert_int_equal(demand_estimate(&cur, &prev, 0, &d), 0);
        assert_int_equal(d.pressure, DEMAND_PRESSURE_SWAP_IN);
        assert_int_equal(d.demand, 1000 * MiB + 125 * MiB);

        /* A few major faults are normal; a burst is thrashing. */
        cur = prev;
        set_stat(&cur, BALLOON_STAT_MAJFLT, 100 + DEMAND_MAJOR_FAULTS_MIN - 1);
        assert_int_equal(demand_estimate(&cur, &prev, 0, &d), 0);
        assert_int_equal(d.pressure, 0);
        set_stat(&cur, BALLOON_STAT_MAJFLT, 100 + DEMAND_MAJOR_FAULTS_MIN);
        assert_int_equal(demand_estimate(&cur, &prev, 0, &d), 0);
        assert_int_equal(d.pressure, DEMAND_PRESSURE_MAJOR_FAULTS);

        /* Linux 6.12+ tags. */
        cur = prev;
        set_stat(&prev, BALLOON_STAT_ALLOC_STALL, 5);
        set_stat(&cur, BALLOON_STAT_ALLOC_STALL, 6);
        set_stat(&prev, BALLOON_STAT_DIRECT_RECLAIM, 1);
        set_stat(&cur, BALLOON_STAT_DIRECT_RECLAIM, 9);
        set_stat(&prev, BALLOON_STAT_OOM_KILL, 0);
        set_stat(&cur, BALLOON_STAT_OOM_KILL, 1);
        assert_int_equal(demand_estimate(&cur, &prev, 0, &d), 0);
        assert_int_equal(d.pressure, DEMAND_PRESSURE_ALLOC_STALL | DEMAND_PRESSURE_DIRECT_RECLAIM |
                                             DEMAND_PRESSURE_OOM_KILL);

        /* A counter going backwards (driver reloaded) or appearing is not pressure. */
        set_stat(&cur, BALLOON_STAT_ALLOC_STALL, 0);
        set_stat(&cur, BALLOON_STAT_DIRECT_RECLAIM, 0);
        set_stat(&cur, BALLOON_STAT_OOM_KILL, 0);
        set_stat(&cur, BALLOON_STAT_DIRECT_SCAN, 50);
        assert_int_equal(demand_estimate(&cur, &prev, 0, &d), 0);
        assert_int_equal(d.pressure, 0);
}

static const struct mem_settings settings = {
        .dynamic = true,
        .startup = 1 * GiB,
        .minimum = 512 * MiB,
        .maximum = 4 * GiB,
        .buffer = 20,
        .weight = 5000,
};

/* A round on a report that follows one which wanted as little (a confirmed low reading). */
static uint64_t next(uint64_t target, uint64_t demand, bool fresh)
{
        struct controller_input in = {&settings, target, demand, fresh, true, false, 0};

        return controller_next_target(&in);
}

/* A round on a first low reading. */
static uint64_t next_first(uint64_t target, uint64_t demand, bool fresh)
{
        struct controller_input in = {&settings, target, demand, fresh, false, false, 0};

        return controller_next_target(&in);
}

static void controller_grows_at_once_and_clamps(void **state)
{
        /* 1000 MiB demand at 20 % -> 1200 MiB. */
        assert_int_equal(next(1 * GiB, 1000 * MiB, true), 1200 * MiB);
        /* Never above maximum, never below minimum. */
        assert_int_equal(next(1 * GiB, 100 * GiB, true), 4 * GiB);
        assert_int_equal(next(600 * MiB, 0, true), 512 * MiB);
        assert_int_equal(next_first(1 * GiB, 1000 * MiB, true), 1200 * MiB);
        /* A target outside the settings (minimum was just lowered...) comes back inside. */
        assert_int_equal(next(5 * GiB, 4 * GiB, true), 4 * GiB);
        assert_int_equal(next(256 * MiB, 0, true), 512 * MiB);
        /* Every target is whole 2 MiB blocks. */
        assert_int_equal(next(1 * GiB, 1001 * MiB, true) % MEM_BLOCK_SIZE, 0);
        assert_true(next(1 * GiB, 1001 * MiB, true) >= 1001 * MiB * 12 / 10);
}

static void controller_dead_band(void **state)
{
        uint64_t t = 4 * GiB;

        /* Within 1/32 (or 16 MiB) above the wanted size nothing shrinks... */
        assert_int_equal(next(1200 * MiB, 990 * MiB, true), 1200 * MiB);
        /* ...but anything below it grows, or the guest would stay Low. */
        assert_int_equal(next(1200 * MiB, 1001 * MiB, true), 1202 * MiB);
        /* A steady load converges and stays; a wandering one settles at its top. */
        for (int i = 0; i < 50; i++)
                t = next(t, 700 * MiB, true);
        assert_int_equal(t, 840 * MiB);
        assert_int_equal(next(t, 700 * MiB, true), t);
        assert_int_equal(next(t, 695 * MiB, true), t);
        t = next(t, 710 * MiB, true);
        assert_int_equal(t, 852 * MiB);
        for (int i = 0; i < 10; i++) {
                assert_int_equal(next(t, 700 * MiB, true), t);
                assert_int_equal(next(t, 710 * MiB, true), t);
        }
}

static void controller_shrinks_in_bounded_steps(void **state)
{
        struct controller_input in = {&settings, 2 * GiB, 400 * MiB, true, false, false, 0};

        /* A first low reading may be a blip: nothing moves, but it says it wants less. */
        assert_int_equal(controller_next_target(&in), 2 * GiB);
        assert_true(controller_wants_less(&in));
        /* Confirmed by the next report: the whole gap in one step... */
        in.settled = true;
        assert_int_equal(controller_next_target(&in), 512 * MiB);
        /* ...of at most 2 GiB. */
        in.target = 4 * GiB;
        assert_int_equal(controller_next_target(&in), 2 * GiB);
        /* Stale statistics never shrink a guest, nor count as a low reading; they may still
         * grow it. */
        in.fresh = false;
        assert_int_equal(controller_next_target(&in), 4 * GiB);
        assert_false(controller_wants_less(&in));
        assert_int_equal(next(2 * GiB, 0, false), 2 * GiB);
        assert_int_equal(next(1 * GiB, 2 * GiB, false), 2458 * MiB); /* 2457.6 rounded up */
        /* Inside the dead band is no low reading either. */
        in = (struct controller_input){&settings, 1200 * MiB, 990 * MiB, true, true, false, 0};
        assert_false(controller_wants_less(&in));
        assert_int_equal(controller_next_target(&in), 1200 * MiB);
}

/*
 * While virtio-mem unplugs, the block being offlined has its free pages isolated, and a report
 * shows them as used: that is no reason to grow (the bench's 256 -> 276 -> 256 MiB wobble,
 * which cost 60 subblock requests). Real starvation still is, and so is more than can hide.
 */
static void controller_growth_discounts_memory_being_unplugged(void **state)
{
        struct controller_input in = {.settings = &settings,
                                      .target = 512 * MiB,
                                      .demand = 500 * MiB, /* wants 600 MiB */
                                      .fresh = true,
                                      .settled = true};

        assert_int_equal(controller_next_target(&in), 600 * MiB);
        in.unplugging = 128 * MiB; /* 372 MiB really used at most: wants 512 at most */
        assert_int_equal(controller_next_target(&in), 512 * MiB);
        in.unplugging = 64 * MiB; /* 436 MiB at least: wants 524 MiB */
        assert_int_equal(controller_next_target(&in), 524 * MiB);
        in.unplugging = 1 * GiB; /* more in flight than demand: nothing wraps */
        assert_int_equal(controller_next_target(&in), 512 * MiB);
        in.pressure = true; /* starving: grown on the whole demand */
        assert_int_equal(controller_next_target(&in), 600 * MiB);
        /* Shrinking goes by the undiscounted demand: memory in flight never shrinks further. */
        in = (struct controller_input){.settings = &settings,
                                       .target = 2 * GiB,
                                       .demand = 1000 * MiB,
                                       .fresh = true,
                                       .settled = true,
                                       .unplugging = 512 * MiB};
        assert_int_equal(controller_next_target(&in), 1200 * MiB);
        assert_true(controller_wants_less(&in));
}

static void split_between_virtio_mem_and_balloon(void **state)
{
        struct mem_split s;

        controller_split(3 * GiB, 1 * GiB, 15 * GiB, 0, &s);
        assert_int_equal(s.vmem, 2 * GiB);
        assert_int_equal(s.balloon, 0);
        controller_split(1 * GiB, 1 * GiB, 15 * GiB, 0, &s);
        assert_int_equal(s.vmem, 0);
        assert_int_equal(s.balloon, 0);
        controller_split(600 * MiB, 1 * GiB, 15 * GiB, 0, &s);
        assert_int_equal(s.vmem, 0);
        assert_int_equal(s.balloon, 424 * MiB);
        /* What virtio-mem cannot unplug, the balloon takes. */
        controller_split(1536 * MiB, 1 * GiB, 15 * GiB, 256 * MiB, &s);
        assert_int_equal(s.vmem, 512 * MiB);
        assert_int_equal(s.balloon, 256 * MiB);
        /* No region: above startup is out of reach. */
        controller_split(2 * GiB, 1 * GiB, 0, 0, &s);
        assert_int_equal(s.vmem, 0);
        assert_int_equal(s.balloon, 0);
}

static void external_target_stays_inside_the_settings(void **state)
{
        /* The daemon's figure, as long as it fits. */
        assert_int_equal(controller_external_target(&settings, 2 * GiB), 2 * GiB);
        assert_int_equal(controller_external_target(&settings, 512 * MiB), 512 * MiB);
        /* It is not trusted: clamped to [minimum, maximum]... */
        assert_int_equal(controller_external_target(&settings, 0), 512 * MiB);
        assert_int_equal(controller_external_target(&settings, 100 * GiB), 4 * GiB);
        assert_int_equal(controller_external_target(&settings, UINT64_MAX), 4 * GiB);
        /* ...and whole blocks, rounded down. */
        assert_int_equal(controller_external_target(&settings, 1 * GiB + 3 * MiB),
                         1 * GiB + 2 * MiB);
        assert_int_equal(controller_external_target(&settings, 513 * MiB), 512 * MiB);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(demand_is_total_minus_available),
                cmocka_unit_test(kernel_overhead_counts_as_demand),
                cmocka_unit_test(demand_distrusts_the_guest),
                cmocka_unit_test(pressure_raises_demand),
                cmocka_unit_test(controller_grows_at_once_and_clamps),
                cmocka_unit_test(controller_dead_band),
                cmocka_unit_test(controller_shrinks_in_bounded_steps),
                cmocka_unit_test(controller_growth_discounts_memory_being_unplugged),
                cmocka_unit_test(split_between_virtio_mem_and_balloon),
                cmocka_unit_test(external_target_stays_inside_the_settings),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
