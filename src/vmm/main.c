/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "tidal/log.h"
#include "vmm/cli.h"
#include "vmm/vm.h"

static uint64_t host_memory(void)
{
        struct sysinfo si;

        if (sysinfo(&si) < 0)
                return 0;
        return (uint64_t)si.totalram * si.mem_unit;
}

int main(int argc, char **argv)
{
        enum cli_action action;
        struct vm_config cfg;
        char err[256];

        log_set_prefix("tidal");
        if (getenv("TIDAL_DEBUG"))
                log_set_level(LOG_LEVEL_DEBUG);
        if (cli_parse(argc, argv, host_memory(), &action, &cfg, err, sizeof(err)) < 0) {
                log_error("%s", err);
                return EXIT_USAGE;
        }
        switch (action) {
        case CLI_HELP:
                cli_print_help(stdout);
                return 0;
        case CLI_VERSION:
                printf("tidal %s\n", TIDAL_VERSION);
                return 0;
        case CLI_CACHE_KERNEL:
                return vmm_cache_kernel(&cfg);
        case CLI_RUN:
                break;
        }
        if (cfg.name[0] == '\0')
                snprintf(cfg.name, sizeof(cfg.name), "tidal-%d", (int)getpid());
        return vmm_run(&cfg);
}
