/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/cli.h"

#define HOST_MEM (8ULL << 30)

static int parse(enum cli_action *action, struct vm_config *cfg, char *err, ...)
{
        char *argv[32];
        int argc = 0;
        va_list ap;

        argv[argc++] = "tidal";
        va_start(ap, err);
        for (char *a; (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        argv[argc] = NULL;
        return cli_parse(argc, argv, HOST_MEM, action, cfg, err, 256);
}

#define PARSE(...) parse(&action, &cfg, err, __VA_ARGS__, NULL)

static void full_run_line(void **state)
{
        enum cli_action action;
        struct vm_config cfg;
        char err[256];

        assert_int_equal(PARSE("run", "--kernel", "/k", "--initrd", "/i", "--cmdline",
                               "console=ttyS0 quiet", "--memory", "512M", "--cpus", "2", "--name",
                               "web-1", "--serial", "file:/tmp/log"),
                         0);
        assert_int_equal(action, CLI_RUN);
        assert_string_equal(cfg.kernel_path, "/k");
        assert_string_equal(cfg.initrd_path, "/i");
        assert_string_equal(cfg.cmdline, "console=ttyS0 quiet");
        assert_int_equal(cfg.memory, 512ULL << 20);
        assert_int_equal(cfg.nr_cpus, 2);
        assert_string_equal(cfg.name, "web-1");
        assert_int_equal(cfg.serial, SERIAL_FILE);
        assert_string_equal(cfg.serial_path, "/tmp/log");
}

static void defaults(void **state)
{
        enum cli_action action;
        struct vm_config cfg;
        char err[256];

        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=1G"), 0);
        assert_int_equal(cfg.nr_cpus, 1);
        assert_int_equal(cfg.serial, SERIAL_STDIO);
        assert_string_equal(cfg.cmdline, "console=ttyS0");
        assert_null(cfg.initrd_path);
        assert_string_equal(cfg.name, "");
        assert_null(cfg.api_socket);
        assert_true(cfg.balloon.enabled);
        assert_true(cfg.balloon.deflate_on_oom);
        assert_true(cfg.balloon.free_page_reporting);
        assert_int_equal(cfg.balloon.stats_period_s, 1);
}

static void balloon_and_socket(void **state)
{
        enum cli_action action;
        struct vm_config cfg;
        char err[256];

        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=1G", "--api-socket", "/run/x.sock",
                               "--balloon",
                               "deflate-on-oom=off,stats-period=5,free-page-reporting=off"),
                         0);
        assert_string_equal(cfg.api_socket, "/run/x.sock");
        assert_true(cfg.balloon.enabled);
        assert_false(cfg.balloon.deflate_on_oom);
        assert_false(cfg.balloon.free_page_reporting);
        assert_int_equal(cfg.balloon.stats_period_s, 5);
        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=1G", "--balloon", "off"), 0);
        assert_false(cfg.balloon.enabled);
}

static void dynamic_memory(void **state)
{
        enum cli_action action;
        struct vm_config cfg;
        char err[256];

        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=1G"), 0);
        assert_false(cfg.mem.dynamic);
        assert_int_equal(cfg.mem.startup, 1ULL << 30);
        assert_int_equal(cfg.mem.minimum, 1ULL << 30);
        assert_int_equal(cfg.mem.maximum, 1ULL << 30);
        assert_int_equal(cfg.mem_ceiling, 1ULL << 30);

        assert_int_equal(PARSE("run", "--kernel=/k", "--memory",
                               "startup=1G,minimum=512M,maximum=4G,buffer=30,weight=100"),
                         0);
        assert_true(cfg.mem.dynamic);
        assert_int_equal(cfg.memory, 1ULL << 30);
        assert_int_equal(cfg.mem.startup, 1ULL << 30);
        assert_int_equal(cfg.mem.minimum, 512ULL << 20);
        assert_int_equal(cfg.mem.maximum, 4ULL << 30);
        assert_int_equal(cfg.mem.buffer, 30);
        assert_int_equal(cfg.mem.weight, 100);
        assert_int_equal(cfg.mem_ceiling, 16ULL << 30);

        /* Defaults: minimum min(512M, startup), maximum the host's RAM, buffer 20, weight 5000;
         * the ceiling may exceed the host (it is address space until memory is plugged). */
        assert_int_equal(PARSE("run", "--kernel=/k", "--memory", "startup=256M,ceiling=64G"), 0);
        assert_int_equal(cfg.mem.minimum, 256ULL << 20);
        assert_int_equal(cfg.mem.maximum, HOST_MEM);
        assert_int_equal(cfg.mem.buffer, 20);
        assert_int_equal(cfg.mem.weight, 5000);
        assert_int_equal(cfg.mem_ceiling, 64ULL << 30);
}

