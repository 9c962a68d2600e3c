/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The control-socket protocol without sockets: request validation and reply encoding. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <json-c/json.h>
#include <stdlib.h>

#include "tidal/api.h"
#include "tidal/memory-settings.h"
#include "vmm/api/protocol.h"

/* Parses s; expects failure with a message containing `want`. Returns the id seen, if any. */
static void expect_error(const char *s, const char *want)
{
        struct api_request req;
        char err[256] = "";

        assert_int_equal(api_request_parse(s, strlen(s), &req, err, sizeof(err)), -EINVAL);
        if (!strstr(err, want))
                fail_msg("request %s: error \"%s\" lacks \"%s\"", s, err, want);
        api_request_done(&req);
}

static void expect_ok(const char *s, enum api_cmd cmd, uint64_t value)
{
        struct api_request req;
        char err[256] = "";

        if (api_request_parse(s, strlen(s), &req, err, sizeof(err)) < 0)
                fail_msg("request %s refused: %s", s, err);
        assert_int_equal(req.cmd, cmd);
        assert_int_equal(req.value, value);
        api_request_done(&req);
}

static void valid_requests(void **state)
{
        expect_ok("{\"cmd\":\"info\"}", API_REQ_INFO, 0);
        expect_ok("  {\"cmd\" : \"info\"}  \r", API_REQ_INFO, 0);
        expect_ok("{\"cmd\":\"balloon-set\",\"bytes\":536870912}", API_REQ_BALLOON_SET, 536870912);
        expect_ok("{\"bytes\":0,\"cmd\":\"balloon-set\"}", API_REQ_BALLOON_SET, 0);
        expect_ok("{\"cmd\":\"balloon-set\",\"bytes\":1099511627776}", API_REQ_BALLOON_SET,
                  API_BALLOON_BYTES_MAX);
        expect_ok("{\"cmd\":\"stats-period\",\"seconds\":5}", API_REQ_STATS_PERIOD, 5);
        expect_ok("{\"cmd\":\"stats-period\",\"seconds\":0}", API_REQ_STATS_PERIOD, 0);
        expect_ok("{\"cmd\":\"shutdown\"}", API_REQ_SHUTDOWN, 0);
        expect_ok("{\"cmd\":\"reboot\",\"id\":7}", API_REQ_REBOOT, 0);
}

static void memory_set_requests(void **state)
{
        const char *s = "{\"cmd\":\"memory-set\",\"minimum_bytes\":268435456,\"weight\":100}";
        struct api_request req;
        char err[256] = "";

        assert_int_equal(api_request_parse(s, strlen(s), &req, err, sizeof(err)), 0);
        assert_int_equal(req.cmd, API_REQ_MEMORY_SET);
        assert_int_equal(req.present, MEM_SET_MINIMUM | MEM_SET_WEIGHT);
        assert_int_equal(req.values[0], 256 << 20);
        assert_int_equal(req.values[3], 100);
        api_request_done(&req);

        s = "{\"cmd\":\"memory-set\",\"maximum_bytes\":1099511627776,\"buffer\":2000}";
        assert_int_equal(api_request_parse(s, strlen(s), &req, err, sizeof(err)), 0);
        assert_int_equal(req.present, MEM_SET_MAXIMUM | MEM_SET_BUFFER);
        api_request_done(&req);

        expect_error("{\"cmd\":\"memory-set\"}", "needs at least one setting");
        expect_error("{\"cmd\":\"memory-set\",\"startup_bytes\":1}", "unknown member");
        expect_error("{\"cmd\":\"memory-set\",\"maximum_bytes\":1099511627777}", "must be at most");
        expect_error("{\"cmd\":\"memory-set\",\"buffer\":-1}", "must not be negative");
        expect_error("{\"cmd\":\"memory-set\",\"weight\":\"high\"}", "must be an integer");
}

