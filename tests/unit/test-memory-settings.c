/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tidal/memory-settings.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

static char err[256];

static struct mem_settings dynamic(uint64_t startup, uint64_t minimum, uint64_t maximum)
{
        return (struct mem_settings){true, startup, minimum, maximum, 20, 5000};
}

static void check_accepts_good_settings(void **state)
{
        struct mem_settings s = dynamic(1 * GiB, 512 * MiB, 8 * GiB);

        assert_int_equal(mem_settings_check(&s, err, sizeof(err)), 0);
        s = dynamic(32 * MiB, 32 * MiB, 32 * MiB);
        assert_int_equal(mem_settings_check(&s, err, sizeof(err)), 0);
        mem_settings_static(&s, 1 * GiB);
        assert_int_equal(mem_settings_check(&s, err, sizeof(err)), 0);
        assert_false(s.dynamic);
        assert_int_equal(s.minimum, 1 * GiB);
        assert_int_equal(s.maximum, 1 * GiB);
}

static void expect_check_error(struct mem_settings s, const char *msg)
{
        err[0] = '\0';
        assert_int_equal(mem_settings_check(&s, err, sizeof(err)), -EINVAL);
        if (!strstr(err, msg))
                fail_msg("expected \"%s\" in \"%s\"", msg, err);
}

static void check_names_what_is_wrong(void **state)
{
        struct mem_settings s;

        expect_check_error(dynamic(1 * GiB, 16 * MiB, 2 * GiB), "below the smallest, 32 MiB");
        expect_check_error(dynamic(1 * GiB, 2 * GiB, 2 * GiB), "minimum 2 GiB is above startup");
        expect_check_error(dynamic(1 * GiB, 512 * MiB, 768 * MiB), "maximum 768 MiB is below");
        expect_check_error(dynamic(1 * GiB, 512 * MiB, 2 * GiB + 1), "not a multiple of 2 MiB");
        expect_check_error(dynamic(1 * GiB, 512 * MiB, 2ULL << 40), "above the largest, 1 TiB");
        s = dynamic(1 * GiB, 512 * MiB, 2 * GiB);
        s.buffer = 4;
        expect_check_error(s, "buffer 4% is outside 5-2000%");
        s.buffer = 2001;
        expect_check_error(s, "buffer 2001%");
        s.buffer = 2000;
        s.weight = 10001;
        expect_check_error(s, "weight 10001 is above 10000");
        s.weight = 0;
        assert_int_equal(mem_settings_check(&s, err, sizeof(err)), 0);
        mem_settings_static(&s, 1 * GiB);
        s.maximum = 2 * GiB;
        expect_check_error(s, "static memory");
}

static int change(const struct mem_settings *cur, struct mem_settings req, unsigned which,
                  bool running, struct mem_settings *out)
{
        err[0] = '\0';
        return mem_settings_change(cur, &req, which, running, out, err, sizeof(err));
}

