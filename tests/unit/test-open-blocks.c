/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The open-block table: whole 2 MiB blocks go out at once, partial ones only when flushed (as
 * runs, in address order) or evicted (the oldest, when the table is full); forgotten pages
 * never go out; duplicates and made-up ranges change nothing they should not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tidal/macro.h"
#include "virtio-balloon/open-blocks.h"

#define PG    4096ull
#define BLOCK OPEN_BLOCK_SIZE

struct collected {
        size_t nr;
        uint64_t bytes;
        struct pfn_range r[OPEN_BLOCK_PAGES + 8];
};

static void collect(void *opaque, uint64_t gpa, uint64_t len)
{
        struct collected *c = opaque;

        c->bytes += len;
        if (c->nr < ARRAY_SIZE(c->r))
                c->r[c->nr] = (struct pfn_range){gpa, len};
        c->nr++;
}

static int setup(void **state)
{
        *state = calloc(1, sizeof(struct open_blocks));
        return *state ? 0 : -1;
}

static int teardown(void **state)
{
        free(*state);
        return 0;
}

static void assert_range(const struct collected *c, size_t i, uint64_t gpa, uint64_t len)
{
        assert_true(i < c->nr);
        assert_int_equal(c->r[i].gpa, gpa);
        assert_int_equal(c->r[i].len, len);
}

static void test_whole_block_at_once(void **state)
{
        struct open_blocks *t = *state;
        struct collected c = {0};

        /* Two whole blocks and a page past them: the blocks go out, the page is held. */
        open_blocks_add(t, 2 * BLOCK, 2 * BLOCK + PG, collect, &c);
        assert_int_equal(c.nr, 2);
        assert_range(&c, 0, 2 * BLOCK, BLOCK);
        assert_range(&c, 1, 3 * BLOCK, BLOCK);
        assert_int_equal(t->nr, 1);
        assert_int_equal(t->pending_pages, 1);
}

static void test_completed_over_several_adds(void **state)
{
        struct open_blocks *t = *state;
        struct collected c = {0};

        /* Scattered, as the guest hands them over: nothing goes out until the last page. */
        for (unsigned i = 0; i < OPEN_BLOCK_PAGES; i += 2)
                open_blocks_add(t, BLOCK + i * PG, PG, collect, &c);
        for (unsigned i = OPEN_BLOCK_PAGES - 1; i > 1; i -= 2)
                open_blocks_add(t, BLOCK + i * PG, PG, collect, &c);
        assert_int_equal(c.nr, 0);
        assert_int_equal(t->pending_pages, OPEN_BLOCK_PAGES - 1);
        open_blocks_add(t, BLOCK + PG, PG, collect, &c);
        assert_int_equal(c.nr, 1);
        assert_range(&c, 0, BLOCK, BLOCK);
        assert_int_equal(t->nr, 0);
        assert_int_equal(t->pending_pages, 0);
        assert_int_equal(t->late_pages, 0);
}

static void test_flush_runs_in_order(void **state)
{
        struct open_blocks *t = *state;
        struct collected c = {0};

        /* Added high block first, and across a block boundary: flushed low to high. */
        open_blocks_add(t, 5 * BLOCK + 7 * PG, PG, collect, &c);
        open_blocks_add(t, 2 * BLOCK - 2 * PG, 4 * PG, collect, &c); /* blocks 1 and 2 */
        open_blocks_add(t, BLOCK, 3 * PG, collect, &c);
        open_blocks_add(t, BLOCK + 5 * PG, PG, collect, &c);
        assert_int_equal(c.nr, 0);
        assert_int_equal(t->nr, 3);
        open_blocks_flush(t, collect, &c);
        assert_int_equal(c.nr, 5);
        assert_range(&c, 0, BLOCK, 3 * PG);
        assert_range(&c, 1, BLOCK + 5 * PG, PG);
        assert_range(&c, 2, 2 * BLOCK - 2 * PG, 2 * PG);
        assert_range(&c, 3, 2 * BLOCK, 2 * PG);
        assert_range(&c, 4, 5 * BLOCK + 7 * PG, PG);
        assert_int_equal(t->nr, 0);
        assert_int_equal(t->pending_pages, 0);
        assert_int_equal(t->late_pages, 9);

        /* An empty table flushes nothing. */
        open_blocks_flush(t, collect, &c);
        assert_int_equal(c.nr, 5);
}

static void test_duplicates(void **state)
{
        struct open_blocks *t = *state;
        struct collected c = {0};

        open_blocks_add(t, BLOCK, 100 * PG, collect, &c);
        open_blocks_add(t, BLOCK, 100 * PG, collect, &c);
        open_blocks_add(t, BLOCK + 50 * PG, 100 * PG, collect, &c);
        assert_int_equal(t->pending_pages, 150);
        assert_int_equal(t->slots[0].nr_set, 150);
        open_blocks_flush(t, collect, &c);
        assert_int_equal(c.nr, 1);
        assert_int_equal(c.bytes, 150 * PG);
        /* A zero-length add is nothing. */
        open_blocks_add(t, BLOCK, 0, collect, &c);
        assert_int_equal(t->nr, 0);
}

