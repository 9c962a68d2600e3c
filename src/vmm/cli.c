/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/un.h>

#include "smartpage/smartpage.h"
#include "tidal/macro.h"
#include "tidal/memctl-proto.h"
#include "tidal/parse.h"
#include "tidal/unix-socket.h"
#include "vmm/cli.h"

#define DEFAULT_CMDLINE "console=ttyS0"

enum {
        OPT_KERNEL = 0x100,
        OPT_INITRD,
        OPT_CMDLINE,
        OPT_MEMORY,
        OPT_CPUS,
        OPT_NAME,
        OPT_SERIAL,
        OPT_API_SOCKET,
        OPT_BALLOON,
        OPT_MEMCTL_SOCKET,
        OPT_NO_MEMCTL,
        OPT_SMART_PAGING_DIR,
        OPT_KERNEL_CACHE,
};

static const struct option run_options[] = {
        {"kernel", required_argument, NULL, OPT_KERNEL},
        {"initrd", required_argument, NULL, OPT_INITRD},
        {"cmdline", required_argument, NULL, OPT_CMDLINE},
        {"memory", required_argument, NULL, OPT_MEMORY},
        {"cpus", required_argument, NULL, OPT_CPUS},
        {"name", required_argument, NULL, OPT_NAME},
        {"serial", required_argument, NULL, OPT_SERIAL},
        {"api-socket", required_argument, NULL, OPT_API_SOCKET},
        {"balloon", required_argument, NULL, OPT_BALLOON},
        {"memctl-socket", required_argument, NULL, OPT_MEMCTL_SOCKET},
        {"no-memctl", no_argument, NULL, OPT_NO_MEMCTL},
        {"smart-paging-dir", required_argument, NULL, OPT_SMART_PAGING_DIR},
        {"kernel-cache", required_argument, NULL, OPT_KERNEL_CACHE},
        {"help", no_argument, NULL, 'h'},
        {},
};

void cli_print_help(FILE *f)
{
        fputs("Usage: tidal run --kernel PATH --memory SIZE [OPTIONS]\n"
              "       tidal cache-kernel --kernel PATH [--kernel-cache DIR]\n"
              "       tidal --help | --version\n"
              "\n"
              "Runs one KVM guest, booting a Linux bzImage directly (no firmware).\n"
              "\n"
              "Options for run:\n"
              "  --kernel PATH        Linux bzImage (x86-64, boot protocol 2.12 or later)\n"
              "  --initrd PATH        initramfs to load with it\n"
              "  --cmdline STRING     kernel command line (default: \"" DEFAULT_CMDLINE "\")\n"
              "  --memory SIZE        guest RAM, e.g. 512M or 2G (K/M/G/T suffixes, multiple of "
              "2M)\n"
              "  --cpus N             number of vCPUs, 1-255 (default: 1)\n"
              "  --name NAME          VM name for logs and sockets (default: tidal-PID)\n"
              "  --serial MODE        console: stdio (default), file:PATH or none\n"
              "  --api-socket PATH    control socket (default: $XDG_RUNTIME_DIR/tidal/NAME.sock,\n"
              "                       /run/tidal/NAME.sock for root); \"none\" for no socket\n"
              "  --balloon LIST       virtio-balloon: on (default) or off, and\n"
              "                       deflate-on-oom=on|off, free-page-reporting=on|off,\n"
              "                       stats-period=SECONDS (default 1; 0 = off)\n"
              "  --memctl-socket PATH take dynamic memory targets from tidald at PATH (it must\n"
              "                       answer); default: " MEMCTL_SOCKET_DEFAULT " if tidald\n"
              "                       listens there, else run standalone\n"
              "  --no-memctl          do not use tidald: the standalone controller decides\n"
              "  --smart-paging-dir DIR  paging files for a restart with a partial grant\n"
              "                       (default: " SMARTPAGE_DEFAULT_DIR ")\n"
              "  --kernel-cache DIR   decompressed kernels, entered directly instead of\n"
              "                       running the guest's decompressor; \"off\" for none\n"
              "                       (default: $TIDAL_KERNEL_CACHE, else\n"
              "                       $XDG_CACHE_HOME/tidal/kernels or ~/.cache/tidal/kernels)\n"
              "  -h, --help           show this help\n"
              "\n"
              "\n"
              "cache-kernel decompresses the kernel into the cache now (run boots fill it in\n"
              "the background on first use) and prints the cached file's path.\n"
              "\n"
              "Exit status: 0 when the guest powers off or tidal is stopped by SIGTERM/SIGINT,\n"
              "1 on a runtime failure, 2 on a usage or configuration error, 3 when tidald\n"
              "refuses to admit the VM.\n"
              "See docs/tidal.md for the full reference.\n",
              f);
}

