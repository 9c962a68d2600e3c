/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The tidal command line: "tidal run [OPTIONS]", "tidal --help", "tidal --version". */
#pragma once

#include <stdio.h>

#include "vmm/config.h"

enum cli_action {
        CLI_RUN,
        CLI_HELP,
        CLI_VERSION,
        CLI_CACHE_KERNEL, /* "tidal cache-kernel --kernel PATH [--kernel-cache DIR]" */
};

/* Exit code for a usage or configuration error (bad option, bad file, impossible size). */
#define EXIT_USAGE 2
/* Exit code when tidald refuses to admit the VM: its startup memory cannot be found. */
#define EXIT_REFUSED 3

/*
 * Parses argv into cfg (which points into argv; argv must outlive it). On error returns
 * -EINVAL and writes a one-line explanation into err. host_memory (bytes of host RAM, 0 if
 * unknown) bounds --memory.
 */
int cli_parse(int argc, char **argv, uint64_t host_memory, enum cli_action *action,
              struct vm_config *cfg, char *err, size_t err_size);

void cli_print_help(FILE *f);
