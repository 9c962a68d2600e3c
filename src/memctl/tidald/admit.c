/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Admission: a VM may start (or restart) only if its startup memory can be found. The policy
 * says where (free budget, others' buffers, lower weights down to their minimum) and lowers
 * those grants; the VM waits, pinned at its startup so no round hands that memory out again,
 * until the others have actually shrunk, for at most MEMCTL_ADMIT_TIMEOUT_MS.
 */
#include <stdio.h>
#include <stdlib.h>

#include "memctl/tidald/balance.h"
#include "memctl/tidald/tidald.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "tidal/parse.h"

static void refuse(struct daemon *d, struct vm *vm, uint64_t found)
{
        struct memctl_msg m = {.type = MEMCTL_REFUSED};
        struct conn *c = vm->conn;
        char a[32], b[32];

        m.refused.needed = vm->settings.startup;
        m.refused.found = MIN(found, vm->settings.startup);
        snprintf(m.refused.error, sizeof(m.refused.error),
                 "cannot admit %s: needs %s of startup memory, %s could be found", vm->name,
                 format_size(m.refused.needed, a, sizeof(a)),
                 format_size(m.refused.found, b, sizeof(b)));
        log_info("%s", m.refused.error);
        conn_send_msg(c, &m);
        /* Its memory is spoken for no more; the connection closes once the answer is out. */
        conn_detach_vm(c);
        registry_remove(d, vm);
        conn_hang_up(c);
}

static void admit(struct vm *vm, uint64_t now)
{
        struct memctl_msg m = {.type = MEMCTL_ADMITTED, .admitted.grant = vm->settings.startup};

        log_info("%s admitted with %llu MiB", vm->name,
                 (unsigned long long)(vm->settings.startup >> 20));
        vm->state = VM_RUNNING;
        vm->grant = vm->settings.startup;
        vm->assigned = MAX(vm->assigned, vm->settings.startup);
        vm->have_demand = false;
        vm->fresh = false;
        vm->last_report_ms = now;
        conn_send_msg(vm->conn, &m);
}

void admit_request(struct daemon *d, struct vm *vm)
{
        _cleanup_free_ struct policy_vm *p = NULL;
        _cleanup_free_ struct vm **vms = NULL;
        struct policy_admission res;
        size_t n;

        vm->state = vm->state == VM_RUNNING ? VM_RESTARTING : VM_ADMITTING;
        vm->grant = vm->settings.startup;
        vm->admit_deadline_ms = now_ms() + MEMCTL_ADMIT_TIMEOUT_MS;
        if (balance_inputs(d, vm, &p, &vms, &n) < 0) {
                refuse(d, vm, 0);
                return;
        }
        policy_admit(p, n, d->host.budget, vm->settings.startup, vm->settings.weight, &res);
        if (!res.admit) {
                refuse(d, vm, res.found);
                balance_round(d);
                return;
        }
        balance_apply(p, vms, n);
        /* Admits at once if the room is free already; else when the others have shrunk. */
        balance_round(d);
}

/* Memory the VM holds or may take: what the policy calls reserved. */
static uint64_t reserved_by(const struct vm *vm, uint64_t now)
{
        struct policy_vm p;

        balance_input(vm, now, &p);
        return MAX(p.grant, p.assigned);
}

void admit_pending(struct daemon *d, uint64_t now)
{
        uint64_t running = 0, waiting = 0;
        struct vm *next;

        for (struct vm *vm = d->vms; vm; vm = vm->next)
                if (vm->state == VM_RUNNING)
                        running += reserved_by(vm, now);
        /* In registration order: the first to ask is the first served. */
        for (struct vm *vm = d->vms; vm; vm = next) {
                uint64_t others = running + waiting, mine = reserved_by(vm, now);

                next = vm->next;
                if (vm->state == VM_RUNNING)
                        continue;
                if (others + mine <= d->host.budget) {
                        admit(vm, now);
                        running += mine;
                } else if (now >= vm->admit_deadline_ms) {
                        refuse(d, vm, d->host.budget > others ? d->host.budget - others : 0);
                } else {
                        waiting += mine;
                }
        }
}
