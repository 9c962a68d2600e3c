/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The policy's view of the VMs, shared by the balancing loop and admission. */
#pragma once

#include <stddef.h>

#include "memctl/policy/policy.h"
#include "memctl/tidald/tidald.h"

/*
 * Host memory the VM holds: what it has, except that under smart paging only the admission
 * grant is resident (the rest is in the paging file).
 */
uint64_t vm_held(const struct vm *vm);

/* The policy's input for one VM. */
void balance_input(const struct vm *vm, uint64_t now, struct policy_vm *p);

/* Every VM but `skip` as policy input, with the VM each entry stands for. Caller frees both. */
int balance_inputs(struct daemon *d, const struct vm *skip, struct policy_vm **ret_p,
                   struct vm ***ret_vms, size_t *ret_n);

/* Sends a "target" to every running VM whose grant the policy moved. */
void balance_apply(struct policy_vm *p, struct vm **vms, size_t n);