static void runtime_rules(void **state)
{
        const struct mem_settings cur = dynamic(1 * GiB, 512 * MiB, 4 * GiB);
        struct mem_settings req = cur, out = {0};

        /* Minimum may go down, maximum up; buffer and weight freely. */
        req.minimum = 256 * MiB;
        req.maximum = 8 * GiB;
        req.buffer = 50;
        req.weight = 100;
        assert_int_equal(change(&cur, req,
                                MEM_SET_MINIMUM | MEM_SET_MAXIMUM | MEM_SET_BUFFER | MEM_SET_WEIGHT,
                                true, &out),
                         0);
        assert_int_equal(out.minimum, 256 * MiB);
        assert_int_equal(out.maximum, 8 * GiB);
        assert_int_equal(out.buffer, 50);
        assert_int_equal(out.weight, 100);
        assert_int_equal(out.startup, 1 * GiB);

        /* The reverse is refused, naming the rule, and leaves the output alone. */
        out = (struct mem_settings){0};
        req = cur;
        req.minimum = 768 * MiB;
        assert_int_equal(change(&cur, req, MEM_SET_MINIMUM, true, &out), -EPERM);
        assert_non_null(strstr(err, "minimum can only be lowered while the VM runs"));
        assert_int_equal(out.startup, 0);
        req = cur;
        req.maximum = 2 * GiB;
        assert_int_equal(change(&cur, req, MEM_SET_MAXIMUM, true, &out), -EPERM);
        assert_non_null(strstr(err, "maximum can only be raised while the VM runs"));
        req = cur;
        req.startup = 2 * GiB;
        assert_int_equal(change(&cur, req, MEM_SET_STARTUP, true, &out), -EPERM);
        assert_non_null(strstr(err, "startup can only be changed while the VM is off"));
        req = cur;
        req.dynamic = false;
        assert_int_equal(change(&cur, req, MEM_SET_DYNAMIC, true, &out), -EPERM);
        assert_non_null(strstr(err, "turned off while the VM is off"));

        /* Unchanged values pass, so a client may send the whole set back. */
        assert_int_equal(
                change(&cur, cur,
                       MEM_SET_STARTUP | MEM_SET_DYNAMIC | MEM_SET_MINIMUM | MEM_SET_MAXIMUM, true,
                       &out),
                0);

        /* Lowering minimum still obeys the limits; a change to an unnamed field is ignored. */
        req = cur;
        req.minimum = 16 * MiB;
        assert_int_equal(change(&cur, req, MEM_SET_MINIMUM, true, &out), -EINVAL);
        assert_non_null(strstr(err, "below the smallest"));
        req = cur;
        req.maximum = 1;
        assert_int_equal(change(&cur, req, MEM_SET_BUFFER, true, &out), 0);
        assert_int_equal(out.maximum, 4 * GiB);
}

static void changes_while_off(void **state)
{
        const struct mem_settings cur = dynamic(1 * GiB, 512 * MiB, 4 * GiB);
        struct mem_settings req = cur, out;

        req.startup = 2 * GiB;
        req.minimum = 1 * GiB;
        assert_int_equal(change(&cur, req, MEM_SET_STARTUP | MEM_SET_MINIMUM, false, &out), 0);
        assert_int_equal(out.startup, 2 * GiB);
        assert_int_equal(out.minimum, 1 * GiB);
        req.dynamic = false;
        assert_int_equal(change(&cur, req, MEM_SET_DYNAMIC, false, &out), 0);
        assert_false(out.dynamic);
        assert_int_equal(out.minimum, 1 * GiB);
        assert_int_equal(out.maximum, 1 * GiB);

        /* Static memory at runtime: minimum and maximum do not exist. */
        mem_settings_static(&req, 1 * GiB);
        assert_int_equal(change(&req, cur, MEM_SET_MINIMUM, true, &out), -EPERM);
        assert_non_null(strstr(err, "static memory"));
}

static void buffer_and_status(void **state)
{
        /* The example: 1000 MiB demand at 20 % -> 1200 MiB. */
        assert_int_equal(mem_with_buffer(1000 * MiB, 20), 1200 * MiB);
        assert_int_equal(mem_with_buffer(0, 2000), 0);
        assert_int_equal(mem_with_buffer(UINT64_MAX / 2, 2000), UINT64_MAX);

        assert_int_equal(mem_status_of(1200 * MiB, 1000 * MiB, 20), MEM_STATUS_OK);
        assert_int_equal(mem_status_of(1199 * MiB, 1000 * MiB, 20), MEM_STATUS_LOW);
        assert_int_equal(mem_status_of(1000 * MiB, 1000 * MiB, 20), MEM_STATUS_LOW);
        assert_int_equal(mem_status_of(999 * MiB, 1000 * MiB, 20), MEM_STATUS_WARNING);
        assert_string_equal(mem_status_name(MEM_STATUS_OK), "OK");
        assert_string_equal(mem_status_name(MEM_STATUS_LOW), "Low");
        assert_string_equal(mem_status_name(MEM_STATUS_WARNING), "Warning");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(check_accepts_good_settings),
                cmocka_unit_test(check_names_what_is_wrong),
                cmocka_unit_test(runtime_rules),
                cmocka_unit_test(changes_while_off),
                cmocka_unit_test(buffer_and_status),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