static void malformed_json(void **state)
{
        expect_error("", "empty request");
        expect_error("   ", "empty request");
        expect_error("{\"cmd\":\"info\"", "ends too early");
        expect_error("{cmd:info}", "malformed JSON");
        expect_error("{\"cmd\":\"info\",}", "malformed JSON");
        /* Two requests on one line: the second is never silently dropped. */
        expect_error("{\"cmd\":\"info\"} {\"cmd\":\"info\"}", "malformed JSON");
        expect_error("{\"cmd\":\"info\"}x", "malformed JSON");
        expect_error("garbage", "malformed JSON");
        expect_error("\x01\x02\xff", "malformed JSON");
}

static void not_an_object(void **state)
{
        expect_error("[\"info\"]", "must be a JSON object");
        expect_error("\"info\"", "must be a JSON object");
        expect_error("42", "must be a JSON object");
        expect_error("null", "must be a JSON object");
}

static void bad_cmd(void **state)
{
        expect_error("{}", "missing \"cmd\"");
        expect_error("{\"id\":1}", "missing \"cmd\"");
        expect_error("{\"cmd\":1}", "\"cmd\" must be a string");
        expect_error("{\"cmd\":null}", "\"cmd\" must be a string");
        expect_error("{\"cmd\":\"frobnicate\"}", "unknown command \"frobnicate\"");
        expect_error("{\"cmd\":\"INFO\"}", "unknown command");
        /* An embedded NUL must not make "info\0x" pass as "info". */
        expect_error("{\"cmd\":\"info\\u0000x\"}", "unknown command");
}

static void bad_members(void **state)
{
        expect_error("{\"cmd\":\"info\",\"bytes\":1}", "unknown member \"bytes\"");
        expect_error("{\"cmd\":\"balloon-set\",\"byte\":1}", "unknown member \"byte\"");
        expect_error("{\"cmd\":\"shutdown\",\"force\":true}", "unknown member \"force\"");
}

static void bad_numbers(void **state)
{
        expect_error("{\"cmd\":\"balloon-set\"}", "needs \"bytes\"");
        expect_error("{\"cmd\":\"stats-period\"}", "needs \"seconds\"");
        expect_error("{\"cmd\":\"balloon-set\",\"bytes\":\"512M\"}", "must be an integer");
        expect_error("{\"cmd\":\"balloon-set\",\"bytes\":1.5}", "must be an integer");
        expect_error("{\"cmd\":\"balloon-set\",\"bytes\":1e9}", "must be an integer");
        expect_error("{\"cmd\":\"balloon-set\",\"bytes\":null}", "must be an integer");
        expect_error("{\"cmd\":\"balloon-set\",\"bytes\":true}", "must be an integer");
        expect_error("{\"cmd\":\"balloon-set\",\"bytes\":-1}", "must not be negative");
        expect_error("{\"cmd\":\"stats-period\",\"seconds\":-5}", "must not be negative");
        expect_error("{\"cmd\":\"balloon-set\",\"bytes\":1099511627777}", "at most");
        expect_error("{\"cmd\":\"balloon-set\",\"bytes\":18446744073709551615}", "at most");
        expect_error("{\"cmd\":\"balloon-set\",\"bytes\":99999999999999999999999}", "at most");
        expect_error("{\"cmd\":\"stats-period\",\"seconds\":86401}", "at most 86400");
}

static void id_echo(void **state)
{
        struct api_request req;
        char err[256] = "";
        const char *s = "{\"id\":\"abc\",\"cmd\":\"nope\"}";

        /* The id survives a failed request so that the error reply carries it. */
        assert_int_equal(api_request_parse(s, strlen(s), &req, err, sizeof(err)), -EINVAL);
        assert_non_null(req.id);
        assert_string_equal(json_object_get_string(req.id), "abc");
        api_request_done(&req);
        assert_null(req.id);

        s = "{\"cmd\":\"info\",\"id\":-12}";
        assert_int_equal(api_request_parse(s, strlen(s), &req, err, sizeof(err)), 0);
        assert_int_equal(json_object_get_int64(req.id), -12);
        api_request_done(&req);

        expect_error(
                "{\"cmd\":\"info\",\"id\":\""
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
                "at most 256 bytes");
        expect_error("{\"cmd\":\"info\",\"id\":{}}", "\"id\" must be a string or an integer");
        expect_error("{\"cmd\":\"info\",\"id\":1.5}", "\"id\" must be a string or an integer");
}

