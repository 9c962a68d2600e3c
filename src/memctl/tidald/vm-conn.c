/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A VM's connection: "register" first, then "report", "settings" and "restart". Anything else,
 * or anything out of order, gets an "error" and the connection is closed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "memctl/tidald/tidald.h"
#include "tidal/log.h"
#include "tidal/macro.h"

/* Sends an "error" message; the caller's negative return hangs up. */
static int _printf_(2, 3) send_error(struct conn *c, const char *fmt, ...)
{
        struct memctl_msg m = {.type = MEMCTL_ERROR};
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(m.error.error, sizeof(m.error.error), fmt, ap);
        va_end(ap);
        conn_send_msg(c, &m);
        return -EPROTO;
}

static void refuse_duplicate(struct conn *c, const struct memctl_msg *reg)
{
        struct memctl_msg m = {.type = MEMCTL_REFUSED};

        m.refused.needed = reg->reg.settings.startup;
        snprintf(m.refused.error, sizeof(m.refused.error),
                 "cannot admit %s: a VM of that name is already registered", reg->reg.name);
        conn_send_msg(c, &m);
}

/* A grant from a VM that re-registers: trusted only within its own settings. */
static uint64_t clamp_grant(uint64_t grant, const struct mem_settings *s)
{
        grant = ALIGN_DOWN(grant, MEM_BLOCK_SIZE);
        return MIN(MAX(grant, s->minimum), s->maximum);
}

static int handle_register(struct daemon *d, struct conn *c, struct vm **ret,
                           const struct memctl_msg *m)
{
        struct vm *vm;

        if (registry_find(d, m->reg.name)) {
                refuse_duplicate(c, m);
                return -EEXIST;
        }
        vm = registry_add(d, c, m);
        if (!vm)
                return send_error(c, "out of memory");
        *ret = vm;
        if (!m->reg.running) {
                log_info("%s (pid %d, uid %u) asks for %llu MiB", vm->name, (int)vm->pid,
                         (unsigned)vm->uid, (unsigned long long)(vm->settings.startup >> 20));
                admit_request(d, vm);
                return 0;
        }
        /* After a daemon restart: take the VM as it is, even past the budget for a while. */
        vm->state = VM_RUNNING;
        vm->assigned = m->reg.assigned;
        vm->grant = clamp_grant(m->reg.grant, &vm->settings);
        vm->last_report_ms = monotonic_ms();
        log_info("%s (pid %d) re-registered running with %llu MiB, grant %llu MiB", vm->name,
                 (int)vm->pid, (unsigned long long)(vm->assigned >> 20),
                 (unsigned long long)(vm->grant >> 20));
        balance_round(d);
        return 0;
}

static void take_report(struct vm *vm, const struct memctl_msg *m)
{
        vm->assigned = m->report.assigned;
        vm->have_demand = m->report.have_demand;
        vm->demand = m->report.demand;
        vm->fresh = m->report.fresh;
        vm->pressure = m->report.pressure;
        vm->status = m->report.status;
        vm->balloon = m->report.balloon;
        vm->vmem_plugged = m->report.vmem_plugged;
        vm->unplugging = m->report.unplugging;
        vm->paging = m->report.paging;
        vm->last_report_ms = monotonic_ms();
}

static int handle_settings(struct daemon *d, struct vm *vm, const struct memctl_msg *m)
{
        if (m->settings.settings.startup != vm->settings.startup)
                return send_error(vm->conn, "startup cannot change while the VM runs");
        vm->settings = m->settings.settings;
        balance_round(d);
        return 0;
}

int vm_handle_line(struct daemon *d, struct conn *c, struct vm **vm, const char *line, size_t len)
{
        struct memctl_msg m;
        char err[256];

        if (memctl_msg_parse(line, len, &m, err, sizeof(err)) < 0)
                return send_error(c, "%s", err);
        if (!*vm)
                return m.type == MEMCTL_REGISTER ? handle_register(d, c, vm, &m)
                                                 : send_error(c, "the first message must be "
                                                                 "\"register\"");
        switch (m.type) {
        case MEMCTL_REPORT:
                if ((*vm)->state == VM_ADMITTING)
                        return send_error(c, "\"report\" before \"admitted\"");
                take_report(*vm, &m);
                if (balance_is_spike(*vm))
                        balance_round(d);
                return 0;
        case MEMCTL_SETTINGS:
                return handle_settings(d, *vm, &m);
        case MEMCTL_RESTART:
                if ((*vm)->state != VM_RUNNING)
                        return send_error(c, "\"restart\" while not running");
                admit_request(d, *vm);
                return 0;
        case MEMCTL_REGISTER:
                return send_error(c, "already registered");
        default:
                return send_error(c, "\"%s\" is not a message a VM sends",
                                  m.type == MEMCTL_TARGET     ? "target"
                                  : m.type == MEMCTL_ADMITTED ? "admitted"
                                  : m.type == MEMCTL_REFUSED  ? "refused"
                                                              : "error");
        }
}

/* The VM exited or crashed, or broke the protocol: its memory is free at once. */
void vm_conn_closed(struct daemon *d, struct vm *vm)
{
        log_info("%s (pid %d) is gone; its %llu MiB are free", vm->name, (int)vm->pid,
                 (unsigned long long)(MAX(vm->grant, vm->assigned) >> 20));
        registry_remove(d, vm);
        balance_round(d);
}
