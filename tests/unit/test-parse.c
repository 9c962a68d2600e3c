/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tidal/parse.h"

static void sizes_with_suffixes(void **state)
{
        uint64_t v;

        assert_int_equal(parse_size("4096", &v), 0);
        assert_int_equal(v, 4096);
        assert_int_equal(parse_size("64k", &v), 0);
        assert_int_equal(v, 64 << 10);
        assert_int_equal(parse_size("512M", &v), 0);
        assert_int_equal(v, 512ULL << 20);
        assert_int_equal(parse_size("2G", &v), 0);
        assert_int_equal(v, 2ULL << 30);
        assert_int_equal(parse_size("1GiB", &v), 0);
        assert_int_equal(v, 1ULL << 30);
        assert_int_equal(parse_size("1.5G", &v), 0);
        assert_int_equal(v, 3ULL << 29);
        assert_int_equal(parse_size("1T", &v), 0);
        assert_int_equal(v, 1ULL << 40);
}

static void sizes_rejected(void **state)
{
        const char *bad[] = {"", "M", "-1G", "1X", "1.G", "1GG", " 1G", "1G ", "0x10", NULL};
        uint64_t v;

        for (int i = 0; bad[i]; i++)
                assert_int_equal(parse_size(bad[i], &v), -EINVAL);
        assert_int_equal(parse_size("99999999999999999999", &v), -ERANGE);
        assert_int_equal(parse_size("17179869184G", &v), -ERANGE);
        assert_int_equal(parse_size(NULL, &v), -EINVAL);
}

static void uints(void **state)
{
        uint64_t v;

        assert_int_equal(parse_uint("7", 1, 10, &v), 0);
        assert_int_equal(v, 7);
        assert_int_equal(parse_uint("0", 1, 10, &v), -ERANGE);
        assert_int_equal(parse_uint("11", 1, 10, &v), -ERANGE);
        assert_int_equal(parse_uint("1a", 1, 10, &v), -EINVAL);
        assert_int_equal(parse_uint("", 1, 10, &v), -EINVAL);
        assert_int_equal(parse_uint("+1", 1, 10, &v), -EINVAL);
}

static void formatting(void **state)
{
        char buf[32];

        assert_string_equal(format_size(512ULL << 20, buf, sizeof(buf)), "512 MiB");
        assert_string_equal(format_size(3ULL << 29, buf, sizeof(buf)), "1.5 GiB");
        assert_string_equal(format_size(100, buf, sizeof(buf)), "100 B");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(sizes_with_suffixes),
                cmocka_unit_test(sizes_rejected),
                cmocka_unit_test(uints),
                cmocka_unit_test(formatting),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
