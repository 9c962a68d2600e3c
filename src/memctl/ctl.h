/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tidalctl's pieces: the command table and what every command gets. Per-VM commands talk to a
 * VM's control socket (vm-commands.c); host-wide ones, later, will talk to tidald the same way.
 */
#pragma once

#include <stdbool.h>
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

struct ctl {
        const char *api_socket; /* --api-socket, or resolved from --name */
        const char *name;       /* --name */
        bool json;              /* print the raw reply */
        int timeout_ms;
        char path_buf[128];
};

struct ctl_command {
        const char *name;
        const char *args; /* synopsis of the arguments, for --help */
        const char *summary;
        unsigned min_args, max_args;
        bool needs_vm; /* talks to one VM's control socket */
        /* Returns an exit status; prints its own output and errors. */
        int (*run)(struct ctl *ctl, int argc, char **argv);
};

extern const struct ctl_command ctl_vm_commands[];
extern const size_t ctl_vm_commands_count;

/* Prints an error line "tidalctl: error: ..." and returns status. */
int ctl_fail(int status, const char *fmt, ...) _printf_(2, 3);

/* Sends request to the VM, prints the outcome (the raw reply with --json) and returns a status. */
int ctl_vm_call(struct ctl *ctl, const char *what, struct json_object *request,
                struct json_object **reply);

/* The info object as an aligned key/value listing (sizes and durations formatted). */
void ctl_print_info(FILE *f, struct json_object *info);
