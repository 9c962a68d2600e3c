/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The life of one guest in one tidal process: load and check the boot files, build the VM,
 * run it, and on a guest reboot tear it down and build it again in the same process (later,
 * smart paging hangs off this restart path).
 */
#pragma once

#include "vmm/config.h"

/*
 * Exit status of the process: 0 powered off or stopped by a signal, 1 failure, 2 config error,
 * 3 refused by tidald.
 */
int vmm_run(const struct vm_config *cfg);

/*
 * "tidal cache-kernel": decompresses cfg->kernel_path into the kernel cache now (vm-kernel.c)
 * and prints the entry's path. The process exit status.
 */
int vmm_cache_kernel(const struct vm_config *cfg);
