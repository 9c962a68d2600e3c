/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The PFN coalescer: sort, dedupe, merge, clip to RAM, split at region ends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tidal/macro.h"
#include "virtio-balloon/pfn-ranges.h"

#define PG 4096ull

struct collected {
        size_t nr;
        struct pfn_range r[PFN_BATCH_MAX + 8];
};

static void collect(void *opaque, uint64_t gpa, uint64_t len)
{
        struct collected *c = opaque;

        assert_true(c->nr < ARRAY_SIZE(c->r));
        c->r[c->nr++] = (struct pfn_range){gpa, len};
}

/* Like tidal with 16 MiB and the hole at 8 MiB: [0, 8 MiB) and [4 GiB, 4 GiB + 8 MiB). */
static void split_layout(struct guest_mem *gm)
{
        assert_int_equal(guest_mem_plan(gm, 16 * MiB, 8 * MiB), 0);
        assert_int_equal(gm->nr_regions, 2);
}

/* Two regions that touch: [0, 1 MiB) and [1 MiB, 2 MiB), as hot-added memory could. */
static void adjacent_layout(struct guest_mem *gm)
{
        memset(gm, 0, sizeof(*gm));
        gm->memfd = -1;
        gm->nr_regions = 2;
        gm->size = 2 * MiB;
        gm->regions[0] = (struct guest_mem_region){.gpa = 0, .size = MiB, .fd_offset = 0};
        gm->regions[1] = (struct guest_mem_region){.gpa = MiB, .size = MiB, .fd_offset = 5 * MiB};
}

static size_t run(uint32_t *pfns, size_t nr, const struct guest_mem *gm, struct collected *c,
                  struct pfn_ranges_count *count)
{
        memset(c, 0, sizeof(*c));
        memset(count, 0, sizeof(*count));
        return pfn_ranges_from_pfns(pfns, nr, gm, collect, c, count);
}

static void test_sorted(void **state)
{
        struct guest_mem gm;
        struct collected c;
        struct pfn_ranges_count n;
        uint32_t pfns[] = {10, 11, 12, 13};

        split_layout(&gm);
        assert_int_equal(run(pfns, 4, &gm, &c, &n), 1);
        assert_int_equal(c.r[0].gpa, 10 * PG);
        assert_int_equal(c.r[0].len, 4 * PG);
        assert_int_equal(n.pages, 4);
        assert_int_equal(n.out_of_range, 0);
        assert_int_equal(n.duplicates, 0);
}

static void test_unsorted(void **state)
{
        struct guest_mem gm;
        struct collected c;
        struct pfn_ranges_count n;
        uint32_t pfns[] = {13, 20, 10, 12, 11, 22, 21, 100};

        split_layout(&gm);
        assert_int_equal(run(pfns, ARRAY_SIZE(pfns), &gm, &c, &n), 3);
        assert_int_equal(c.r[0].gpa, 10 * PG);
        assert_int_equal(c.r[0].len, 4 * PG);
        assert_int_equal(c.r[1].gpa, 20 * PG);
        assert_int_equal(c.r[1].len, 3 * PG);
        assert_int_equal(c.r[2].gpa, 100 * PG);
        assert_int_equal(c.r[2].len, PG);
        assert_int_equal(n.pages, 8);
        /* Sorted in place. */
        for (size_t i = 1; i < ARRAY_SIZE(pfns); i++)
                assert_true(pfns[i - 1] <= pfns[i]);
}

static void test_duplicates(void **state)
{
        struct guest_mem gm;
        struct collected c;
        struct pfn_ranges_count n;
        uint32_t pfns[] = {7, 5, 6, 5, 6, 6, 7, 9, 9};

        split_layout(&gm);
        assert_int_equal(run(pfns, ARRAY_SIZE(pfns), &gm, &c, &n), 2);
        assert_int_equal(c.r[0].gpa, 5 * PG);
        assert_int_equal(c.r[0].len, 3 * PG);
        assert_int_equal(c.r[1].gpa, 9 * PG);
        assert_int_equal(c.r[1].len, PG);
        assert_int_equal(n.pages, 4);
        assert_int_equal(n.duplicates, 5);
}

