/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tidalctl, the command-line client: options, the command tables, and the one place that talks
 * to a VM and turns the outcome into an exit status. Commands live in tables (one per kind:
 * per-VM today, host-wide through tidald later) so adding one is a table entry and a function.
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
#include "tidal/parse.h"

#define DEFAULT_TIMEOUT_S 10
#define MAX_TIMEOUT_S     3600

static const struct command_group {
        const char *title;
        const struct ctl_command *commands;
        const size_t *count;
} groups[] = {
        {"Commands for one VM (give --api-socket or --name)", ctl_vm_commands,
         &ctl_vm_commands_count},
};

enum {
        OPT_API_SOCKET = 0x100,
        OPT_NAME,
        OPT_JSON,
        OPT_TIMEOUT,
        OPT_VERSION,
};

/* The same options are accepted before and after the command. */
static const struct option options[] = {
        {"api-socket", required_argument, NULL, OPT_API_SOCKET},
        {"name", required_argument, NULL, OPT_NAME},
        {"json", no_argument, NULL, OPT_JSON},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {},
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
                "  --json             print the VM's reply as JSON\n"
                "  --timeout SECONDS  how long to wait for the VM (default %d)\n"
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
        fprintf(f, "\nExit status: 0 done; 1 the VM refused or the request failed; 2 usage error;\n"
                   "3 cannot reach the VM (no socket, nothing listening, timeout).\n");
}

static void print_command_help(const struct ctl_command *c)
{
        printf("Usage: tidalctl [OPTIONS] %s %s\n\n%s.\n", c->name, c->args, c->summary);
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

static int parse_option(struct ctl *ctl, int opt, const char *arg, bool *help)
{
        uint64_t seconds;

        switch (opt) {
        case OPT_API_SOCKET:
                if (arg[0] == '\0' || strlen(arg) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
                        return ctl_fail(CTL_EXIT_USAGE,
                                        "--api-socket: the path must be 1 to 107 bytes long");
                ctl->api_socket = arg;
                return CONTINUE;
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

static const char *connect_error(int r)
{
        switch (-r) {
        case ENOENT:
                return "no such socket (is the VM running?)";
        case ECONNREFUSED:
                return "nothing is listening (a stale socket: the VM has exited)";
        case EACCES:
        case EPERM:
                return "permission denied (the socket belongs to another user)";
        case ETIMEDOUT:
                return "timed out";
        default:
                return strerror(-r);
        }
}

static const char *call_error(int r)
{
        switch (-r) {
        case ETIMEDOUT:
                return "timed out waiting for the reply";
        case ECONNRESET:
                return "the VM closed the connection";
        case EPROTO:
                return "the reply is not valid (is this a tidal control socket?)";
        default:
                return strerror(-r);
        }
}

int ctl_vm_call(struct ctl *ctl, const char *what, struct json_object *request,
                struct json_object **reply)
{
        struct api_client *client;
        const char *err;
        int r;

        r = api_client_connect(ctl->api_socket, ctl->timeout_ms, &client);
        if (r < 0)
                return ctl_fail(CTL_EXIT_UNREACHABLE, "cannot connect to %s: %s", ctl->api_socket,
                                connect_error(r));
        r = api_client_call(client, request, reply);
        api_client_free(client);
        if (r < 0)
                return ctl_fail(CTL_EXIT_UNREACHABLE, "%s: %s", what, call_error(r));
        if (ctl->json)
                printf("%s\n",
                       json_object_to_json_string_ext(
                               *reply, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        err = api_reply_error(*reply);
        if (err)
                return ctl_fail(CTL_EXIT_FAILED, "%s: %s", what, err);
        return CTL_EXIT_OK;
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
