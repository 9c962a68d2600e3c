/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The tidald wire codec: every message survives a round trip; bad input is refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tidal/memctl-proto.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

static char err[256];

static struct mem_settings settings(void)
{
        return (struct mem_settings){true, 1 * GiB, 512 * MiB, 8 * GiB, 20, 5000};
}

/* Formats m, checks it is one line, parses it back and compares every byte. */
static void round_trip(const struct memctl_msg *m)
{
        struct memctl_msg back;
        char *line = NULL;
        size_t len;

        assert_int_equal(memctl_msg_format(m, &line), 0);
        len = strlen(line);
        assert_true(len > 0 && line[len - 1] == '\n');
        assert_null(memchr(line, '\n', len - 1));
        memset(&back, 0xa5, sizeof(back));
        assert_int_equal(memctl_msg_parse(line, len - 1, &back, err, sizeof(err)), 0);
        assert_int_equal(back.type, m->type);
        free(line);

        /* Compare through a second formatting: unions carry padding we must not compare. */
        assert_int_equal(memctl_msg_format(&back, &line), 0);
        {
                char *again = NULL;

                assert_int_equal(memctl_msg_format(m, &again), 0);
                assert_string_equal(line, again);
                free(again);
        }
        free(line);
}

static void register_round_trip(void **state)
{
        struct memctl_msg m = {.type = MEMCTL_REGISTER}, back;
        char *line = NULL;

        strcpy(m.reg.name, "vm-1.test_A");
        strcpy(m.reg.uuid, "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0");
        m.reg.settings = settings();
        round_trip(&m);

        m.reg.running = true;
        m.reg.assigned = 1536 * MiB;
        m.reg.grant = 2 * GiB;
        m.reg.settings.weight = 0;
        m.reg.settings.buffer = 2000;
        m.reg.uuid[0] = '\0';
        round_trip(&m);

        assert_int_equal(memctl_msg_format(&m, &line), 0);
        assert_int_equal(memctl_msg_parse(line, strlen(line) - 1, &back, err, sizeof(err)), 0);
        free(line);
        assert_string_equal(back.reg.name, "vm-1.test_A");
        assert_string_equal(back.reg.uuid, "");
        assert_true(back.reg.running);
        assert_int_equal(back.reg.assigned, 1536 * MiB);
        assert_int_equal(back.reg.grant, 2 * GiB);
        assert_true(back.reg.settings.dynamic);
        assert_int_equal(back.reg.settings.startup, 1 * GiB);
        assert_int_equal(back.reg.settings.minimum, 512 * MiB);
        assert_int_equal(back.reg.settings.maximum, 8 * GiB);
        assert_int_equal(back.reg.settings.buffer, 2000);
        assert_int_equal(back.reg.settings.weight, 0);
}

static void report_round_trip(void **state)
{
        struct memctl_msg m = {.type = MEMCTL_REPORT}, back;
        char *line = NULL;

        m.report.assigned = 3 * GiB;
        round_trip(&m); /* no demand yet: null */
        m.report.have_demand = true;
        m.report.demand = 2 * GiB + 12345;
        m.report.fresh = true;
        m.report.pressure = 0x11;
        m.report.status = MEM_STATUS_WARNING;
        m.report.balloon = 64 * MiB;
        m.report.vmem_plugged = 2 * GiB;
        m.report.unplugging = 128 * MiB;
        m.report.paging = (struct memctl_paging){true, 1 * GiB, 7, 9, 1500};
        round_trip(&m);

        assert_int_equal(memctl_msg_format(&m, &line), 0);
        assert_int_equal(memctl_msg_parse(line, strlen(line) - 1, &back, err, sizeof(err)), 0);
        free(line);
        assert_true(back.report.have_demand);
        assert_int_equal(back.report.demand, 2 * GiB + 12345);
        assert_true(back.report.fresh);
        assert_int_equal(back.report.pressure, 0x11);
        assert_int_equal(back.report.status, MEM_STATUS_WARNING);
        assert_int_equal(back.report.balloon, 64 * MiB);
        assert_int_equal(back.report.vmem_plugged, 2 * GiB);
        assert_int_equal(back.report.unplugging, 128 * MiB);
        assert_true(back.report.paging.active);
        assert_int_equal(back.report.paging.file_bytes, 1 * GiB);
        assert_int_equal(back.report.paging.pages_in, 7);
        assert_int_equal(back.report.paging.pages_out, 9);
        assert_int_equal(back.report.paging.active_ms, 1500);

        m.report.have_demand = false;
        assert_int_equal(memctl_msg_format(&m, &line), 0);
        assert_non_null(strstr(line, "\"demand_bytes\":null"));
        assert_int_equal(memctl_msg_parse(line, strlen(line) - 1, &back, err, sizeof(err)), 0);
        free(line);
        assert_false(back.report.have_demand);
}

