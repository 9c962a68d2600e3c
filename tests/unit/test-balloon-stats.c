/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The balloon statistics parser: every tag Linux sends, unknown tags, bad lengths. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "virtio-balloon/stats.h"

/* Writes a packed little-endian { le16 tag; le64 val; } entry, as the driver lays it out. */
static void put_entry(uint8_t *p, uint16_t tag, uint64_t val)
{
        for (unsigned i = 0; i < 2; i++)
                p[i] = tag >> (8 * i);
        for (unsigned i = 0; i < 8; i++)
                p[2 + i] = val >> (8 * i);
}

static void test_every_tag(void **state)
{
        uint8_t buf[BALLOON_STAT_NR * BALLOON_STAT_ENTRY_SIZE];
        struct balloon_stats st;

        /* Values with every byte distinct catch a swapped or misaligned read. */
        for (unsigned t = 0; t < BALLOON_STAT_NR; t++)
                put_entry(buf + t * BALLOON_STAT_ENTRY_SIZE, t, 0x0102030405060700ull + t);
        assert_int_equal(balloon_stats_parse(buf, sizeof(buf), &st), 0);
        assert_int_equal(st.present, 0xffff);
        assert_int_equal(st.nr_unknown, 0);
        for (unsigned t = 0; t < BALLOON_STAT_NR; t++) {
                assert_int_equal(st.val[t], 0x0102030405060700ull + t);
                assert_non_null(balloon_stat_name(t));
        }
        assert_string_equal(balloon_stat_name(BALLOON_STAT_AVAIL), "available-memory");
        assert_string_equal(balloon_stat_name(BALLOON_STAT_DIRECT_RECLAIM), "direct-reclaims");
        assert_null(balloon_stat_name(BALLOON_STAT_NR));
}

static void test_subset_and_repeat(void **state)
{
        uint8_t buf[3 * BALLOON_STAT_ENTRY_SIZE];
        struct balloon_stats st;

        put_entry(buf, BALLOON_STAT_MEMFREE, 100);
        put_entry(buf + 10, BALLOON_STAT_MEMTOT, UINT64_MAX);
        put_entry(buf + 20, BALLOON_STAT_MEMFREE, 200); /* the last one wins */
        assert_int_equal(balloon_stats_parse(buf, sizeof(buf), &st), 0);
        assert_int_equal(st.present, (1u << BALLOON_STAT_MEMFREE) | (1u << BALLOON_STAT_MEMTOT));
        assert_int_equal(st.val[BALLOON_STAT_MEMFREE], 200);
        assert_int_equal(st.val[BALLOON_STAT_MEMTOT], UINT64_MAX);
        assert_int_equal(st.val[BALLOON_STAT_SWAP_IN], 0);
}

static void test_unknown_tags(void **state)
{
        uint8_t buf[4 * BALLOON_STAT_ENTRY_SIZE];
        struct balloon_stats st;

        put_entry(buf, 16, 1); /* newer kernels' tags (dirty, writeback, ...) */
        put_entry(buf + 10, BALLOON_STAT_AVAIL, 4096);
        put_entry(buf + 20, 0xffff, 2);
        put_entry(buf + 30, 0x100 | BALLOON_STAT_CACHES, 3); /* not 7: no truncation to u8 */
        assert_int_equal(balloon_stats_parse(buf, sizeof(buf), &st), 0);
        assert_int_equal(st.present, 1u << BALLOON_STAT_AVAIL);
        assert_int_equal(st.val[BALLOON_STAT_AVAIL], 4096);
        assert_int_equal(st.val[BALLOON_STAT_CACHES], 0);
        assert_int_equal(st.nr_unknown, 3);
}

static void test_truncated(void **state)
{
        uint8_t buf[2 * BALLOON_STAT_ENTRY_SIZE];
        struct balloon_stats st = {.present = 0xdead};

        put_entry(buf, BALLOON_STAT_MEMFREE, 1);
        put_entry(buf + 10, BALLOON_STAT_MEMTOT, 2);
        for (size_t len = 1; len < sizeof(buf); len++) {
                if (len == BALLOON_STAT_ENTRY_SIZE)
                        continue;
                assert_int_equal(balloon_stats_parse(buf, len, &st), -EBADMSG);
                assert_int_equal(st.present, 0xdead); /* untouched on error */
        }
}

static void test_empty(void **state)
{
        struct balloon_stats st = {.present = 1, .val = {5}};

        assert_int_equal(balloon_stats_parse(NULL, 0, &st), 0);
        assert_int_equal(st.present, 0);
        assert_int_equal(st.val[0], 0);
}

static void test_oversized(void **state)
{
        static uint8_t buf[BALLOON_STATS_MAX_BYTES + BALLOON_STAT_ENTRY_SIZE];
        struct balloon_stats st;

        for (unsigned i = 0; i < BALLOON_STATS_MAX_ENTRIES + 1; i++)
                put_entry(buf + i * BALLOON_STAT_ENTRY_SIZE, i % BALLOON_STAT_NR, i);
        /* Exactly at the bound: accepted. One entry more: refused. */
        assert_int_equal(balloon_stats_parse(buf, BALLOON_STATS_MAX_BYTES, &st), 0);
        assert_int_equal(st.present, 0xffff);
        assert_int_equal(balloon_stats_parse(buf, sizeof(buf), &st), -EMSGSIZE);
        assert_int_equal(balloon_stats_parse(buf, SIZE_MAX, &st), -EMSGSIZE);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_tag),    cmocka_unit_test(test_subset_and_repeat),
                cmocka_unit_test(test_unknown_tags), cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_empty),        cmocka_unit_test(test_oversized),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