static void test_out_of_range(void **state)
{
        struct guest_mem gm;
        struct collected c;
        struct pfn_ranges_count n;
        const uint32_t low_end = 8 * MiB / PG, high = 4 * GiB / PG, high_end = high + low_end;
        /* Straddling the hole's start, in the hole, straddling the end of RAM, far away. */
        uint32_t pfns[] = {low_end - 2,  low_end - 1, low_end,      low_end + 1, 0x80000,
                           high_end - 1, high_end,    high_end + 1, UINT32_MAX,  high};

        split_layout(&gm);
        assert_int_equal(run(pfns, ARRAY_SIZE(pfns), &gm, &c, &n), 3);
        assert_int_equal(c.r[0].gpa, (low_end - 2) * PG);
        assert_int_equal(c.r[0].len, 2 * PG);
        assert_int_equal(c.r[1].gpa, 4 * GiB);
        assert_int_equal(c.r[1].len, PG);
        assert_int_equal(c.r[2].gpa, (uint64_t)(high_end - 1) * PG);
        assert_int_equal(c.r[2].len, PG);
        assert_int_equal(n.pages, 4);
        assert_int_equal(n.out_of_range, 6);
        for (size_t i = 0; i < c.nr; i++)
                assert_non_null(guest_mem_region_of(&gm, c.r[i].gpa + c.r[i].len - 1));
}

static void test_region_crossing(void **state)
{
        struct guest_mem gm;
        struct collected c;
        struct pfn_ranges_count n;
        uint32_t pfns[4];
        const uint32_t edge = MiB / PG;

        adjacent_layout(&gm);
        for (unsigned i = 0; i < 4; i++)
                pfns[i] = edge - 2 + i;
        /* One contiguous run, but two discards: each must lie in one region of the memfd. */
        assert_int_equal(run(pfns, 4, &gm, &c, &n), 2);
        assert_int_equal(c.r[0].gpa, MiB - 2 * PG);
        assert_int_equal(c.r[0].len, 2 * PG);
        assert_int_equal(c.r[1].gpa, MiB);
        assert_int_equal(c.r[1].len, 2 * PG);
        assert_int_equal(n.pages, 4);
        assert_int_equal(n.out_of_range, 0);
}

static void test_empty(void **state)
{
        struct guest_mem gm;
        struct collected c;
        struct pfn_ranges_count n;
        struct pfn_range none[1];
        uint32_t pfns[1] = {0};

        split_layout(&gm);
        assert_int_equal(run(pfns, 0, &gm, &c, &n), 0);
        assert_int_equal(c.nr, 0);
        assert_int_equal(n.pages + n.out_of_range + n.duplicates, 0);
        assert_int_equal(pfn_ranges_merge(none, 0, &gm, collect, &c, &n), 0);
        /* No RAM at all: everything is out of range. */
        memset(&gm, 0, sizeof(gm));
        pfns[0] = 3;
        assert_int_equal(run(pfns, 1, &gm, &c, &n), 0);
        assert_int_equal(n.out_of_range, 1);
}

static void test_max_batch(void **state)
{
        struct guest_mem gm;
        struct collected c;
        struct pfn_ranges_count n;
        uint32_t pfns[PFN_BATCH_MAX];

        split_layout(&gm);
        /* 256 contiguous PFNs in reverse order: one discard of 1 MiB. */
        for (unsigned i = 0; i < PFN_BATCH_MAX; i++)
                pfns[i] = 1000 + PFN_BATCH_MAX - 1 - i;
        assert_int_equal(run(pfns, PFN_BATCH_MAX, &gm, &c, &n), 1);
        assert_int_equal(c.r[0].gpa, 1000 * PG);
        assert_int_equal(c.r[0].len, PFN_BATCH_MAX * PG);
        /* Every other page: nothing to merge, 256 ranges. */
        for (unsigned i = 0; i < PFN_BATCH_MAX; i++)
                pfns[i] = 2 * (PFN_BATCH_MAX - i);
        assert_int_equal(run(pfns, PFN_BATCH_MAX, &gm, &c, &n), PFN_BATCH_MAX);
        assert_int_equal(n.pages, PFN_BATCH_MAX);
        /* The same PFN 256 times. */
        for (unsigned i = 0; i < PFN_BATCH_MAX; i++)
                pfns[i] = 42;
        assert_int_equal(run(pfns, PFN_BATCH_MAX, &gm, &c, &n), 1);
        assert_int_equal(n.pages, 1);
        assert_int_equal(n.duplicates, PFN_BATCH_MAX - 1);
}