static void other_messages_round_trip(void **state)
{
        struct memctl_msg m = {.type = MEMCTL_SETTINGS}, back;
        char *line = NULL;

        m.settings.settings = settings();
        round_trip(&m);

        m = (struct memctl_msg){.type = MEMCTL_RESTART};
        round_trip(&m);
        m = (struct memctl_msg){.type = MEMCTL_ADMITTED, .admitted.grant = 1 * GiB};
        round_trip(&m);
        m = (struct memctl_msg){.type = MEMCTL_TARGET, .target.bytes = 768 * MiB};
        round_trip(&m);

        m = (struct memctl_msg){.type = MEMCTL_REFUSED};
        m.refused.needed = 512 * MiB;
        m.refused.found = 300 * MiB;
        strcpy(m.refused.error, "cannot admit vm4: needs 512 MiB, 300 MiB could be found \"/\\");
        round_trip(&m);
        assert_int_equal(memctl_msg_format(&m, &line), 0);
        assert_int_equal(memctl_msg_parse(line, strlen(line) - 1, &back, err, sizeof(err)), 0);
        free(line);
        assert_int_equal(back.refused.needed, 512 * MiB);
        assert_int_equal(back.refused.found, 300 * MiB);
        assert_string_equal(back.refused.error, m.refused.error);

        m = (struct memctl_msg){.type = MEMCTL_ERROR};
        strcpy(m.error.error, "line too long");
        round_trip(&m);
        assert_int_equal(memctl_msg_format(&m, &line), 0);
        assert_string_equal(line, "{\"msg\":\"error\",\"error\":\"line too long\"}\n");
        free(line);
}

static void format_refuses_bad_messages(void **state)
{
        struct memctl_msg m = {.type = MEMCTL_REGISTER};
        char *line = NULL;

        m.reg.settings = settings();
        strcpy(m.reg.name, ".hidden");
        assert_int_equal(memctl_msg_format(&m, &line), -EINVAL);
        m.reg.name[0] = '\0';
        assert_int_equal(memctl_msg_format(&m, &line), -EINVAL);
        m = (struct memctl_msg){.type = (enum memctl_msg_type)99};
        assert_int_equal(memctl_msg_format(&m, &line), -EINVAL);
        assert_null(line);
}

static void expect_refused(const char *line, const char *why)
{
        struct memctl_msg m;

        err[0] = '\0';
        assert_int_equal(memctl_msg_parse(line, strlen(line), &m, err, sizeof(err)), -EINVAL);
        if (!strstr(err, why))
                fail_msg("\"%s\": error \"%s\" does not say \"%s\"", line, err, why);
}

#define REG_HEAD "{\"msg\":\"register\",\"name\":\"vm1\","
#define REG_SETTINGS                                                                               \
        "\"startup_bytes\":1073741824,\"minimum_bytes\":536870912,"                                \
        "\"maximum_bytes\":2147483648,\"buffer\":20,\"weight\":5000"
#define REPORT_TAIL                                                                                \
        "\"fresh\":true,\"pressure\":0,\"status\":\"OK\",\"balloon_bytes\":0,"                     \
        "\"vmem_plugged_bytes\":0,\"smart_paging\":{\"active\":false,\"file_bytes\":0,"            \
        "\"pages_in\":0,\"pages_out\":0,\"active_ms\":0}}"

static void parse_accepts_minimal_lines(void **state)
{
        const char *good[] = {
                REG_HEAD REG_SETTINGS ",\"running\":false}",
                REG_HEAD REG_SETTINGS ",\"running\":false,\"future_member\":[1,2]} \r",
                "{\"msg\":\"report\",\"assigned_bytes\":1,\"demand_bytes\":null," REPORT_TAIL,
                "{\"msg\":\"restart\"}",
        };
        struct memctl_msg m;

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                if (memctl_msg_parse(good[i], strlen(good[i]), &m, err, sizeof(err)) != 0)
                        fail_msg("\"%s\" refused: %s", good[i], err);
        /* A report without unplugging_bytes (an older VM) has nothing in flight. */
        assert_int_equal(memctl_msg_parse(good[2], strlen(good[2]), &m, err, sizeof(err)), 0);
        assert_int_equal(m.report.unplugging, 0);
}

