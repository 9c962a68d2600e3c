/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Admission: a VM may start (or restart) only if its startup memory can be found. The policy
 * says where (free budget, others' buffers, lower weights down to their minimum) and lowers
 * those grants; the VM waits, pinned at its grant so no round hands that memory out again,
 * until the others have actually shrunk, for at most MEMCTL_ADMIT_TIMEOUT_MS.
 *
 * A restart (a guest reboot) that cannot find its startup, with everything squeezed that the
 * rules allow, is admitted with what was found if that is at least its minimum: the VMM boots
 * the guest with its startup memory and smart paging keeps only the grant resident until the
 * balloon brings the guest within it (issue 6). A cold start is never admitted partially.
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
        char a[32], b[32], e[32];

        m.refused.needed = vm->settings.startup;
        m.refused.found = MIN(found, vm->settings.startup);
        /* A restart may settle for less than its startup, but not for less than its minimum. */
        if (vm->state == VM_RESTARTING)
                snprintf(m.refused.error, sizeof(m.refused.error),
                         "cannot restart %s: needs %s of startup memory, or with smart paging at "
                         "least its minimum of %s; %s could be found",
                         vm->name, format_size(m.refused.needed, a, sizeof(a)),
                         format_size(vm->settings.minimum, e, sizeof(e)),
                         format_size(m.refused.found, b, sizeof(b)));
        else
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
        struct memctl_msg m = {.type = MEMCTL_ADMITTED, .admitted.grant = vm->grant};
        bool partial = vm->grant < vm->settings.startup;

        log_info("%s admitted with %llu MiB", vm->name, (unsigned long long)(vm->grant >> 20));
        vm->state = VM_RUNNING;
        /*
         * The guest boots with its startup memory. With a partial grant the VMM keeps only the
         * grant resident (smart paging), which is what the host gives it until its reports say
         * otherwise.
         */
        vm->assigned = partial ? vm->grant : MAX(vm->assigned, vm->settings.startup);
        vm->paging_limit = partial ? vm->grant : 0;
        vm->have_demand = false;
        vm->fresh = false;
        vm->last_report_ms = now;
        conn_send_msg(vm->conn, &m);
}

/* Asks the policy for the VM's startup; a restart may settle for less, down to its minimum. */
static void find_room(struct daemon *d, const struct vm *vm, struct policy_vm *p, size_t n,
                      struct policy_admission *res)
{
        const struct mem_settings *s = &vm->settings;

        if (vm->state == VM_RESTARTING)
                policy_admit_partial(p, n, d->host.budget, s->startup, s->minimum, s->weight, res);
        else
                policy_admit(p, n, d->host.budget, s->startup, s->weight, res);
}

void admit_request(struct daemon *d, struct vm *vm)
{
        _cleanup_free_ struct policy_vm *p = NULL;
        _cleanup_free_ struct vm **vms = NULL;
        struct policy_admission res;
        size_t n;

        vm->state = vm->state == VM_RUNNING ? VM_RESTARTING : VM_ADMITTING;
        vm->grant = vm->settings.startup;
        vm->admit_deadline_ms = monotonic_ms() + MEMCTL_ADMIT_TIMEOUT_MS;
        if (balance_inputs(d, vm, &p, &vms, &n) < 0) {
                refuse(d, vm, 0);
                return;
        }
        find_room(d, vm, p, n, &res);
        if (!res.admit) {
                refuse(d, vm, res.found);
                balance_round(d);
                return;
        }
        if (res.partial)
                log_info("%s restarts with %llu of %llu MiB: smart paging bridges the gap",
                         vm->name, (unsigned long long)(res.grant >> 20),
                         (unsigned long long)(vm->settings.startup >> 20));
        vm->grant = res.grant;
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
                        uint64_t room = d->host.budget > others ? d->host.budget - others : 0;

                        /*
                         * A restart is a running guest: rather than stop it because others
                         * shrink slowly, it starts with what is free now (smart paging
                         * bridges the rest) as long as that reaches its minimum.
                         */
                        room = ALIGN_DOWN(room, MEM_BLOCK_SIZE);
                        if (vm->state == VM_RESTARTING && room >= vm->settings.minimum) {
                                vm->grant = MIN(vm->grant, room);
                                admit(vm, now);
                                running += vm->grant;
                        } else {
                                refuse(d, vm, room);
                        }
                } else {
                        waiting += mine;
                }
        }
}