static void memctl_options(void **state)
{
        enum cli_action action;
        struct vm_config cfg;
        char err[256];

        /* Default: try tidald's default socket, standalone if nobody listens. */
        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=startup=1G"), 0);
        assert_int_equal(cfg.memctl, MEMCTL_MODE_AUTO);
        assert_null(cfg.memctl_socket);
        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=startup=1G", "--memctl-socket",
                               "/run/x/tidald.sock"),
                         0);
        assert_int_equal(cfg.memctl, MEMCTL_MODE_SOCKET);
        assert_string_equal(cfg.memctl_socket, "/run/x/tidald.sock");
        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=startup=1G", "--no-memctl"), 0);
        assert_int_equal(cfg.memctl, MEMCTL_MODE_OFF);
        /* Accepted with static memory, which never connects. */
        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=1G", "--memctl-socket", "/s"), 0);
        assert_int_equal(cfg.memctl, MEMCTL_MODE_SOCKET);
        /* Smart paging's directory: NULL is the engine's default. */
        assert_null(cfg.smart_paging_dir);
        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=startup=1G", "--smart-paging-dir",
                               "/srv/paging"),
                         0);
        assert_string_equal(cfg.smart_paging_dir, "/srv/paging");
        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=startup=1G", "--smart-paging-dir="),
                         -EINVAL);
}

static void kernel_cache(void **state)
{
        enum cli_action action;
        struct vm_config cfg;
        char err[256];

        /* run: NULL is the default directory, "off" none. */
        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=1G"), 0);
        assert_null(cfg.kernel_cache);
        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=1G", "--kernel-cache", "off"), 0);
        assert_string_equal(cfg.kernel_cache, "off");
        assert_int_equal(PARSE("run", "--kernel=/k", "--memory=1G", "--kernel-cache="), -EINVAL);
        assert_non_null(strstr(err, "--kernel-cache"));
        /* cache-kernel: only the kernel and the directory. */
        assert_int_equal(PARSE("cache-kernel", "--kernel", "/k", "--kernel-cache", "/c"), 0);
        assert_int_equal(action, CLI_CACHE_KERNEL);
        assert_string_equal(cfg.kernel_path, "/k");
        assert_string_equal(cfg.kernel_cache, "/c");
        assert_int_equal(PARSE("cache-kernel", "--kernel", "/k"), 0);
        assert_null(cfg.kernel_cache);
        assert_int_equal(PARSE("cache-kernel"), -EINVAL);
        assert_non_null(strstr(err, "--kernel is required"));
        assert_int_equal(PARSE("cache-kernel", "--kernel", "/k", "--memory", "1G"), -EINVAL);
        assert_non_null(strstr(err, "unknown option '--memory'"));
        assert_int_equal(PARSE("cache-kernel", "--kernel", "/k", "extra"), -EINVAL);
        assert_int_equal(PARSE("cache-kernel", "--help"), 0);
        assert_int_equal(action, CLI_HELP);
}

static void help_and_version(void **state)
{
        enum cli_action action;
        struct vm_config cfg;
        char err[256];

        assert_int_equal(PARSE("--help"), 0);
        assert_int_equal(action, CLI_HELP);
        assert_int_equal(PARSE("--version"), 0);
        assert_int_equal(action, CLI_VERSION);
        assert_int_equal(PARSE("run", "--help"), 0);
        assert_int_equal(action, CLI_HELP);
}

