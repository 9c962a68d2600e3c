/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Dynamic memory's share of building a VM: the hot-plug region in guest memory, the virtio-mem
 * device over it, and what the guest kernel's command line needs for hot-added memory.
 */
#pragma once

#include <stdint.h>

#include "vmm/config.h"

struct vm;

/* Bytes of the hot-plug region cfg asks for: 0 with static memory or no room above startup. */
uint64_t vm_hotplug_region_size(const struct vm_config *cfg);

/* Guest memory for one boot: boot RAM and, with dynamic memory, the hot-plug region. Logged. */
int vm_guest_mem_init(struct vm *vm);

/* The virtio-mem device over the hot-plug region, on the PCI bus (nothing without one). Logged. */
int vm_setup_virtio_mem(struct vm *vm);

/*
 * The guest kernel's command line: the user's, plus memhp_default_state=online and
 * memory_hotplug.online_policy=auto-movable when
 * there is a hot-plug region and the user did not choose a state. Allocated; NULL if out of
 * memory.
 */
char *vm_guest_cmdline(const struct vm_config *cfg);
