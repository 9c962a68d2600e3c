/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tidalctl, the command-line client: options, the command tables, and the one place that talks
 * to a VM or to tidald and turns the outcome into an exit status. Commands live in tables (one
 * per kind: per-VM, host-wide through tidald) so adding one is a table entry and a function.
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "memctl/client.h"
#include "memctl/ctl.h"
#include "tidal/api.h"
#include "tidal/memctl-proto.h"
#include "tidal/memory-settings.h"
#include "tidal/parse.h"
#include "tidal/unix-socket.h"

#define DEFAULT_TIMEOUT_S 10
#define MAX_TIMEOUT_S     3600
#define MAX_INTERVAL_S    3600
#define MAX_COUNT         1000000

static const struct command_group {
        const char *title;
        const struct ctl_command *commands;
        const size_t *count;
} groups[] = {
        {"Commands for one VM (give --api-socket or --name)", ctl_vm_commands,
         &ctl_vm_commands_count},
        {"Commands for the host (talk to tidald; --socket PATH, default " MEMCTL_SOCKET_DEFAULT ")",
         ctl_host_commands, &ctl_host_commands_count},
};

enum {
        OPT_API_SOCKET = 0x100,
        OPT_NAME,
        OPT_JSON,
        OPT_TIMEOUT,
        OPT_VERSION,
        OPT_SOCKET,
        OPT_MINIMUM,
        OPT_MAXIMUM,
        OPT_BUFFER,
        OPT_WEIGHT,
        OPT_INTERVAL,
        OPT_COUNT,
};

/* The same options are accepted before and after the command. */
static const struct option options[] = {
        {"api-socket", required_argument, NULL, OPT_API_SOCKET},
        {"name", required_argument, NULL, OPT_NAME},
        {"json", no_argument, NULL, OPT_JSON},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"minimum", required_argument, NULL, OPT_MINIMUM},
        {"maximum", required_argument, NULL, OPT_MAXIMUM},
        {"buffer", required_argument, NULL, OPT_BUFFER},
        {"weight", required_argument, NULL, OPT_WEIGHT},
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"count", required_argument, NULL, OPT_COUNT},
        {},
};

/* The per-command options: how --help shows them and how a misplaced one is named. */
static const struct {
        unsigned bit;
        const char *name, *arg, *help;
} command_options[] = {
        {CTL_OPT_MINIMUM, "--minimum", "SIZE",
         "lower Minimum (it may not be raised while running)"},
        {CTL_OPT_MAXIMUM, "--maximum", "SIZE",
         "raise Maximum (it may not be lowered while running)"},
        {CTL_OPT_BUFFER, "--buffer", "PERCENT", "memory to hold above demand, 5 to 2000 %"},
        {CTL_OPT_WEIGHT, "--weight", "N", "priority when memory is short, 0 to 10000"},
        {CTL_OPT_INTERVAL, "--interval", "SECONDS",
         "time between refreshes, 1 to 3600 (default 1)"},
        {CTL_OPT_COUNT, "--count", "N", "stop after N refreshes (default: until interrupted)"},
};