_printf_(3, 4) static int fail(char *err, size_t err_size, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

/* One size: a multiple of 2 MiB, within what tidal and this host can give a guest. */
static int parse_memory_size(const char *what, const char *arg, uint64_t host_memory, uint64_t *ret,
                             char *err, size_t err_size)
{
        char host[32];
        uint64_t v;

        if (parse_size(arg, &v) < 0)
                return fail(err, err_size, "--memory: %s '%s' is not a size (try 512M or 2G)", what,
                            arg);
        if (v > VM_MAX_MEMORY)
                return fail(err, err_size, "--memory: %s %s is above the maximum of 1T", what, arg);
        if (!IS_ALIGNED(v, VM_MEMORY_ALIGN))
                return fail(err, err_size, "--memory: %s %s is not a multiple of 2M", what, arg);
        if (host_memory && v > host_memory)
                return fail(err, err_size, "--memory: %s %s is more than this host has (%s)", what,
                            arg, format_size(host_memory, host, sizeof(host)));
        *ret = v;
        return 0;
}

static int parse_memory_item(char *item, uint64_t host_memory, struct vm_config *cfg,
                             unsigned *given, char *err, size_t err_size)
{
        static const struct {
                const char *key;
                unsigned bit;
        } sizes[] = {{"startup", MEM_SET_STARTUP},
                     {"minimum", MEM_SET_MINIMUM},
                     {"maximum", MEM_SET_MAXIMUM},
                     {"ceiling", 0}};
        char *eq = strchr(item, '=');
        uint64_t n;

        if (!eq)
                return fail(err, err_size, "--memory: '%s' is not KEY=VALUE", item);
        *eq = '\0';
        for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
                if (strcmp(item, sizes[i].key) != 0)
                        continue;
                *given |= sizes[i].bit;
                return parse_memory_size(item, eq + 1, i == 3 ? 0 : host_memory,
                                         i == 0   ? &cfg->mem.startup
                                         : i == 1 ? &cfg->mem.minimum
                                         : i == 2 ? &cfg->mem.maximum
                                                  : &cfg->mem_ceiling,
                                         err, err_size);
        }
        if (strcmp(item, "buffer") == 0) {
                if (parse_uint(eq + 1, MEM_BUFFER_MIN, MEM_BUFFER_MAX, &n) < 0)
                        return fail(err, err_size,
                                    "--memory: buffer must be %u-%u (percent), not '%s'",
                                    MEM_BUFFER_MIN, MEM_BUFFER_MAX, eq + 1);
                cfg->mem.buffer = (unsigned)n;
                return 0;
        }
        if (strcmp(item, "weight") == 0) {
                if (parse_uint(eq + 1, 0, MEM_WEIGHT_MAX, &n) < 0)
                        return fail(err, err_size, "--memory: weight must be 0-%u, not '%s'",
                                    MEM_WEIGHT_MAX, eq + 1);
                cfg->mem.weight = (unsigned)n;
                return 0;
        }
        return fail(err, err_size,
                    "--memory: unknown setting '%s' (startup, minimum, maximum, buffer, weight, "
                    "ceiling)",
                    item);
}

/* Dynamic memory's defaults: minimum min(512M, startup), maximum the host's RAM (at least
 * startup), ceiling 4x maximum (capped at 1T), the way Hyper-V fills in what is not given. */
