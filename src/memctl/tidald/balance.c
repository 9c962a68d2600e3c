/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The balancing loop: every second, and at once on a registration, an exit, a settings change
 * or a demand spike, the policy (src/memctl/policy, docs/memctl-policy.md) shares the budget
 * and every VM whose grant moved gets a "target". Waiting admissions are served after it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>

#include "memctl/policy/policy.h"
#include "memctl/tidald/balance.h"
#include "memctl/tidald/tidald.h"
#include "tidal/log.h"
#include "tidal/macro.h"

/*
 * A VM waiting for admission or restarting is pinned at the grant admission found for it (its
 * startup, or less for a restart bridged by smart paging): it has no statistics, so the policy
 * keeps its grant, and min = max = grant so it can give nothing. A restarting VM drops to its
 * startup when the guest reboots, so what it held before does not count.
 */
static void pinned_input(const struct vm *vm, struct policy_vm *p)
{
        *p = (struct policy_vm){
                .startup = vm->settings.startup,
                .minimum = vm->grant,
                .maximum = vm->grant,
                .buffer = vm->settings.buffer,
                .weight = MEM_WEIGHT_MAX,
                .grant = vm->grant,
        };
}

/*
 * Host memory the VM holds. While smart paging bridges a partial restart, the guest has its
 * startup memory but the VMM keeps only the admission grant resident: counting the guest's
 * memory would take the gap from the budget a second time, since it sits in the paging file.
 */
uint64_t vm_held(const struct vm *vm)
{
        if (vm->paging.active && vm->paging_limit)
                return MIN(vm->assigned, vm->paging_limit);
        return vm->assigned;
}

void balance_input(const struct vm *vm, uint64_t now, struct policy_vm *p)
{
        const struct mem_settings *s = &vm->settings;

        if (vm->state != VM_RUNNING) {
                pinned_input(vm, p);
                return;
        }
        *p = (struct policy_vm){
                .startup = s->startup,
                .minimum = s->minimum,
                .maximum = s->maximum,
                .buffer = s->buffer,
                .weight = s->weight,
                .have_demand = vm->have_demand,
                .demand = vm->demand,
                .fresh = vm->fresh && now - vm->last_report_ms <= MEMCTL_STALE_MS,
                .assigned = vm_held(vm),
                .grant = vm->grant,
                /* A starving guest's demand is no artefact of memory in flight. */
                .unplugging = vm->pressure ? 0 : vm->unplugging,
        };
}

int balance_inputs(struct daemon *d, const struct vm *skip, struct policy_vm **ret_p,
                   struct vm ***ret_vms, size_t *ret_n)
{
        struct policy_vm *p = calloc(d->nr_vms ? d->nr_vms : 1, sizeof(*p));
        struct vm **vms = calloc(d->nr_vms ? d->nr_vms : 1, sizeof(*vms));
        uint64_t now = monotonic_ms();
        size_t n = 0;

        if (!p || !vms) {
                free(p);
                free(vms);
                return -ENOMEM;
        }
        for (struct vm *vm = d->vms; vm; vm = vm->next) {
                if (vm == skip)
                        continue;
                balance_input(vm, now, &p[n]);
                vms[n++] = vm;
        }
        *ret_p = p;
        *ret_vms = vms;
        *ret_n = n;
        return 0;
}

/* Sends the grants the policy moved to the running VMs. */
void balance_apply(struct policy_vm *p, struct vm **vms, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (vms[i]->state == VM_RUNNING && p[i].grant != vms[i]->grant)
                        vm_send_target(vms[i], p[i].grant);
}

static void notify_status(struct daemon *d)
{
        uint64_t granted = registry_granted(d);

        if (d->status_sent && granted == d->last_status_granted && d->nr_vms == d->last_status_vms)
                return;
        sd_notifyf(0, "STATUS=%zu VMs, %llu of %llu MiB granted", d->nr_vms,
                   (unsigned long long)(granted >> 20), (unsigned long long)(d->host.budget >> 20));
        d->status_sent = true;
        d->last_status_granted = granted;
        d->last_status_vms = d->nr_vms;
}

void balance_round(struct daemon *d)
{
        _cleanup_free_ struct policy_vm *p = NULL;
        _cleanup_free_ struct vm **vms = NULL;
        struct policy_result res;
        size_t n;
        int r;

        r = balance_inputs(d, NULL, &p, &vms, &n);
        if (r < 0) {
                log_errno(r, "cannot run a balancing round");
                return;
        }
        policy_balance(p, n, d->host.budget, &res);
        balance_apply(p, vms, n);
        if (res.changed)
                log_debug("round: %zu grants moved, %llu MiB granted, %llu MiB reserved%s",
                          res.changed, (unsigned long long)(res.granted >> 20),
                          (unsigned long long)(res.reserved >> 20),
                          res.short_of_memory ? ", short of memory" : "");
        admit_pending(d, monotonic_ms());
        notify_status(d);
}

bool balance_is_spike(const struct vm *vm)
{
        uint64_t want, deadband;

        if (vm->state != VM_RUNNING || !vm->have_demand || vm->grant >= vm->settings.maximum)
                return false;
        if (vm->pressure)
                return true;
        want = MIN(mem_with_buffer(vm->demand, vm->settings.buffer), vm->settings.maximum);
        deadband = MAX(POLICY_DEADBAND_MIN, vm->grant / 32);
        return want > vm->grant && want - vm->grant > deadband;
}

static void tick(void *opaque, uint32_t events)
{
        struct daemon *d = opaque;
        uint64_t now = monotonic_ms();

        conn_check_timeouts(d, now);
        http_check_timeouts(d, now);
        host_update(d);
        balance_round(d);
}

static void watchdog(void *opaque, uint32_t events)
{
        sd_notify(0, "WATCHDOG=1");
}

int balance_start(struct daemon *d)
{
        uint64_t usec = 0;
        int r;

        r = event_loop_add_timer(d->loop, TIDALD_ROUND_MS * 1000000ULL, tick, d, &d->tick_src);
        if (r < 0)
                return r;
        if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
                r = event_loop_add_timer(d->loop, usec * 1000 / 2, watchdog, d, &d->watchdog_src);
        return r;
}