static void expect_error(const char *needle, ...)
{
        char *argv[32];
        int argc = 0;
        enum cli_action action;
        struct vm_config cfg;
        char err[256] = "";
        va_list ap;

        argv[argc++] = "tidal";
        va_start(ap, needle);
        for (char *a; (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        argv[argc] = NULL;
        assert_int_equal(cli_parse(argc, argv, HOST_MEM, &action, &cfg, err, sizeof(err)), -EINVAL);
        if (!strstr(err, needle))
                fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void errors(void **state)
{
        expect_error("no command", NULL);
        expect_error("unknown command 'start'", "start", NULL);
        expect_error("--kernel is required", "run", "--memory", "1G", NULL);
        expect_error("--memory is required", "run", "--kernel", "/k", NULL);
        expect_error("unknown option '--bogus'", "run", "--bogus", NULL);
        expect_error("needs a value", "run", "--kernel", NULL);
        expect_error("not a size", "run", "--kernel", "/k", "--memory", "lots", NULL);
        expect_error("below the 64M a guest needs", "run", "--kernel", "/k", "--memory", "16M",
                     NULL);
        expect_error("startup= is required", "run", "--kernel", "/k", "--memory", "maximum=2G",
                     NULL);
        expect_error("minimum 2 GiB is above startup", "run", "--kernel", "/k", "--memory",
                     "startup=1G,minimum=2G", NULL);
        expect_error("maximum 512 MiB is below startup", "run", "--kernel", "/k", "--memory",
                     "startup=1G,maximum=512M", NULL);
        expect_error("below the smallest, 32 MiB", "run", "--kernel", "/k", "--memory",
                     "startup=1G,minimum=16M", NULL);
        expect_error("buffer must be 5-2000", "run", "--kernel", "/k", "--memory",
                     "startup=1G,buffer=2", NULL);
        expect_error("weight must be 0-10000", "run", "--kernel", "/k", "--memory",
                     "startup=1G,weight=20000", NULL);
        expect_error("unknown setting 'size'", "run", "--kernel", "/k", "--memory",
                     "startup=1G,size=2G", NULL);
        expect_error("maximum 16G is more than this host has", "run", "--kernel", "/k", "--memory",
                     "startup=1G,maximum=16G", NULL);
        expect_error("ceiling is below maximum", "run", "--kernel", "/k", "--memory",
                     "startup=1G,maximum=4G,ceiling=2G", NULL);
        expect_error("dynamic memory needs the balloon", "run", "--kernel", "/k", "--memory",
                     "startup=1G", "--balloon", "off", NULL);
        expect_error("dynamic memory needs the balloon", "run", "--kernel", "/k", "--memory",
                     "startup=1G", "--balloon", "stats-period=0", NULL);
        expect_error("not KEY=VALUE", "run", "--kernel", "/k", "--memory", "startup=1G,2G", NULL);
        expect_error("above the maximum", "run", "--kernel", "/k", "--memory", "2T", NULL);
        expect_error("more than this host has", "run", "--kernel", "/k", "--memory", "16G", NULL);
        expect_error("multiple of 2M", "run", "--kernel", "/k", "--memory", "65M", NULL);
        expect_error("--cpus", "run", "--kernel", "/k", "--memory", "1G", "--cpus", "0", NULL);
        expect_error("--cpus", "run", "--kernel", "/k", "--memory", "1G", "--cpus", "256", NULL);
        expect_error("--cpus", "run", "--kernel", "/k", "--memory", "1G", "--cpus", "two", NULL);
        expect_error("--name", "run", "--kernel", "/k", "--memory", "1G", "--name", "a/b", NULL);
        expect_error("--name", "run", "--kernel", "/k", "--memory", "1G", "--name", "", NULL);
        expect_error("--name", "run", "--kernel", "/k", "--memory", "1G", "--name", ".x", NULL);
        expect_error("--serial", "run", "--kernel", "/k", "--memory", "1G", "--serial", "tcp",
                     NULL);
        expect_error("--serial", "run", "--kernel", "/k", "--memory", "1G", "--serial",
                     "file:", NULL);
        expect_error("--balloon", "run", "--kernel", "/k", "--memory", "1G", "--balloon", "maybe",
                     NULL);
        expect_error("stats-period", "run", "--kernel", "/k", "--memory", "1G", "--balloon",
                     "stats-period=9999", NULL);
        expect_error("unknown or invalid setting", "run", "--kernel", "/k", "--memory", "1G",
                     "--balloon", "deflate-on-oom=maybe", NULL);
        expect_error("--api-socket", "run", "--kernel", "/k", "--memory", "1G", "--api-socket", "",
                     NULL);
        expect_error("--memctl-socket: empty path", "run", "--kernel", "/k", "--memory", "1G",
                     "--memctl-socket", "", NULL);
        expect_error(
                "path longer than 107 bytes", "run", "--kernel", "/k", "--memory", "1G",
                "--memctl-socket",
                "/run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock",
                NULL);
        expect_error("--no-memctl and --memctl-socket conflict", "run", "--kernel", "/k",
                     "--memory", "1G", "--no-memctl", "--memctl-socket", "/s", NULL);
        expect_error("--no-memctl and --memctl-socket conflict", "run", "--kernel", "/k",
                     "--memory", "1G", "--memctl-socket", "/s", "--no-memctl", NULL);
        expect_error("needs a value", "run", "--kernel", "/k", "--memory", "1G", "--memctl-socket",
                     NULL);
        expect_error("unexpected argument 'extra'", "run", "--kernel", "/k", "--memory", "1G",
                     "extra", NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(full_run_line),      cmocka_unit_test(defaults),
                cmocka_unit_test(balloon_and_socket), cmocka_unit_test(dynamic_memory),
                cmocka_unit_test(help_and_version),   cmocka_unit_test(errors),
                cmocka_unit_test(memctl_options),     cmocka_unit_test(kernel_cache),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