static char *encode(struct json_object *reply)
{
        char *line;
        size_t len;

        assert_non_null(reply);
        assert_int_equal(api_reply_encode(reply, &line, &len), 0);
        assert_int_equal(len, strlen(line));
        json_object_put(reply);
        return line;
}

static void reply_encoding(void **state)
{
        struct json_object *id = json_object_new_string("x/1");
        char *line;

        line = encode(api_reply_new_ok(NULL));
        assert_string_equal(line, "{\"ok\":true}\n");
        free(line);
        line = encode(api_reply_new_ok(id));
        assert_string_equal(line, "{\"ok\":true,\"id\":\"x/1\"}\n");
        free(line);
        line = encode(api_reply_new_error(id, "no \"such\"\nthing"));
        /* Newlines inside a message are escaped: a reply is always exactly one line. */
        assert_string_equal(
                line, "{\"ok\":false,\"id\":\"x/1\",\"error\":\"no \\\"such\\\"\\nthing\"}\n");
        free(line);
        json_object_put(id);
}

static void info_encoding(void **state)
{
        struct api_info info = {
                .name = "vm1",
                .pid = 42,
                .state = API_VM_RUNNING,
                .boots = 1,
                .vcpus = 2,
                .memory = 1ULL << 30,
                .cmdline = "console=ttyS0",
                .kernel_entry = "cache",
                .has_balloon = true,
                .balloon = {.target = 256 << 20,
                            .actual = 128 << 20,
                            .stats_period = 5,
                            .have_stats = true,
                            .stats_age_ms = 1500,
                            .stats_present = (1u << 4) | (1u << 2),
                            .stats = {[2] = 7, [4] = 300 << 20},
                            .driver = API_DRIVER_NEEDS_RESET,
                            .inflated = 64 << 20,
                            .stats_count = 3,
                            .counters = {.discard_calls = 9, .out_of_range_pages = 2}},
                .mem = {.settings = {true, 1ULL << 30, 512ULL << 20, 4ULL << 30, 20, 5000},
                        .ceiling = 16ULL << 30,
                        .target = 1ULL << 30,
                        .assigned = 768ULL << 20,
                        .have_demand = true,
                        .demand = 700ULL << 20,
                        .status = MEM_STATUS_LOW,
                        .has_vmem = true,
                        .vmem_driver = API_DRIVER_RUNNING,
                        .vmem_region = 15ULL << 30,
                        .vmem_counters = {.unplug_requests = 6,
                                          .unplugged_bytes = 768ULL << 20,
                                          .unplug_behind_us = 571000,
                                          .request_us = 15000},
                        .paging = {.active = true,
                                   .file_bytes = 8192,
                                   .pages_in = 3,
                                   .pages_out = 5,
                                   .active_ms = 1234}},
        };
        struct json_object *o;
        const char *s;

        assert_int_equal(api_info_to_json(&info, &o), 0);
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        assert_string_equal(
                s, "{\"name\":\"vm1\",\"pid\":42,\"state\":\"running\",\"boots\":1,\"vcpus\":2,"
                   "\"memory_bytes\":1073741824,\"kernel\":null,\"initrd\":null,"
                   "\"cmdline\":\"console=ttyS0\",\"kernel_entry\":\"cache\","
                   "\"memory\":{\"dynamic\":true,"
                   "\"startup_bytes\":1073741824,\"minimum_bytes\":536870912,"
                   "\"maximum_bytes\":4294967296,\"buffer_percent\":20,\"weight\":5000,"
                   "\"assigned_bytes\":805306368,\"ceiling_bytes\":17179869184,"
                   "\"target_bytes\":1073741824,\"target_source\":\"controller\","
                   "\"demand_bytes\":734003200,\"status\":\"Low\","
                   "\"virtio_mem\":{\"driver\":\"running\",\"region_bytes\":16106127360,"
                   "\"requested_bytes\":0,\"plugged_bytes\":0,\"stuck_bytes\":0,"
                   "\"counters\":{\"plug_requests\":0,\"unplug_requests\":6,"
                   "\"unplug_all_requests\":0,\"state_requests\":0,\"nacks\":0,\"errors\":0,"
                   "\"busy\":0,\"plugged_bytes\":0,\"unplugged_bytes\":805306368,"
                   "\"discarded_bytes\":0,\"discard_errors\":0,\"malformed_requests\":0,"
                   "\"nudges\":0,\"unplug_behind_us\":571000,\"plug_behind_us\":0,"
                   "\"request_us\":15000}},"
                   "\"smart_paging\":{\"active\":true,\"file_bytes\":8192,\"pages_in\":3,"
                   "\"pages_out\":5,\"active_ms\":1234}},"
                   "\"memctl\":{\"mode\":\"standalone\",\"socket\":null,\"connected\":false,"
                   "\"grant_bytes\":null,\"reconnects\":0},"
                   "\"balloon\":{\"target_bytes\":268435456,"
                   "\"actual_bytes\":134217728,\"driver\":\"needs-reset\","
                   "\"inflated_bytes\":67108864,\"pending_bytes\":0,\"stats_period_s\":5,\"stats_"
                   "count\":3,"
                   "\"stats\":{\"age_ms\":1500,\"major_faults\":7,"
                   "\"free_memory_bytes\":314572800},\"counters\":{\"inflate_requests\":0,"
                   "\"deflate_requests\":0,\"report_requests\":0,\"inflated_bytes\":0,"
                   "\"deflated_bytes\":0,\"reported_bytes\":0,\"discarded_bytes\":0,"
                   "\"discard_calls\":9,\"discard_errors\":0,\"out_of_range_pages\":2,"
                   "\"skipped_reports\":0,\"malformed_requests\":0,\"deferred_bytes\":0,"
                   "\"evicted_blocks\":0}}}");
        json_object_put(o);

        info.has_balloon = false;
        assert_int_equal(api_info_to_json(&info, &o), 0);
        assert_non_null(strstr(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                               "\"balloon\":null"));
        json_object_put(o);

        /* Under tidald, waiting for admission. */
        info.state = API_VM_STARTING;
        info.mem.target_from_daemon = true;
        info.memctl = (struct api_memctl_info){.daemon = true,
                                               .socket = "/run/tidal/tidald.sock",
                                               .connected = true,
                                               .have_grant = true,
                                               .grant = 1ULL << 30,
                                               .reconnects = 2};
        assert_int_equal(api_info_to_json(&info, &o), 0);
        s = json_object_to_json_string_ext(o,
                                           JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        assert_non_null(strstr(s, "\"state\":\"starting\""));
        assert_non_null(strstr(s, "\"target_source\":\"tidald\""));
        assert_non_null(strstr(s, "\"memctl\":{\"mode\":\"daemon\","
                                  "\"socket\":\"/run/tidal/tidald.sock\",\"connected\":true,"
                                  "\"grant_bytes\":1073741824,\"reconnects\":2}"));
        json_object_put(o);
}

static void errno_messages(void **state)
{
        assert_string_equal(api_errno_message(-ENODEV), "this VM has no balloon device");
        assert_string_equal(api_errno_message(-EOPNOTSUPP), "not supported by this VM");
        assert_string_equal(api_errno_message(-ENOMEM), strerror(ENOMEM));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(valid_requests), cmocka_unit_test(memory_set_requests),
                cmocka_unit_test(malformed_json), cmocka_unit_test(not_an_object),
                cmocka_unit_test(bad_cmd),        cmocka_unit_test(bad_members),
                cmocka_unit_test(bad_numbers),    cmocka_unit_test(id_echo),
                cmocka_unit_test(reply_encoding), cmocka_unit_test(info_encoding),
                cmocka_unit_test(errno_messages),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