static void parse_refuses_bad_json(void **state)
{
        expect_refused("", "ends too early");
        expect_refused("   ", "ends too early");
        expect_refused("not json", "malformed JSON");
        expect_refused("{\"msg\":\"restart\"", "ends too early");
        expect_refused("{\"msg\":\"restart\",}", "malformed JSON");
        expect_refused("{\"msg\":\"restart\"} {}", "malformed JSON");
        expect_refused("[1,2]", "JSON object");
        expect_refused("\"restart\"", "JSON object");
        expect_refused("42", "ends too early");
        expect_refused("null", "JSON");
}

static void parse_refuses_bad_msg(void **state)
{
        expect_refused("{}", "missing \"msg\"");
        expect_refused("{\"cmd\":\"list\"}", "missing \"msg\"");
        expect_refused("{\"msg\":3}", "\"msg\" must be a string");
        expect_refused("{\"msg\":\"launch\"}", "unknown \"msg\"");
        expect_refused("{\"msg\":\"restart\\u0000\"}", "unknown \"msg\"");
        expect_refused("{\"msg\":\"\"}", "unknown \"msg\"");
}

static void parse_refuses_bad_register(void **state)
{
        char line[512];

        expect_refused(REG_HEAD REG_SETTINGS "}", "missing \"running\"");
        expect_refused(REG_HEAD REG_SETTINGS ",\"running\":1}", "\"running\" must be a boolean");
        expect_refused(REG_HEAD REG_SETTINGS ",\"running\":true}", "missing \"assigned_bytes\"");
        expect_refused(REG_HEAD REG_SETTINGS ",\"running\":true,\"assigned_bytes\":0}",
                       "missing \"grant_bytes\"");
        expect_refused(REG_HEAD REG_SETTINGS
                       ",\"running\":true,\"assigned_bytes\":-1,\"grant_bytes\":0}",
                       "must not be negative");
        expect_refused(REG_HEAD REG_SETTINGS
                       ",\"running\":true,\"assigned_bytes\":0,\"grant_bytes\":1e9}",
                       "\"grant_bytes\" must be an integer");
        expect_refused(
                REG_HEAD REG_SETTINGS
                ",\"running\":true,\"assigned_bytes\":0,\"grant_bytes\":99999999999999999999}",
                "must be at most");
        expect_refused("{\"msg\":\"register\"," REG_SETTINGS ",\"running\":false}",
                       "missing \"name\"");
        expect_refused("{\"msg\":\"register\",\"name\":7," REG_SETTINGS ",\"running\":false}",
                       "\"name\" must be a string");

        /* Names: characters, the leading dot, length. */
        const char *bad_names[] = {"", ".vm", "vm 1", "vm/1", "vm\\u00e9", "vm\\u0000x", "../x"};
        for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
                snprintf(line, sizeof(line),
                         "{\"msg\":\"register\",\"name\":\"%s\"," REG_SETTINGS
                         ",\"running\":false}",
                         bad_names[i]);
                expect_refused(line, "name");
        }
        snprintf(line, sizeof(line),
                 "{\"msg\":\"register\",\"name\":\"%065d\"," REG_SETTINGS ",\"running\":false}", 0);
        expect_refused(line, "at most 64");
        snprintf(line, sizeof(line),
                 "{\"msg\":\"register\",\"name\":\"%064d\"," REG_SETTINGS ",\"running\":false}", 0);
        struct memctl_msg m;
        assert_int_equal(memctl_msg_parse(line, strlen(line), &m, err, sizeof(err)), 0);

        expect_refused(REG_HEAD "\"uuid\":\"abc\"," REG_SETTINGS ",\"running\":false}", "uuid");
        expect_refused(REG_HEAD "\"uuid\":\"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9fz\"," REG_SETTINGS
                                ",\"running\":false}",
                       "uuid");
        expect_refused(REG_HEAD "\"uuid\":5," REG_SETTINGS ",\"running\":false}",
                       "\"uuid\" must be a string");
}

