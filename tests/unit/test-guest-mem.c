/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <sys/stat.h>
#include <unistd.h>

#include "tidal/guest-mem.h"
#include "vmm/layout.h"

#define MB (1ULL << 20)

static void layout_small(void **state)
{
        struct guest_mem gm;

        assert_int_equal(guest_mem_init(&gm, "t", 256 * MB, LAYOUT_PCI_HOLE_START), 0);
        assert_int_equal(gm.nr_regions, 1);
        assert_int_equal(gm.regions[0].gpa, 0);
        assert_int_equal(gm.regions[0].size, 256 * MB);
        assert_int_equal(guest_mem_end(&gm), 256 * MB);
        guest_mem_release(&gm);
}

static void layout_split_around_hole(void **state)
{
        struct guest_mem gm;
        /* A small hole start keeps the test cheap: 64 MiB low, the rest from 4 GiB. */
        assert_int_equal(guest_mem_init(&gm, "t", 96 * MB, 64 * MB), 0);
        assert_int_equal(gm.nr_regions, 2);
        assert_int_equal(gm.regions[0].size, 64 * MB);
        assert_int_equal(gm.regions[1].gpa, 1ULL << 32);
        assert_int_equal(gm.regions[1].size, 32 * MB);
        assert_int_equal(gm.regions[1].fd_offset, 64 * MB);
        assert_int_equal(guest_mem_end(&gm), (1ULL << 32) + 32 * MB);
        /* The hole is not RAM. */
        assert_null(guest_mem_ptr(&gm, 64 * MB, 1));
        assert_null(guest_mem_ptr(&gm, (1ULL << 32) - 4096, 4096));
        assert_non_null(guest_mem_ptr(&gm, 1ULL << 32, 4096));
        /* Both regions are views of one memfd. */
        *(uint8_t *)guest_mem_ptr(&gm, 1ULL << 32, 1) = 0x5a;
        assert_int_equal(gm.base[64 * MB], 0x5a);
        guest_mem_release(&gm);
}

static void ptr_bounds(void **state)
{
        struct guest_mem gm;

        assert_int_equal(guest_mem_init(&gm, "t", 64 * MB, LAYOUT_PCI_HOLE_START), 0);
        assert_non_null(guest_mem_ptr(&gm, 0, 64 * MB));
        assert_non_null(guest_mem_ptr(&gm, 64 * MB - 1, 1));
        assert_null(guest_mem_ptr(&gm, 64 * MB - 1, 2));
        assert_null(guest_mem_ptr(&gm, 64 * MB, 0));
        assert_null(guest_mem_ptr(&gm, UINT64_MAX, 2));
        assert_null(guest_mem_ptr(&gm, 4096, UINT64_MAX));
        assert_null(guest_mem_ptr(&gm, 4096, UINT64_MAX - 4095));
        guest_mem_release(&gm);
}

static uint64_t memfd_blocks(const struct guest_mem *gm)
{
        struct stat st;

        assert_int_equal(fstat(gm->memfd, &st), 0);
        return (uint64_t)st.st_blocks * 512;
}

static void discard_frees_and_zeroes(void **state)
{
        struct guest_mem gm;
        uint8_t *p;

        assert_int_equal(guest_mem_init(&gm, "t", 64 * MB, LAYOUT_PCI_HOLE_START), 0);
        p = guest_mem_ptr(&gm, 0, 16 * MB);
        memset(p, 0xab, 16 * MB);
        assert_true(memfd_blocks(&gm) >= 16 * MB);
        assert_int_equal(guest_mem_discard(&gm, 4 * MB, 8 * MB), 0);
        assert_true(memfd_blocks(&gm) <= 8 * MB + 64 * 1024);
        assert_int_equal(p[4 * MB], 0);
        assert_int_equal(p[12 * MB - 1], 0);
        assert_int_equal(p[4 * MB - 1], 0xab);
        assert_int_equal(p[12 * MB], 0xab);
        /* Unaligned, empty or out-of-RAM requests are refused. */
        assert_int_equal(guest_mem_discard(&gm, 1, 4096), -EINVAL);
        assert_int_equal(guest_mem_discard(&gm, 0, 100), -EINVAL);
        assert_int_equal(guest_mem_discard(&gm, 0, 0), -EINVAL);
        assert_int_equal(guest_mem_discard(&gm, 60 * MB, 8 * MB), -EINVAL);
        assert_int_equal(guest_mem_discard(&gm, 64 * MB, 4096), -EINVAL);
        guest_mem_release(&gm);
}

static void bad_init(void **state)
{
        struct guest_mem gm;

        assert_int_equal(guest_mem_init(&gm, "t", 0, LAYOUT_PCI_HOLE_START), -EINVAL);
        assert_int_equal(guest_mem_init(&gm, "t", 4097, LAYOUT_PCI_HOLE_START), -EINVAL);
        assert_int_equal(guest_mem_init(&gm, "t", 64 * MB, (1ULL << 32) + 4096), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(layout_small), cmocka_unit_test(layout_split_around_hole),
                cmocka_unit_test(ptr_bounds),   cmocka_unit_test(discard_frees_and_zeroes),
                cmocka_unit_test(bad_init),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
