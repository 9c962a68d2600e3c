/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Smart paging on the VMM's restart path (docs/smart-paging.md, "In the VMM"): a guest reboot
 * that tidald admits with less than the startup memory runs its boot RAM through the paging
 * engine (src/smartpage) with the grant as the resident limit, until the balloon has brought
 * the guest within what the daemon gives it. Everything here runs on the event-loop thread,
 * except the worker that reads the pages back at the end.
 */
#pragma once

#include <stdint.h>

#include "tidal/memctl-proto.h"

struct vm;

/*
 * A reboot was admitted with `grant` < startup: takes boot RAM over with `grant` resident,
 * before the vCPUs run. What tidal loaded into RAM itself (ACPI tables, kernel, initrd) is
 * already in the memfd and counts as resident. 0, or a negative errno, logged.
 */
int vm_paging_start(struct vm *vm, uint64_t grant);

/*
 * The boot is being torn down and its vCPUs were asked to stop (vcpu_request_stop), not joined
 * yet: waits for a read-back in progress, then releases the engine. Releasing unregisters the
 * range, which wakes a vCPU blocked in a fault nobody serves any more (after an error), so that
 * it can see the stop request and be joined.
 */
void vm_paging_free(struct vm *vm);

/* The boot's smart paging status (all zero when it did not page). */
void vm_paging_get(struct vm *vm, struct memctl_paging *ret);
