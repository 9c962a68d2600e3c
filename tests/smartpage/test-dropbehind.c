/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The drop-behind stack on its own: the lag, newest-first order, forgetting when full. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "smartpage/dropbehind.h"

static void lag_then_newest_first(void **state)
{
        struct dropbehind db;
        uint64_t page;

        assert_int_equal(dropbehind_init(&db, 3, 100), 0);
        for (uint64_t p = 10; p < 13; p++)
                dropbehind_push(&db, p);
        /* Three pages pushed, all within the lag: nothing to drop yet. */
        assert_false(dropbehind_pop(&db, &page));
        for (uint64_t p = 13; p < 20; p++)
                dropbehind_push(&db, p);
        /* 17, 18, 19 are the lag; the stream passed 10..16, most recently 16. */
        for (uint64_t want = 16; want >= 10; want--) {
                assert_true(dropbehind_pop(&db, &page));
                assert_int_equal(page, want);
        }
        assert_false(dropbehind_pop(&db, &page));
        dropbehind_done(&db);
}

static void full_stack_forgets_oldest(void **state)
{
        struct dropbehind db;
        uint64_t page;

        assert_int_equal(dropbehind_init(&db, 0, 4), 0);
        for (uint64_t p = 0; p < 10; p++)
                dropbehind_push(&db, p);
        for (uint64_t want = 9; want >= 6; want--) {
                assert_true(dropbehind_pop(&db, &page));
                assert_int_equal(page, want);
        }
        assert_false(dropbehind_pop(&db, &page));
        /* Emptied, it fills again from the start of its ring. */
        dropbehind_push(&db, 42);
        assert_true(dropbehind_pop(&db, &page));
        assert_int_equal(page, 42);
        dropbehind_done(&db);
}

static void interleaved(void **state)
{
        struct dropbehind db;
        uint64_t page;

        assert_int_equal(dropbehind_init(&db, 1, 8), 0);
        dropbehind_push(&db, 1);
        dropbehind_push(&db, 2);
        assert_true(dropbehind_pop(&db, &page));
        assert_int_equal(page, 1);
        dropbehind_push(&db, 3);
        dropbehind_push(&db, 4);
        assert_true(dropbehind_pop(&db, &page));
        assert_int_equal(page, 3);
        assert_true(dropbehind_pop(&db, &page));
        assert_int_equal(page, 2);
        assert_false(dropbehind_pop(&db, &page));
        dropbehind_done(&db);
}

static void bad_depth(void **state)
{
        struct dropbehind db;

        assert_int_equal(dropbehind_init(&db, 4, 0), -EINVAL);
        dropbehind_done(&db);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(lag_then_newest_first),
                cmocka_unit_test(full_stack_forgets_oldest),
                cmocka_unit_test(interleaved),
                cmocka_unit_test(bad_depth),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
