/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tidalctl's pieces: the command table and what every command gets. Per-VM commands talk to a
 * VM's control socket (vm-commands.c); host-wide ones talk to tidald the same way
 * (host-commands.c).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tidal/macro.h"

struct json_object;

/* Exit status (docs/tidalctl.md). */
enum {
        CTL_EXIT_OK = 0,
        CTL_EXIT_FAILED = 1,      /* the VM answered and refused, or the request failed */
        CTL_EXIT_USAGE = 2,       /* bad command line */
        CTL_EXIT_UNREACHABLE = 3, /* cannot connect, or the connection broke or timed out */
};

/* Options only some commands take; a command lists the ones it accepts (ctl_command.options). */
enum {
        CTL_OPT_MINIMUM = 1u << 0,  /* --minimum SIZE */
        CTL_OPT_MAXIMUM = 1u << 1,  /* --maximum SIZE */
        CTL_OPT_BUFFER = 1u << 2,   /* --buffer PERCENT */
        CTL_OPT_WEIGHT = 1u << 3,   /* --weight N */
        CTL_OPT_INTERVAL = 1u << 4, /* --interval SECONDS */
        CTL_OPT_COUNT = 1u << 5,    /* --count N */
};

struct ctl {
        const char *api_socket; /* --api-socket, or resolved from --name */
        const char *name;       /* --name */
        const char *socket;     /* --socket: tidald's, for host commands */
        bool json;              /* print the raw reply */
        int timeout_ms;
        unsigned given; /* CTL_OPT_* given on the command line, with their values: */
        uint64_t minimum, maximum;
        unsigned buffer, weight;
        unsigned interval_s, count;
        char path_buf[128];
};

struct ctl_command {
        const char *name;
        const char *args; /* synopsis of the arguments, for --help */
        const char *summary;
        unsigned min_args, max_args;
        bool needs_vm; /* talks to one VM's control socket; otherwise to tidald */
        /* Returns an exit status; prints its own output and errors. */
        int (*run)(struct ctl *ctl, int argc, char **argv);
        unsigned options; /* CTL_OPT_* it accepts */
};

extern const struct ctl_command ctl_vm_commands[];
extern const size_t ctl_vm_commands_count;
extern const struct ctl_command ctl_host_commands[];
extern const size_t ctl_host_commands_count;

/* Prints an error line "tidalctl: error: ..." and returns status. */
int ctl_fail(int status, const char *fmt, ...) _printf_(2, 3);

/* Sends request to the VM, prints the outcome (the raw reply with --json) and returns a status. */
int ctl_vm_call(struct ctl *ctl, const char *what, struct json_object *request,
                struct json_object **reply);

/* The same for an admin request to tidald (--socket, default MEMCTL_SOCKET_DEFAULT). */
int ctl_host_call(struct ctl *ctl, const char *what, struct json_object *request,
                  struct json_object **reply);

/* The info object as an aligned key/value listing (sizes and durations formatted). */
void ctl_print_info(FILE *f, struct json_object *info);