int ctl_fail(int status, const char *fmt, ...)
{
        va_list ap;

        fputs("tidalctl: error: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return status;
}

static void print_help(FILE *f)
{
        fprintf(f,
                "Usage: tidalctl [OPTIONS] COMMAND [ARGS] [OPTIONS]\n"
                "\n"
                "Control tidal virtual machines.\n"
                "\n"
                "Options:\n"
                "  --api-socket PATH  the VM's control socket\n"
                "  --name NAME        the VM's name; its socket is\n"
                "                     $XDG_RUNTIME_DIR/tidal/NAME.sock (/run/tidal/NAME.sock "
                "for root)\n"
                "  --socket PATH      tidald's socket (default " MEMCTL_SOCKET_DEFAULT ")\n"
                "  --json             print the reply as JSON\n"
                "  --timeout SECONDS  how long to wait for the VM or tidald (default %d)\n"
                "  -h, --help         show this help; after a command, that command's\n"
                "  --version          show the version\n",
                DEFAULT_TIMEOUT_S);
        for (size_t g = 0; g < ARRAY_SIZE(groups); g++) {
                fprintf(f, "\n%s:\n", groups[g].title);
                for (size_t i = 0; i < *groups[g].count; i++) {
                        const struct ctl_command *c = &groups[g].commands[i];
                        char synopsis[64];

                        snprintf(synopsis, sizeof(synopsis), "%s %s", c->name, c->args);
                        fprintf(f, "  %-23s%s\n", synopsis, c->summary);
                }
        }
        fprintf(f, "\nExit status: 0 done; 1 the VM or tidald refused or the request failed;\n"
                   "2 usage error; 3 cannot reach the VM or tidald (no socket, nothing listening,\n"
                   "timeout).\n");
}

static void print_command_help(const struct ctl_command *c)
{
        printf("Usage: tidalctl [OPTIONS] %s %s\n\n%s.\n", c->name, c->args, c->summary);
        if (c->options)
                printf("\nOptions:\n");
        for (size_t i = 0; i < ARRAY_SIZE(command_options); i++) {
                char synopsis[32];

                if (!(c->options & command_options[i].bit))
                        continue;
                snprintf(synopsis, sizeof(synopsis), "%s %s", command_options[i].name,
                         command_options[i].arg);
                printf("  %-20s%s\n", synopsis, command_options[i].help);
        }
}

static const struct ctl_command *find_command(const char *name)
{
        for (size_t g = 0; g < ARRAY_SIZE(groups); g++)
                for (size_t i = 0; i < *groups[g].count; i++)
                        if (strcmp(groups[g].commands[i].name, name) == 0)
                                return &groups[g].commands[i];
        return NULL;
}

/* Result of option parsing: keep going, or exit now with this status. */
#define CONTINUE -1

static bool socket_path_valid(const char *path)
{
        return path[0] != '\0' && strlen(path) <= UNIX_PATH_MAX_LEN;
}

/* A size option (--minimum, --maximum) into *ret; remembers that it was given. */
static int parse_size_option(struct ctl *ctl, unsigned bit, const char *opt, const char *arg,
                             uint64_t *ret)
{
        if (parse_size(arg, ret) < 0 || *ret > MEM_SETTINGS_MAX)
                return ctl_fail(CTL_EXIT_USAGE, "%s: '%s' is not a size up to 1T (like 512M or 2G)",
                                opt, arg);
        ctl->given |= bit;
        return CONTINUE;
}

/* A number option in [min, max] into *ret; remembers that it was given. */
static int parse_number_option(struct ctl *ctl, unsigned bit, const char *opt, const char *arg,
                               unsigned min, unsigned max, unsigned *ret)
{
        uint64_t v;

        if (parse_uint(arg, min, max, &v) < 0)
                return ctl_fail(CTL_EXIT_USAGE, "%s: '%s' is not a number from %u to %u", opt, arg,
                                min, max);
        *ret = (unsigned)v;
        ctl->given |= bit;
        return CONTINUE;
}

/* The options only some commands take (checked against the command in run_command()). */
static int parse_command_option(struct ctl *ctl, int opt, const char *arg)
{
        switch (opt) {
        case OPT_MINIMUM:
                return parse_size_option(ctl, CTL_OPT_MINIMUM, "--minimum", arg, &ctl->minimum);
        case OPT_MAXIMUM:
                return parse_size_option(ctl, CTL_OPT_MAXIMUM, "--maximum", arg, &ctl->maximum);
        case OPT_BUFFER:
                /* The range the protocol carries; the daemon applies the rules (5 at least). */
                return parse_number_option(ctl, CTL_OPT_BUFFER, "--buffer", arg, 0, MEM_BUFFER_MAX,
                                           &ctl->buffer);
        case OPT_WEIGHT:
                return parse_number_option(ctl, CTL_OPT_WEIGHT, "--weight", arg, 0, MEM_WEIGHT_MAX,
                                           &ctl->weight);
        case OPT_INTERVAL:
                return parse_number_option(ctl, CTL_OPT_INTERVAL, "--interval", arg, 1,
                                           MAX_INTERVAL_S, &ctl->interval_s);
        default: /* OPT_COUNT */
                return parse_number_option(ctl, CTL_OPT_COUNT, "--count", arg, 1, MAX_COUNT,
                                           &ctl->count);
        }
}

static int parse_option(struct ctl *ctl, int opt, const char *arg, bool *help)
{
        uint64_t seconds;

        switch (opt) {
        case OPT_API_SOCKET:
                if (!socket_path_valid(arg))
                        return ctl_fail(CTL_EXIT_USAGE,
                                        "--api-socket: the path must be 1 to 107 bytes long");
                ctl->api_socket = arg;
                return CONTINUE;
        case OPT_SOCKET:
                if (!socket_path_valid(arg))
                        return ctl_fail(CTL_EXIT_USAGE,
                                        "--socket: the path must be 1 to 107 bytes long");
                ctl->socket = arg;
                return CONTINUE;
        case OPT_MINIMUM:
        case OPT_MAXIMUM:
        case OPT_BUFFER:
        case OPT_WEIGHT:
        case OPT_INTERVAL:
        case OPT_COUNT:
                return parse_command_option(ctl, opt, arg);
        case OPT_NAME:
                ctl->name = arg;
                return CONTINUE;
        case OPT_JSON:
                ctl->json = true;
                return CONTINUE;
        case OPT_TIMEOUT:
                if (parse_uint(arg, 1, MAX_TIMEOUT_S, &seconds) < 0)
                        return ctl_fail(CTL_EXIT_USAGE, "--timeout: '%s' is not 1 to %d seconds",
                                        arg, MAX_TIMEOUT_S);
                ctl->timeout_ms = (int)seconds * 1000;
                return CONTINUE;
        case 'h':
                *help = true;
                return CONTINUE;
        case OPT_VERSION:
                printf("tidalctl %s\n", TIDAL_VERSION);
                return CTL_EXIT_OK;
        default:
                /* getopt takes "-1" for an option: say what is really wrong. */
                if (arg && arg[0] == '-' && arg[1] >= '0' && arg[1] <= '9')
                        return ctl_fail(CTL_EXIT_USAGE, "'%s': negative numbers are not allowed",
                                        arg);
                return ctl_fail(CTL_EXIT_USAGE,
                                "unknown option or missing argument: '%s' (see "
                                "tidalctl --help)",
                                arg ? arg : "?");
        }
}

/*
 * Parses options from argv[1] on; stop_at_command stops at the first non-option (the command),
 * otherwise options and arguments may mix and arguments are moved to the end (GNU getopt).
 */
static int parse_options(struct ctl *ctl, int argc, char **argv, bool stop_at_command, bool *help)
{
        int opt;

        optind = 0; /* GNU: re-initialize, argv changes between calls */
        opterr = 0;
        while ((opt = getopt_long(argc, argv, stop_at_command ? "+h" : "h", options, NULL)) != -1) {
                int status = parse_option(ctl, opt, opt == '?' ? argv[optind - 1] : optarg, help);

                if (status != CONTINUE)
                        return status;
        }
        return CONTINUE;
}

static int resolve_socket(struct ctl *ctl)
{
        int r;

        if (ctl->api_socket && ctl->name)
                return ctl_fail(CTL_EXIT_USAGE, "give --api-socket or --name, not both");
        if (ctl->api_socket)
                return CONTINUE;
        if (!ctl->name)
                return ctl_fail(CTL_EXIT_USAGE, "which VM? give --api-socket PATH or --name NAME");
        r = api_socket_default_path(ctl->name, ctl->path_buf, sizeof(ctl->path_buf));
        if (r == -ENXIO)
                return ctl_fail(CTL_EXIT_USAGE, "--name: XDG_RUNTIME_DIR is not set, so there is "
                                                "no default socket; use --api-socket PATH");
        if (r < 0)
                return ctl_fail(CTL_EXIT_USAGE, "--name: '%s' is not a usable VM name: %s",
                                ctl->name, strerror(-r));
        ctl->api_socket = ctl->path_buf;
        return CONTINUE;
}

/* Whom a request goes to, for error messages that say what is likely wrong. */
struct peer {
        const char *path;
        const char *who;     /* "the VM", "tidald" */
        const char *denied;  /* why permission may be denied */
        const char *invalid; /* what the socket should have been */
        size_t reply_max;    /* longest reply line it may send */
};

static void connect_error(int r, const struct peer *p, char *buf, size_t size)
{
        switch (-r) {
        case ENOENT:
                snprintf(buf, size, "no such socket (is %s running?)", p->who);
                break;
        case ECONNREFUSED:
                snprintf(buf, size, "nothing is listening (a stale socket: %s has exited)", p->who);
                break;
        case EACCES:
        case EPERM:
                snprintf(buf, size, "permission denied (%s)", p->denied);
                break;
        case ETIMEDOUT:
                snprintf(buf, size, "timed out");
                break;
        default:
                snprintf(buf, size, "%s", strerror(-r));
                break;
        }
}

static void call_error(int r, const struct peer *p, char *buf, size_t size)
{
        switch (-r) {
        case ETIMEDOUT:
                snprintf(buf, size, "timed out waiting for the reply");
                break;
        case ECONNRESET:
                snprintf(buf, size, "%s closed the connection", p->who);
                break;
        case EPROTO:
                snprintf(buf, size, "the reply is not valid (is this %s?)", p->invalid);
                break;
        default:
                snprintf(buf, size, "%s", strerror(-r));
                break;
        }
}

static int call(struct ctl *ctl, const struct peer *p, const char *what,
                struct json_object *request, struct json_object **reply)
{
        struct api_client *client;
        const char *err;
        char why[128];
        int r;

        r = api_client_connect(p->path, ctl->timeout_ms, p->reply_max, &client);
        if (r < 0) {
                connect_error(r, p, why, sizeof(why));
                return ctl_fail(CTL_EXIT_UNREACHABLE, "cannot connect to %s: %s", p->path, why);
        }
        r = api_client_call(client, request, reply);
        api_client_free(client);
        if (r < 0) {
                call_error(r, p, why, sizeof(why));
                return ctl_fail(CTL_EXIT_UNREACHABLE, "%s: %s", what, why);
        }
        if (ctl->json)
                printf("%s\n",
                       json_object_to_json_string_ext(
                               *reply, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        err = api_reply_error(*reply);
        if (err)
                return ctl_fail(CTL_EXIT_FAILED, "%s: %s", what, err);
        return CTL_EXIT_OK;
}

int ctl_vm_call(struct ctl *ctl, const char *what, struct json_object *request,
                struct json_object **reply)
{
        const struct peer vm = {
                .path = ctl->api_socket,
                .who = "the VM",
                .denied = "the socket belongs to another user",
                .invalid = "a tidal control socket",
                .reply_max = API_LINE_MAX,
        };

        return call(ctl, &vm, what, request, reply);
}

int ctl_host_call(struct ctl *ctl, const char *what, struct json_object *request,
                  struct json_object **reply)
{
        const struct peer tidald = {
                .path = ctl->socket ? ctl->socket : MEMCTL_SOCKET_DEFAULT,
                .who = "tidald",
                .denied = "only root and the tidal group may use tidald's socket",
                .invalid = "tidald's socket",
                .reply_max = MEMCTL_REPLY_MAX,
        };

        return call(ctl, &tidald, what, request, reply);
}

/* Options that the command does not take, or that address the wrong peer: a usage error. */
static int check_options(const struct ctl *ctl, const struct ctl_command *c)
{
        unsigned misplaced = ctl->given & ~c->options;

        for (size_t i = 0; i < ARRAY_SIZE(command_options); i++)
                if (misplaced & command_options[i].bit)
                        return ctl_fail(CTL_EXIT_USAGE, "'%s' takes no %s (see tidalctl %s --help)",
                                        c->name, command_options[i].name, c->name);
        if (c->needs_vm && ctl->socket)
                return ctl_fail(CTL_EXIT_USAGE,
                                "--socket is tidald's; '%s' talks to a VM (--api-socket or --name)",
                                c->name);
        if (!c->needs_vm && (ctl->api_socket || ctl->name))
                return ctl_fail(CTL_EXIT_USAGE,
                                "--api-socket and --name choose a VM; '%s' talks to tidald "
                                "(--socket)",
                                c->name);
        return CONTINUE;
}

static int run_command(struct ctl *ctl, int argc, char **argv)
{
        const struct ctl_command *c = find_command(argv[0]);
        bool help = false;
        unsigned nargs;
        int status;

        if (!c)
                return ctl_fail(CTL_EXIT_USAGE, "unknown command '%s' (see tidalctl --help)",
                                argv[0]);
        status = parse_options(ctl, argc, argv, false, &help);
        if (status != CONTINUE)
                return status;
        if (help) {
                print_command_help(c);
                return CTL_EXIT_OK;
        }
        status = check_options(ctl, c);
        if (status != CONTINUE)
                return status;
        nargs = (unsigned)(argc - optind);
        if (nargs < c->min_args || nargs > c->max_args)
                return ctl_fail(CTL_EXIT_USAGE, "usage: tidalctl %s %s", c->name, c->args);
        if (c->needs_vm) {
                status = resolve_socket(ctl);
                if (status != CONTINUE)
                        return status;
        }
        return c->run(ctl, (int)nargs, argv + optind);
}

int main(int argc, char **argv)
{
        struct ctl ctl = {.timeout_ms = DEFAULT_TIMEOUT_S * 1000};
        bool help = false;
        int status;

        status = parse_options(&ctl, argc, argv, true, &help);
        if (status != CONTINUE)
                return status;
        if (help) {
                print_help(stdout);
                return CTL_EXIT_OK;
        }
        if (optind >= argc) {
                print_help(stderr);
                return CTL_EXIT_USAGE;
        }
        return run_command(&ctl, argc - optind, argv + optind);
}