static void test_merge_ranges(void **state)
{
        struct guest_mem gm;
        struct collected c = {0};
        struct pfn_ranges_count n = {0};
        struct pfn_range r[] = {
                {4 * MiB, 2 * MiB},
                {0, 2 * MiB},                     /* unsorted */
                {2 * MiB, 2 * MiB},               /* adjacent to both: one 6 MiB run */
                {MiB, PG},                        /* inside, a duplicate page */
                {7 * MiB, 2 * MiB},               /* runs into the hole: clipped to 1 MiB */
                {4 * GiB + 8 * MiB - PG, 2 * PG}, /* straddles the end of RAM */
                {UINT64_MAX - PG + 1, 2 * PG},    /* wraps: whole pages only, none in RAM */
        };

        split_layout(&gm);
        assert_int_equal(pfn_ranges_merge(r, ARRAY_SIZE(r), &gm, collect, &c, &n), 3);
        assert_int_equal(c.r[0].gpa, 0);
        assert_int_equal(c.r[0].len, 6 * MiB);
        assert_int_equal(c.r[1].gpa, 7 * MiB);
        assert_int_equal(c.r[1].len, MiB);
        assert_int_equal(c.r[2].gpa, 4 * GiB + 8 * MiB - PG);
        assert_int_equal(c.r[2].len, PG);
        assert_int_equal(n.duplicates, 1);
        assert_int_equal(n.out_of_range, MiB / PG + 1);
}

static void test_merge_unaligned_and_crossing(void **state)
{
        struct guest_mem gm;
        struct collected c = {0};
        struct pfn_ranges_count n = {0};
        struct pfn_range r[] = {
                {MiB - 3 * PG + 1, 6 * PG}, /* unaligned start: its first partial page is lost */
        };

        adjacent_layout(&gm);
        assert_int_equal(pfn_ranges_merge(r, 1, &gm, collect, &c, &n), 2);
        assert_int_equal(c.r[0].gpa, MiB - 2 * PG);
        assert_int_equal(c.r[0].len, 2 * PG);
        assert_int_equal(c.r[1].gpa, MiB);
        assert_int_equal(c.r[1].len, 3 * PG);
        assert_int_equal(n.pages, 5);
}

/*
 * Hot-added (virtio-mem) memory is RAM where it is plugged and nothing where it is not: runs stop
 * at unplugged blocks, and one run covers neighbouring plugged blocks.
 */
static void test_hotplug_plugged_only(void **state)
{
        const uint64_t hp = 8 * GiB, bs = 2 * MiB;
        struct pfn_range ranges[2];
        struct pfn_ranges_count n;
        struct collected c;
        struct guest_mem gm;
        uint32_t pfns[1028];

        split_layout(&gm);
        assert_int_equal(guest_mem_plan_hotplug(&gm, hp, 4 * bs, bs), 0);
        assert_int_equal(guest_mem_map(&gm, "test-pfn-ranges"), 0);
        assert_int_equal(guest_mem_plug(&gm, 1, 2), 0);
        /* Blocks 0 (2 pages), 1 and 2 (plugged, 1024 pages), 3 (2 pages). */
        for (uint32_t i = 0; i < ARRAY_SIZE(pfns); i++)
                pfns[i] = (uint32_t)((hp + bs) / PG) - 2 + i;
        assert_int_equal(run(pfns, ARRAY_SIZE(pfns), &gm, &c, &n), 1);
        assert_int_equal(c.r[0].gpa, hp + bs);
        assert_int_equal(c.r[0].len, 2 * bs);
        assert_int_equal(n.pages, 1024);
        assert_int_equal(n.out_of_range, 4);

        /* Byte ranges alike: block 2 unplugged now, so two runs; block 3 never was. */
        assert_int_equal(guest_mem_unplug(&gm, 2, 1), 0);
        assert_int_equal(guest_mem_plug(&gm, 3, 1), 0);
        ranges[0] = (struct pfn_range){.gpa = hp, .len = 3 * bs};
        ranges[1] = (struct pfn_range){.gpa = hp + 3 * bs, .len = bs};
        memset(&c, 0, sizeof(c));
        memset(&n, 0, sizeof(n));
        assert_int_equal(pfn_ranges_merge(ranges, 2, &gm, collect, &c, &n), 2);
        assert_int_equal(c.r[0].gpa, hp + bs);
        assert_int_equal(c.r[0].len, bs);
        assert_int_equal(c.r[1].gpa, hp + 3 * bs);
        assert_int_equal(c.r[1].len, bs);
        assert_int_equal(n.pages, 1024);
        assert_int_equal(n.out_of_range, 1024);
        guest_mem_release(&gm);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sorted),
                cmocka_unit_test(test_unsorted),
                cmocka_unit_test(test_duplicates),
                cmocka_unit_test(test_out_of_range),
                cmocka_unit_test(test_region_crossing),
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_max_batch),
                cmocka_unit_test(test_merge_ranges),
                cmocka_unit_test(test_merge_unaligned_and_crossing),
                cmocka_unit_test(test_hotplug_plugged_only),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