static void test_forget(void **state)
{
        struct open_blocks *t = *state;
        struct collected c = {0};

        open_blocks_add(t, BLOCK, 10 * PG, collect, &c);
        open_blocks_add(t, 3 * BLOCK, 10 * PG, collect, &c);
        /* Deflated: pages 2-3 of block 1 leave; a block left empty is dropped. */
        open_blocks_forget(t, BLOCK + 2 * PG, 2 * PG);
        open_blocks_forget(t, 3 * BLOCK, 10 * PG);
        assert_int_equal(t->nr, 1);
        assert_int_equal(t->pending_pages, 8);
        /* Pages not held, and ranges the guest made up: nothing happens, nothing wraps. */
        open_blocks_forget(t, 7 * BLOCK, PG);
        open_blocks_forget(t, UINT64_MAX - PG + 1, UINT64_MAX);
        open_blocks_forget(t, BLOCK, 0);
        assert_int_equal(t->pending_pages, 8);
        open_blocks_flush(t, collect, &c);
        assert_int_equal(c.nr, 2);
        assert_range(&c, 0, BLOCK, 2 * PG);
        assert_range(&c, 1, BLOCK + 4 * PG, 6 * PG);
}

static void test_forget_wide(void **state)
{
        struct open_blocks *t = *state;
        struct collected c = {0};

        /* A reported range over many blocks walks the table instead of looking each up. */
        for (unsigned i = 0; i < 20; i++)
                open_blocks_add(t, i * BLOCK + 3 * PG, PG, collect, &c);
        open_blocks_forget(t, 4 * BLOCK, 10 * BLOCK);
        assert_int_equal(t->nr, 10);
        open_blocks_forget(t, 0, UINT64_MAX);
        assert_int_equal(t->nr, 0);
        assert_int_equal(t->pending_pages, 0);
        open_blocks_flush(t, collect, &c);
        assert_int_equal(c.nr, 0);
}

static void test_eviction(void **state)
{
        struct open_blocks *t = *state;
        struct collected c = {0};

        /* One page in each of OPEN_BLOCKS_MAX blocks: all held. */
        for (unsigned i = 0; i < OPEN_BLOCKS_MAX; i++)
                open_blocks_add(t, (uint64_t)(i + 1) * BLOCK + i % 512 * PG, PG, collect, &c);
        assert_int_equal(t->nr, OPEN_BLOCKS_MAX);
        assert_int_equal(c.nr, 0);
        /* Adding to a held block evicts nothing; its age is when it was opened. */
        open_blocks_add(t, BLOCK + 100 * PG, PG, collect, &c);
        assert_int_equal(c.nr, 0);
        /* A new block: the oldest (block 1) goes out as its runs. */
        open_blocks_add(t, 5000 * BLOCK, PG, collect, &c);
        assert_int_equal(c.nr, 2);
        assert_range(&c, 0, BLOCK, PG);
        assert_range(&c, 1, BLOCK + 100 * PG, PG);
        assert_int_equal(t->evictions, 1);
        assert_int_equal(t->nr, OPEN_BLOCKS_MAX);
        /* And the next oldest next time. */
        open_blocks_add(t, 5001 * BLOCK, PG, collect, &c);
        assert_int_equal(c.nr, 3);
        assert_range(&c, 2, 2 * BLOCK + PG, PG);
        assert_int_equal(t->late_pages, 3);
        assert_int_equal(t->pending_pages, OPEN_BLOCKS_MAX);
        /* A block completed while the table is full goes out whole, without an eviction. */
        open_blocks_add(t, 3 * BLOCK, BLOCK, collect, &c);
        assert_int_equal(c.nr, 4);
        assert_range(&c, 3, 3 * BLOCK, BLOCK);
        assert_int_equal(t->evictions, 2);
        assert_int_equal(t->nr, OPEN_BLOCKS_MAX - 1);
        open_blocks_flush(t, collect, &c);
        assert_int_equal(t->pending_pages, 0);
        assert_int_equal(c.bytes, (3 + OPEN_BLOCKS_MAX - 1) * PG + BLOCK);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_whole_block_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_completed_over_several_adds, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flush_runs_in_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
                cmocka_unit_test_setup_teardown(test_forget, setup, teardown),
                cmocka_unit_test_setup_teardown(test_forget_wide, setup, teardown),
                cmocka_unit_test_setup_teardown(test_eviction, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