static void parse_refuses_bad_settings(void **state)
{
        /* Each fails mem_settings_check() or a member's own bound. */
        expect_refused(REG_HEAD "\"startup_bytes\":1073741824,\"minimum_bytes\":2147483648,"
                                "\"maximum_bytes\":4294967296,\"buffer\":20,\"weight\":5000,"
                                "\"running\":false}",
                       "minimum 2 GiB is above startup");
        expect_refused(REG_HEAD "\"startup_bytes\":1073741825,\"minimum_bytes\":536870912,"
                                "\"maximum_bytes\":4294967296,\"buffer\":20,\"weight\":5000,"
                                "\"running\":false}",
                       "multiple of 2 MiB");
        expect_refused(REG_HEAD "\"startup_bytes\":1073741824,\"minimum_bytes\":2097152,"
                                "\"maximum_bytes\":4294967296,\"buffer\":20,\"weight\":5000,"
                                "\"running\":false}",
                       "below the smallest");
        expect_refused(REG_HEAD "\"startup_bytes\":1073741824,\"minimum_bytes\":536870912,"
                                "\"maximum_bytes\":4294967296,\"buffer\":1,\"weight\":5000,"
                                "\"running\":false}",
                       "buffer 1%");
        expect_refused(REG_HEAD "\"startup_bytes\":1073741824,\"minimum_bytes\":536870912,"
                                "\"maximum_bytes\":4294967296,\"buffer\":20,\"weight\":10001,"
                                "\"running\":false}",
                       "\"weight\" must be at most 10000");
        expect_refused(REG_HEAD "\"startup_bytes\":1073741824,\"minimum_bytes\":536870912,"
                                "\"maximum_bytes\":2199023255552,\"buffer\":20,\"weight\":1,"
                                "\"running\":false}",
                       "\"maximum_bytes\" must be at most");
        expect_refused(REG_HEAD "\"startup_bytes\":\"1G\",\"minimum_bytes\":536870912,"
                                "\"maximum_bytes\":4294967296,\"buffer\":20,\"weight\":5000,"
                                "\"running\":false}",
                       "\"startup_bytes\" must be an integer");
        expect_refused("{\"msg\":\"settings\",\"startup_bytes\":1073741824,"
                       "\"minimum_bytes\":536870912,\"maximum_bytes\":536870912,\"buffer\":20,"
                       "\"weight\":5000}",
                       "maximum 512 MiB is below startup");
        expect_refused("{\"msg\":\"settings\",\"startup_bytes\":1073741824,"
                       "\"minimum_bytes\":536870912,\"maximum_bytes\":4294967296,\"buffer\":20}",
                       "missing \"weight\"");
}

static void parse_refuses_bad_report(void **state)
{
        expect_refused("{\"msg\":\"report\",\"demand_bytes\":null," REPORT_TAIL,
                       "missing \"assigned_bytes\"");
        expect_refused("{\"msg\":\"report\",\"assigned_bytes\":1," REPORT_TAIL,
                       "missing \"demand_bytes\"");
        expect_refused("{\"msg\":\"report\",\"assigned_bytes\":1,\"demand_bytes\":-5," REPORT_TAIL,
                       "must not be negative");
        expect_refused("{\"msg\":\"report\",\"assigned_bytes\":1,\"demand_bytes\":1,"
                       "\"unplugging_bytes\":-1," REPORT_TAIL,
                       "must not be negative");
        expect_refused("{\"msg\":\"report\",\"assigned_bytes\":1.5,\"demand_bytes\":1," REPORT_TAIL,
                       "must be an integer");
        expect_refused(
                "{\"msg\":\"report\",\"assigned_bytes\":1,\"demand_bytes\":true," REPORT_TAIL,
                "must be an integer");
        expect_refused("{\"msg\":\"report\",\"assigned_bytes\":1,\"demand_bytes\":1,\"fresh\":true,"
                       "\"pressure\":0,\"status\":\"Fine\",\"balloon_bytes\":0,"
                       "\"vmem_plugged_bytes\":0,\"smart_paging\":{\"active\":false,"
                       "\"file_bytes\":0,\"pages_in\":0,\"pages_out\":0,\"active_ms\":0}}",
                       "\"status\" must be");
        expect_refused("{\"msg\":\"report\",\"assigned_bytes\":1,\"demand_bytes\":1,\"fresh\":true,"
                       "\"pressure\":4294967296,\"status\":\"OK\",\"balloon_bytes\":0,"
                       "\"vmem_plugged_bytes\":0,\"smart_paging\":{\"active\":false,"
                       "\"file_bytes\":0,\"pages_in\":0,\"pages_out\":0,\"active_ms\":0}}",
                       "\"pressure\" must be at most");
        expect_refused("{\"msg\":\"report\",\"assigned_bytes\":1,\"demand_bytes\":1,\"fresh\":true,"
                       "\"pressure\":0,\"status\":\"OK\",\"balloon_bytes\":0,"
                       "\"vmem_plugged_bytes\":0,\"smart_paging\":{\"active\":false,"
                       "\"file_bytes\":0,\"pages_in\":0,\"pages_out\":0}}",
                       "missing \"active_ms\"");
        expect_refused("{\"msg\":\"report\",\"assigned_bytes\":1,\"demand_bytes\":1,\"fresh\":true,"
                       "\"pressure\":0,\"status\":\"OK\",\"balloon_bytes\":0,"
                       "\"vmem_plugged_bytes\":0,\"smart_paging\":[]}",
                       "\"smart_paging\" must be an object");
        expect_refused("{\"msg\":\"report\",\"assigned_bytes\":2199023255553,\"demand_bytes\":1,"
                       "\"fresh\":true,\"pressure\":0,\"status\":\"OK\",\"balloon_bytes\":0,"
                       "\"vmem_plugged_bytes\":0,\"smart_paging\":{}}",
                       "\"assigned_bytes\" must be at most");
}