static int finish_dynamic_memory(uint64_t host_memory, unsigned given, struct vm_config *cfg,
                                 char *err, size_t err_size)
{
        struct mem_settings *m = &cfg->mem;

        if (!(given & MEM_SET_STARTUP))
                return fail(err, err_size, "--memory: startup= is required");
        if (!(given & MEM_SET_MINIMUM))
                m->minimum = MIN(m->startup, MEM_MINIMUM_DEFAULT);
        if (!(given & MEM_SET_MAXIMUM))
                m->maximum = MAX(m->startup,
                                 MIN(ALIGN_DOWN(host_memory, VM_MEMORY_ALIGN), VM_MAX_MEMORY));
        if (!cfg->mem_ceiling)
                cfg->mem_ceiling = MIN(m->maximum * VM_CEILING_FACTOR, VM_MAX_MEMORY);
        if (mem_settings_check(m, err, err_size) < 0) {
                char msg[200];

                snprintf(msg, sizeof(msg), "%s", err);
                return fail(err, err_size, "--memory: %s", msg);
        }
        if (cfg->mem_ceiling < m->maximum)
                return fail(err, err_size, "--memory: ceiling is below maximum");
        return 0;
}

static int parse_memory(const char *arg, uint64_t host_memory, struct vm_config *cfg, char *err,
                        size_t err_size)
{
        char buf[256], size[32], *save = NULL;
        unsigned given = 0;
        int r;

        if (strlen(arg) >= sizeof(buf) || arg[0] == '\0')
                return fail(err, err_size, "--memory: invalid value");
        strcpy(buf, arg);
        if (!strchr(arg, '=')) {
                r = parse_memory_size("size", arg, host_memory, &cfg->mem.startup, err, err_size);
                if (r < 0)
                        return r;
                mem_settings_static(&cfg->mem, cfg->mem.startup);
                cfg->mem_ceiling = cfg->mem.startup;
        } else {
                cfg->mem = (struct mem_settings){.dynamic = true,
                                                 .buffer = MEM_BUFFER_DEFAULT,
                                                 .weight = MEM_WEIGHT_DEFAULT};
                for (char *item = strtok_r(buf, ",", &save); item;
                     item = strtok_r(NULL, ",", &save)) {
                        r = parse_memory_item(item, host_memory, cfg, &given, err, err_size);
                        if (r < 0)
                                return r;
                }
                r = finish_dynamic_memory(host_memory, given, cfg, err, err_size);
                if (r < 0)
                        return r;
        }
        if (cfg->mem.startup < VM_MIN_MEMORY)
                return fail(err, err_size,
                            "--memory: %s of startup memory is below the 64M a guest needs",
                            format_size(cfg->mem.startup, size, sizeof(size)));
        cfg->memory = cfg->mem.startup;
        return 0;
}

static int parse_name(const char *arg, char *name, char *err, size_t err_size)
{
        size_t len = strlen(arg);

        if (len == 0 || len > VM_NAME_MAX)
                return fail(err, err_size, "--name: must be 1-%d characters", VM_NAME_MAX);
        /* Names become file and socket names: keep them to a portable set. */
        for (const char *p = arg; *p; p++) {
                if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
                        return fail(
                                err, err_size,
                                "--name: '%s' may only contain letters, digits, '-', '_' and '.'",
                                arg);
        }
        if (arg[0] == '.')
                return fail(err, err_size, "--name: must not start with '.'");
        memcpy(name, arg, len + 1);
        return 0;
}

static int parse_serial(const char *arg, struct vm_config *cfg, char *err, size_t err_size)
{
        if (strcmp(arg, "stdio") == 0) {
                cfg->serial = SERIAL_STDIO;
        } else if (strcmp(arg, "none") == 0) {
                cfg->serial = SERIAL_NONE;
        } else if (strncmp(arg, "file:", 5) == 0 && arg[5] != '\0') {
                cfg->serial = SERIAL_FILE;
                cfg->serial_path = arg + 5;
        } else {
                return fail(err, err_size, "--serial: '%s' is not stdio, none or file:PATH", arg);
        }
        return 0;
}

