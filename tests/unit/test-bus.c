/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/bus.h"

struct recorder {
        uint64_t offset;
        uint32_t len;
        bool is_write;
        int calls;
        uint8_t fill;
};

static void record(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
        struct recorder *r = opaque;

        r->offset = offset;
        r->len = len;
        r->is_write = is_write;
        r->calls++;
        if (!is_write)
                memset(data, r->fill, len);
}

static void dispatch_by_range(void **state)
{
        struct recorder a = {.fill = 0xaa}, b = {.fill = 0xbb};
        struct bus bus;
        uint8_t data[4];

        bus_init(&bus, "test");
        assert_int_equal(bus_register(&bus, 0x100, 0x10, record, &a), 0);
        assert_int_equal(bus_register(&bus, 0x3f8, 8, record, &b), 0);
        assert_int_equal(bus_access(&bus, 0x3fd, data, 1, false), 0);
        assert_int_equal(b.offset, 5);
        assert_int_equal(data[0], 0xbb);
        assert_int_equal(bus_access(&bus, 0x10c, data, 4, true), 0);
        assert_int_equal(a.offset, 0xc);
        assert_true(a.is_write);
        /* Unclaimed: reads see all ones, nothing is called. */
        assert_int_equal(bus_access(&bus, 0x200, data, 2, false), -ENOENT);
        assert_int_equal(data[0], 0xff);
        assert_int_equal(data[1], 0xff);
        /* Straddling the end of a range is not the device's. */
        assert_int_equal(bus_access(&bus, 0x10e, data, 4, false), -ENOENT);
        assert_int_equal(a.calls, 1);
        bus_destroy(&bus);
}

static void overlap_and_unregister(void **state)
{
        struct recorder a = {0}, b = {0};
        struct bus bus;
        uint8_t data[1];

        bus_init(&bus, "test");
        assert_int_equal(bus_register(&bus, 0x1000, 0x1000, record, &a), 0);
        assert_int_equal(bus_register(&bus, 0x1fff, 2, record, &b), -EEXIST);
        assert_int_equal(bus_register(&bus, 0xfff, 2, record, &b), -EEXIST);
        assert_int_equal(bus_register(&bus, 0, 0, record, &b), -EINVAL);
        assert_int_equal(bus_register(&bus, UINT64_MAX - 1, 4, record, &b), -EINVAL);
        assert_int_equal(bus_unregister(&bus, 0x1000, &b), -ENOENT);
        assert_int_equal(bus_unregister(&bus, 0x1000, &a), 0);
        assert_int_equal(bus_access(&bus, 0x1000, data, 1, true), -ENOENT);
        /* The freed range can be taken by someone else (a moved BAR). */
        assert_int_equal(bus_register(&bus, 0x1800, 0x100, record, &b), 0);
        assert_int_equal(bus_access(&bus, 0x1801, data, 1, true), 0);
        assert_int_equal(b.calls, 1);
        bus_destroy(&bus);
}

static void many_ranges_sorted(void **state)
{
        struct recorder r[BUS_MAX_RANGES];
        struct bus bus;
        uint8_t data[1];

        bus_init(&bus, "test");
        /* Registered in reverse order; lookups must still find each one. */
        for (int i = BUS_MAX_RANGES - 1; i >= 0; i--) {
                r[i] = (struct recorder){0};
                assert_int_equal(bus_register(&bus, (uint64_t)i * 0x100, 0x80, record, &r[i]), 0);
        }
        assert_int_equal(bus_register(&bus, 0x100000, 1, record, &r[0]), -ENOSPC);
        for (int i = 0; i < BUS_MAX_RANGES; i++) {
                assert_int_equal(bus_access(&bus, (uint64_t)i * 0x100 + 0x7f, data, 1, false), 0);
                assert_int_equal(r[i].calls, 1);
                assert_int_equal(bus_access(&bus, (uint64_t)i * 0x100 + 0x80, data, 1, false),
                                 -ENOENT);
        }
        bus_destroy(&bus);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(dispatch_by_range),
                cmocka_unit_test(overlap_and_unregister),
                cmocka_unit_test(many_ranges_sorted),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