static void parse_refuses_bad_daemon_messages(void **state)
{
        char line[600];

        expect_refused("{\"msg\":\"target\"}", "missing \"target_bytes\"");
        expect_refused("{\"msg\":\"target\",\"target_bytes\":-1}", "must not be negative");
        expect_refused("{\"msg\":\"admitted\",\"grant_bytes\":\"x\"}", "must be an integer");
        expect_refused("{\"msg\":\"refused\",\"needed_bytes\":1,\"found_bytes\":0}",
                       "missing \"error\"");
        expect_refused("{\"msg\":\"error\",\"error\":null}", "\"error\" must be a string");
        snprintf(line, sizeof(line), "{\"msg\":\"error\",\"error\":\"%0300d\"}", 0);
        expect_refused(line, "at most 255");
}

static void parse_refuses_overlong_line(void **state)
{
        size_t len = MEMCTL_LINE_MAX + 1;
        char *line = malloc(len + 1);
        struct memctl_msg m;

        assert_non_null(line);
        memset(line, ' ', len);
        memcpy(line, "{\"msg\":\"restart\"}", 17);
        line[len] = '\0';
        assert_int_equal(memctl_msg_parse(line, len, &m, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "longer than"));
        assert_int_equal(memctl_msg_parse(line, len - 1, &m, err, sizeof(err)), 0);
        free(line);
}

static void names(void **state)
{
        assert_true(memctl_name_valid("a"));
        assert_true(memctl_name_valid("web-01.example_com"));
        assert_true(memctl_name_valid("a."));
        assert_false(memctl_name_valid(""));
        assert_false(memctl_name_valid("."));
        assert_false(memctl_name_valid(".."));
        assert_false(memctl_name_valid("a/b"));
        assert_false(memctl_name_valid("a b"));
        assert_false(memctl_name_valid("ä"));
        assert_true(memctl_name_valid(
                "0123456789012345678901234567890123456789012345678901234567890123"));
        assert_false(memctl_name_valid(
                "01234567890123456789012345678901234567890123456789012345678901234"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(register_round_trip),
                cmocka_unit_test(report_round_trip),
                cmocka_unit_test(other_messages_round_trip),
                cmocka_unit_test(format_refuses_bad_messages),
                cmocka_unit_test(parse_accepts_minimal_lines),
                cmocka_unit_test(parse_refuses_bad_json),
                cmocka_unit_test(parse_refuses_bad_msg),
                cmocka_unit_test(parse_refuses_bad_register),
                cmocka_unit_test(parse_refuses_bad_settings),
                cmocka_unit_test(parse_refuses_bad_report),
                cmocka_unit_test(parse_refuses_bad_daemon_messages),
                cmocka_unit_test(parse_refuses_overlong_line),
                cmocka_unit_test(names),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