static int parse_on_off(const char *v, bool *ret)
{
        if (strcmp(v, "on") == 0)
                *ret = true;
        else if (strcmp(v, "off") == 0)
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

static int parse_balloon_item(const char *item, struct vm_config *cfg, char *err, size_t err_size)
{
        const char *eq = strchr(item, '=');
        uint64_t n;

        if (!eq) {
                if (parse_on_off(item, &cfg->balloon.enabled) < 0)
                        return fail(err, err_size, "--balloon: '%s' is not on or off", item);
                return 0;
        }
        if (strncmp(item, "deflate-on-oom=", 15) == 0 &&
            parse_on_off(eq + 1, &cfg->balloon.deflate_on_oom) == 0)
                return 0;
        if (strncmp(item, "free-page-reporting=", 20) == 0 &&
            parse_on_off(eq + 1, &cfg->balloon.free_page_reporting) == 0)
                return 0;
        if (strncmp(item, "stats-period=", 13) == 0) {
                if (parse_uint(eq + 1, 0, 3600, &n) < 0)
                        return fail(err, err_size,
                                    "--balloon: stats-period must be 0-3600 seconds, not '%s'",
                                    eq + 1);
                cfg->balloon.stats_period_s = (uint32_t)n;
                return 0;
        }
        return fail(err, err_size, "--balloon: unknown or invalid setting '%s'", item);
}

static int parse_balloon(const char *arg, struct vm_config *cfg, char *err, size_t err_size)
{
        char buf[256], *save = NULL;
        int r;

        if (strlen(arg) >= sizeof(buf) || arg[0] == '\0')
                return fail(err, err_size, "--balloon: invalid value");
        strcpy(buf, arg);
        for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                r = parse_balloon_item(item, cfg, err, err_size);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_memctl_socket(const char *arg, struct vm_config *cfg, char *err, size_t err_size)
{
        if (cfg->memctl == MEMCTL_MODE_OFF)
                return fail(err, err_size, "--no-memctl and --memctl-socket conflict");
        if (arg[0] == '\0')
                return fail(err, err_size, "--memctl-socket: empty path");
        if (strlen(arg) > UNIX_PATH_MAX_LEN)
                return fail(err, err_size, "--memctl-socket: path longer than %zu bytes",
                            UNIX_PATH_MAX_LEN);
        cfg->memctl = MEMCTL_MODE_SOCKET;
        cfg->memctl_socket = arg;
        return 0;
}

static int parse_run_option(int opt, const char *arg, uint64_t host_memory, struct vm_config *cfg,
                            char *err, size_t err_size)
{
        uint64_t n;

        switch (opt) {
        case OPT_KERNEL:
                cfg->kernel_path = arg;
                return 0;
        case OPT_INITRD:
                cfg->initrd_path = arg;
                return 0;
        case OPT_CMDLINE:
                cfg->cmdline = arg;
                return 0;
        case OPT_MEMORY:
                return parse_memory(arg, host_memory, cfg, err, err_size);
        case OPT_CPUS:
                if (parse_uint(arg, 1, VM_MAX_CPUS, &n) < 0)
                        return fail(err, err_size, "--cpus: '%s' is not a number from 1 to %d", arg,
                                    VM_MAX_CPUS);
                cfg->nr_cpus = (unsigned)n;
                return 0;
        case OPT_NAME:
                return parse_name(arg, cfg->name, err, err_size);
        case OPT_SERIAL:
                return parse_serial(arg, cfg, err, err_size);
        case OPT_API_SOCKET:
                if (arg[0] == '\0')
                        return fail(err, err_size, "--api-socket: empty path");
                cfg->api_socket = arg;
                return 0;
        case OPT_BALLOON:
                return parse_balloon(arg, cfg, err, err_size);
        case OPT_MEMCTL_SOCKET:
                return parse_memctl_socket(arg, cfg, err, err_size);
        case OPT_NO_MEMCTL:
                if (cfg->memctl == MEMCTL_MODE_SOCKET)
                        return fail(err, err_size, "--no-memctl and --memctl-socket conflict");
                cfg->memctl = MEMCTL_MODE_OFF;
                return 0;
        case OPT_SMART_PAGING_DIR:
                if (arg[0] == '\0' || strlen(arg) >= PATH_MAX)
                        return fail(err, err_size, "--smart-paging-dir: empty or too long path");
                cfg->smart_paging_dir = arg;
                return 0;
        case OPT_KERNEL_CACHE:
                if (arg[0] == '\0' || strlen(arg) >= PATH_MAX)
                        return fail(err, err_size, "--kernel-cache: empty or too long path");
                cfg->kernel_cache = arg;
                return 0;
        default:
                return fail(err, err_size, "unknown option (see tidal --help)");
        }
}

/*
 * The options of one command, up to the first error; --help sets CLI_HELP and stops (1).
 * 0 when all were taken and nothing is left over, 1 for help, or -EINVAL with err.
 */
static int parse_options(int argc, char **argv, const struct option *options, uint64_t host_memory,
                         enum cli_action *action, struct vm_config *cfg, char *err, size_t err_size)
{
        int opt, r;

        optind = 1;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                if (opt == 'h') {
                        *action = CLI_HELP;
                        return 1;
                }
                if (opt == '?')
                        return fail(err, err_size, "unknown option '%s' (see tidal --help)",
                                    argv[optind - 1]);
                if (opt == ':')
                        return fail(err, err_size, "option '%s' needs a value", argv[optind - 1]);
                r = parse_run_option(opt, optarg, host_memory, cfg, err, err_size);
                if (r < 0)
                        return r;
        }
        if (optind < argc)
                return fail(err, err_size, "unexpected argument '%s'", argv[optind]);
        if (!cfg->kernel_path)
                return fail(err, err_size, "--kernel is required");
        return 0;
}

static int parse_run(int argc, char **argv, uint64_t host_memory, enum cli_action *action,
                     struct vm_config *cfg, char *err, size_t err_size)
{
        int r = parse_options(argc, argv, run_options, host_memory, action, cfg, err, err_size);

        if (r != 0)
                return r < 0 ? r : 0;
        if (!cfg->memory)
                return fail(err, err_size, "--memory is required");
        /* The balloon's statistics are how tidal learns what a dynamic guest needs. */
        if (cfg->mem.dynamic && (!cfg->balloon.enabled || !cfg->balloon.stats_period_s))
                return fail(err, err_size,
                            "dynamic memory needs the balloon and its statistics: drop "
                            "--balloon off or stats-period=0");
        *action = CLI_RUN;
        return 0;
}

/* "cache-kernel": only --kernel and --kernel-cache mean anything there. */
static int parse_cache_kernel(int argc, char **argv, enum cli_action *action, struct vm_config *cfg,
                              char *err, size_t err_size)
{
        static const struct option options[] = {
                {"kernel", required_argument, NULL, OPT_KERNEL},
                {"kernel-cache", required_argument, NULL, OPT_KERNEL_CACHE},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        int r = parse_options(argc, argv, options, 0, action, cfg, err, err_size);

        if (r != 0)
                return r < 0 ? r : 0;
        *action = CLI_CACHE_KERNEL;
        return 0;
}

int cli_parse(int argc, char **argv, uint64_t host_memory, enum cli_action *action,
              struct vm_config *cfg, char *err, size_t err_size)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->nr_cpus = 1;
        cfg->cmdline = DEFAULT_CMDLINE;
        cfg->serial = SERIAL_STDIO;
        cfg->balloon.enabled = true;
        cfg->balloon.deflate_on_oom = true;
        cfg->balloon.free_page_reporting = true;
        cfg->balloon.stats_period_s = 1;

        if (argc < 2)
                return fail(err, err_size, "no command given (see tidal --help)");
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
            strcmp(argv[1], "help") == 0) {
                *action = CLI_HELP;
                return 0;
        }
        if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
                *action = CLI_VERSION;
                return 0;
        }
        if (strcmp(argv[1], "cache-kernel") == 0)
                return parse_cache_kernel(argc - 1, argv + 1, action, cfg, err, err_size);
        if (strcmp(argv[1], "run") != 0)
                return fail(err, err_size, "unknown command '%s' (see tidal --help)", argv[1]);
        return parse_run(argc - 1, argv + 1, host_memory, action, cfg, err, err_size);
}
