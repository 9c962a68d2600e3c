/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tidal/guest-mem.h"
#include "vmm/boot/boot.h"
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

struct discard_seen {
        const struct guest_mem *gm;
        unsigned calls;
        uint64_t off, len;
        bool was_resident; /* the pages still held data when the hook ran */
};

static void note_discard(void *opaque, uint64_t off, uint64_t len)
{
        struct discard_seen *seen = opaque;
        seen->calls++;
        seen->was_resident = seen->gm->base[off] == 0xcd;
        seen->off = off;
        seen->len = len;
}

/* Smart paging hears of every discard of boot RAM (memfd offsets), before the punch. */
static void discard_hook_sees_boot_ram(void **state)
{
        struct guest_mem gm;
        struct discard_seen seen = {.gm = &gm};

        assert_int_equal(guest_mem_init(&gm, "t", 64 * MB, LAYOUT_PCI_HOLE_START), 0);
        memset(gm.base, 0xcd, 8 * MB);
        gm.on_discard = note_discard;
        gm.on_discard_opaque = &seen;
        assert_int_equal(guest_mem_discard(&gm, 4 * MB, 2 * MB), 0);
        assert_int_equal(seen.calls, 1);
        assert_int_equal(seen.off, 4 * MB);
        assert_int_equal(seen.len, 2 * MB);
        assert_true(seen.was_resident);
        assert_int_equal(gm.base[4 * MB], 0); /* and still punched */
        /* Refused requests reach nobody. */
        assert_int_equal(guest_mem_discard(&gm, 1, 4096), -EINVAL);
        assert_int_equal(seen.calls, 1);
        guest_mem_release(&gm);
        assert_null(gm.on_discard);
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

/* ---- The hot-plug (virtio-mem) region ------------------------------------------------------- */

#define HP_GPA   (4ULL << 30)
#define HP_BLOCK (2 * MB)
#define HP_SIZE  (256 * HP_BLOCK) /* 512 MiB: four bitmap words */

static void hotplug_init(struct guest_mem *gm)
{
        assert_int_equal(guest_mem_plan(gm, 64 * MB, LAYOUT_PCI_HOLE_START), 0);
        assert_int_equal(guest_mem_plan_hotplug(gm, HP_GPA, HP_SIZE, HP_BLOCK), 0);
        assert_int_equal(guest_mem_map(gm, "t"), 0);
}

static uint64_t hp_gpa(uint64_t block)
{
        return HP_GPA + block * HP_BLOCK;
}

static void hotplug_plan_errors(void **state)
{
        struct guest_mem gm;

        assert_int_equal(guest_mem_plan(&gm, 96 * MB, 64 * MB), 0); /* RAM up to 4G + 32M */
        /* Not above all RAM, misaligned, bad block sizes, empty, wrapping. */
        assert_int_equal(guest_mem_plan_hotplug(&gm, 1ULL << 30, 64 * MB, HP_BLOCK), -EINVAL);
        assert_int_equal(guest_mem_plan_hotplug(&gm, HP_GPA, 64 * MB, HP_BLOCK), -EINVAL);
        assert_int_equal(guest_mem_plan_hotplug(&gm, HP_GPA + 33 * MB, 64 * MB, HP_BLOCK), -EINVAL);
        assert_int_equal(guest_mem_plan_hotplug(&gm, 5ULL << 30, 65 * MB, HP_BLOCK), -EINVAL);
        assert_int_equal(guest_mem_plan_hotplug(&gm, 5ULL << 30, 64 * MB, 3 * MB), -EINVAL);
        assert_int_equal(guest_mem_plan_hotplug(&gm, 5ULL << 30, 64 * MB, 2048), -EINVAL);
        assert_int_equal(guest_mem_plan_hotplug(&gm, 5ULL << 30, 0, HP_BLOCK), -EINVAL);
        assert_int_equal(
                guest_mem_plan_hotplug(&gm, UINT64_MAX - HP_BLOCK + 1, 2 * HP_BLOCK, HP_BLOCK),
                -EINVAL);
        assert_int_equal(gm.nr_regions, 2);
        assert_int_equal(gm.map_size, 96 * MB);
        /* Right above RAM is fine, but only once. */
        assert_int_equal(guest_mem_plan_hotplug(&gm, 5ULL << 30, 64 * MB, HP_BLOCK), 0);
        assert_int_equal(guest_mem_plan_hotplug(&gm, 6ULL << 30, 64 * MB, HP_BLOCK), -EINVAL);
        assert_int_equal(gm.nr_regions, 3);
        assert_true(gm.regions[2].hotplug);
        assert_int_equal(gm.regions[2].fd_offset, 96 * MB);
        assert_int_equal(gm.map_size, 160 * MB);
        assert_int_equal(gm.size, 96 * MB);
        assert_int_equal(gm.hotplug.nr_blocks, 32);
        /* Nothing to plug in a plan. */
        assert_int_equal(guest_mem_plug(&gm, 0, 1), -EINVAL);
        guest_mem_release(&gm);
}

/* The permissions of the mapping holding p, from /proc/self/maps ("rw-s", "---s"). */
static void perms_of(const void *p, char perms[5])
{
        FILE *f = fopen("/proc/self/maps", "re");
        char line[512];
        uintptr_t a = (uintptr_t)p;

        assert_non_null(f);
        strcpy(perms, "none");
        while (fgets(line, sizeof(line), f)) {
                unsigned long lo, hi;
                char pr[5];

                if (sscanf(line, "%lx-%lx %4s", &lo, &hi, pr) == 3 && a >= lo && a < hi) {
                        memcpy(perms, pr, 5);
                        break;
                }
        }
        fclose(f);
}

static void hotplug_layout(void **state)
{
        const struct guest_mem_region *r;
        struct e820_map map;
        struct guest_mem gm;
        char perms[5];

        hotplug_init(&gm);
        r = guest_mem_hotplug_region(&gm);
        assert_non_null(r);
        assert_int_equal(r->gpa, HP_GPA);
        assert_int_equal(r->size, HP_SIZE);
        assert_int_equal(r->fd_offset, 64 * MB);
        assert_ptr_equal(r->hva, gm.base + 64 * MB);
        assert_int_equal(gm.size, 64 * MB);
        assert_int_equal(gm.map_size, 64 * MB + HP_SIZE);
        /* Boot RAM ends where it did; the region is no RAM the e820 map shows. */
        assert_int_equal(guest_mem_end(&gm), 64 * MB);
        e820_build(&gm, &map);
        for (unsigned i = 0; i < map.nr; i++)
                assert_true(map.entries[i].addr + map.entries[i].size <= 64 * MB);
        /* Unplugged at first: refused to devices, and not even mapped. */
        assert_ptr_equal(guest_mem_region_of(&gm, HP_GPA), r);
        assert_null(guest_mem_ptr(&gm, HP_GPA, 1));
        assert_null(guest_mem_ptr(&gm, HP_GPA + HP_SIZE - 1, 1));
        assert_false(guest_mem_block_plugged(&gm, 0));
        perms_of(r->hva, perms);
        assert_string_equal(perms, "---s");
        perms_of(r->hva + HP_SIZE - 1, perms);
        assert_string_equal(perms, "---s");
        perms_of(gm.base, perms);
        assert_string_equal(perms, "rw-s");
        assert_null(guest_mem_hotplug_region(&(struct guest_mem){.memfd = -1}));
        guest_mem_release(&gm);
}

static void hotplug_plug_unplug(void **state)
{
        const struct guest_mem_region *r;
        struct guest_mem gm;
        char perms[5];
        uint8_t *p;

        hotplug_init(&gm);
        r = guest_mem_hotplug_region(&gm);
        /* Blocks 62..65 straddle the first bitmap word. */
        assert_int_equal(guest_mem_plug(&gm, 62, 4), 0);
        assert_int_equal(gm.hotplug.nr_plugged, 4);
        for (uint64_t b = 60; b < 68; b++)
                assert_int_equal(guest_mem_block_plugged(&gm, b), b >= 62 && b < 66);
        p = guest_mem_ptr(&gm, hp_gpa(62), 4 * HP_BLOCK);
        assert_ptr_equal(p, r->hva + 62 * HP_BLOCK);
        memset(p, 0x5a, 4 * HP_BLOCK); /* mapped read-write: no fault */
        perms_of(p, perms);
        assert_string_equal(perms, "rw-s");
        /* A range is handed out only when every byte of it is plugged. */
        assert_null(guest_mem_ptr(&gm, hp_gpa(62) - 1, 2));
        assert_null(guest_mem_ptr(&gm, hp_gpa(66) - 1, 2));
        assert_non_null(guest_mem_ptr(&gm, hp_gpa(66) - 1, 1));
        assert_non_null(guest_mem_ptr(&gm, hp_gpa(66) - 1, 0));
        /* Plug what is plugged, unplug what is not, or leave the region: refused, no change. */
        assert_int_equal(guest_mem_plug(&gm, 61, 2), -EINVAL);
        assert_int_equal(guest_mem_unplug(&gm, 64, 3), -EINVAL);
        assert_int_equal(guest_mem_plug(&gm, 250, 7), -EINVAL);
        assert_int_equal(guest_mem_plug(&gm, 256, 1), -EINVAL);
        assert_int_equal(guest_mem_plug(&gm, UINT64_MAX, 2), -EINVAL);
        assert_int_equal(guest_mem_plug(&gm, 0, 0), -EINVAL);
        assert_int_equal(gm.hotplug.nr_plugged, 4);
        /* Unplugging takes it away from devices and maps it PROT_NONE again. */
        assert_int_equal(guest_mem_unplug(&gm, 63, 2), 0);
        assert_int_equal(gm.hotplug.nr_plugged, 2);
        assert_null(guest_mem_ptr(&gm, hp_gpa(63), 1));
        assert_non_null(guest_mem_ptr(&gm, hp_gpa(62), HP_BLOCK));
        assert_non_null(guest_mem_ptr(&gm, hp_gpa(65), HP_BLOCK));
        perms_of(r->hva + 63 * HP_BLOCK, perms);
        assert_string_equal(perms, "---s");
        perms_of(r->hva + 65 * HP_BLOCK, perms);
        assert_string_equal(perms, "rw-s");
        guest_mem_release(&gm);
}

static void hotplug_find_block(void **state)
{
        struct guest_mem gm;

        hotplug_init(&gm);
        assert_int_equal(guest_mem_find_block(&gm, 0, 256, true), 256);
        assert_int_equal(guest_mem_find_block(&gm, 0, 256, false), 0);
        assert_int_equal(guest_mem_plug(&gm, 130, 70), 0);
        assert_int_equal(guest_mem_find_block(&gm, 0, 256, true), 130);
        assert_int_equal(guest_mem_find_block(&gm, 129, 256, true), 130);
        assert_int_equal(guest_mem_find_block(&gm, 131, 256, true), 131);
        assert_int_equal(guest_mem_find_block(&gm, 130, 256, false), 200);
        assert_int_equal(guest_mem_find_block(&gm, 0, 100, true), 100);
        assert_int_equal(guest_mem_find_block(&gm, 130, 150, false), 150);
        assert_int_equal(guest_mem_find_block(&gm, 200, 1000, true), 256);
        assert_int_equal(guest_mem_find_block(&gm, 300, 400, false), 256);
        assert_int_equal(guest_mem_find_block(&gm, 5, 5, false), 5);
        guest_mem_release(&gm);
}

static void hotplug_next_ram(void **state)
{
        struct guest_mem gm;
        uint64_t s, e;

        hotplug_init(&gm);
        assert_int_equal(guest_mem_plug(&gm, 3, 2), 0);
        assert_int_equal(guest_mem_plug(&gm, 6, 1), 0);
        /* Boot RAM first, then each run of plugged blocks; unplugged blocks are skipped. */
        assert_true(guest_mem_next_ram(&gm, 0, UINT64_MAX & ~4095ULL, &s, &e));
        assert_int_equal(s, 0);
        assert_int_equal(e, 64 * MB);
        assert_true(guest_mem_next_ram(&gm, 64 * MB, UINT64_MAX & ~4095ULL, &s, &e));
        assert_int_equal(s, hp_gpa(3));
        assert_int_equal(e, hp_gpa(5));
        assert_true(guest_mem_next_ram(&gm, hp_gpa(5), hp_gpa(100), &s, &e));
        assert_int_equal(s, hp_gpa(6));
        assert_int_equal(e, hp_gpa(7));
        assert_false(guest_mem_next_ram(&gm, hp_gpa(7), hp_gpa(100), &s, &e));
        /* Clipped to what was asked, also inside a block. */
        assert_true(guest_mem_next_ram(&gm, hp_gpa(4) - 8192, hp_gpa(4) + 4096, &s, &e));
        assert_int_equal(s, hp_gpa(4) - 8192);
        assert_int_equal(e, hp_gpa(4) + 4096);
        assert_false(guest_mem_next_ram(&gm, hp_gpa(5), hp_gpa(6), &s, &e));
        guest_mem_release(&gm);
}

static void hotplug_discard(void **state)
{
        struct guest_mem gm;
        uint8_t *p;

        hotplug_init(&gm);
        assert_int_equal(guest_mem_plug(&gm, 0, 8), 0);
        p = guest_mem_ptr(&gm, HP_GPA, 8 * HP_BLOCK);
        memset(p, 0xab, 8 * HP_BLOCK);
        assert_true(memfd_blocks(&gm) >= 16 * MB);
        /* Hot-plugged memory lives in the same memfd, after boot RAM. */
        assert_int_equal(gm.base[64 * MB], 0xab);
        assert_int_equal(guest_mem_discard(&gm, HP_GPA, 8 * HP_BLOCK), 0);
        assert_true(memfd_blocks(&gm) <= 64 * 1024);
        assert_int_equal(p[0], 0);
        assert_int_equal(guest_mem_discard(&gm, HP_GPA + HP_SIZE - HP_BLOCK, 2 * HP_BLOCK),
                         -EINVAL);
        guest_mem_release(&gm);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(layout_small),
                cmocka_unit_test(layout_split_around_hole),
                cmocka_unit_test(ptr_bounds),
                cmocka_unit_test(discard_frees_and_zeroes),
                cmocka_unit_test(discard_hook_sees_boot_ram),
                cmocka_unit_test(bad_init),
                cmocka_unit_test(hotplug_plan_errors),
                cmocka_unit_test(hotplug_layout),
                cmocka_unit_test(hotplug_plug_unplug),
                cmocka_unit_test(hotplug_find_block),
                cmocka_unit_test(hotplug_next_ram),
                cmocka_unit_test(hotplug_discard),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
