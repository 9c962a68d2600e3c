/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Pagers that are not the engine, run under the same KVM guest to tell a fault of the engine
 * from a fault of the platform (the kernel's KVM and userfaultfd, or the hypervisor below):
 *  - simple: the simplest correct userfaultfd pager. One thread resolves faults (MINOR: map the
 *    page again; MISSING: copy its saved contents in) and between faults evicts a random page
 *    (zap, save through a second mapping, punch). With `zap` it also unmaps random resident
 *    pages without evicting them, as the engine's clock does, so that MINOR faults are common.
 *  - punch: no userfaultfd; a thread punches random pages of the pattern (their contents are
 *    lost: the guest reads zeroes) and unmaps random pages of the rest (contents kept).
 * Both stop with reference_pager_stop().
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kvm-guest.h"

struct reference_pager;

int reference_pager_start_simple(struct kvm_guest *g, bool zap, struct reference_pager **ret);
int reference_pager_start_punch(struct kvm_guest *g, struct reference_pager **ret);
/* Pages moved so far: it advances while the pager works. */
uint64_t reference_pager_progress(const struct reference_pager *p);
void reference_pager_stop(struct reference_pager *p);
