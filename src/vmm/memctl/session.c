/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>
#include <string.h>

#include "tidal/parse.h"
#include "vmm/memctl/session.h"

void memctl_session_init(struct memctl_session *s)
{
        *s = (struct memctl_session){.phase = MEMCTL_PHASE_DISCONNECTED};
}

/*
 * running: the guest already runs with `assigned` and is moving to `target`; the daemon takes
 * its state from it instead of admitting it. A first registration asks for startup.
 */
static void build_register(const struct memctl_vm *vm, bool running, struct memctl_msg *ret)
{
        *ret = (struct memctl_msg){.type = MEMCTL_REGISTER};
        snprintf(ret->reg.name, sizeof(ret->reg.name), "%s", vm->name);
        ret->reg.settings = *vm->settings;
        ret->reg.running = running;
        ret->reg.assigned = running ? vm->assigned : vm->settings->startup;
        ret->reg.grant = running ? vm->target : vm->settings->startup;
}

bool memctl_session_connected(struct memctl_session *s, const struct memctl_vm *vm,
                              struct memctl_msg *ret)
{
        if (s->connected_once)
                s->reconnects++;
        s->connected_once = true;
        if (s->wait == MEMCTL_WAIT_PENDING && !s->reboot) {
                build_register(vm, false, ret);
                s->phase = MEMCTL_PHASE_ADMITTING;
        } else if (s->running) {
                build_register(vm, true, ret);
                s->phase = MEMCTL_PHASE_ACTIVE;
                s->answer_open = true;
        } else {
                s->phase = MEMCTL_PHASE_CONNECTED;
                return false;
        }
        return true;
}

void memctl_session_disconnected(struct memctl_session *s)
{
        s->phase = MEMCTL_PHASE_DISCONNECTED;
        s->answer_open = false;
        /* A rebooting guest does not wait for a daemon that is not there. */
        if (s->wait == MEMCTL_WAIT_PENDING && s->reboot)
                s->wait = MEMCTL_WAIT_STARTUP;
}

bool memctl_session_boot(struct memctl_session *s, bool reboot, const struct memctl_vm *vm,
                         struct memctl_msg *ret)
{
        s->reboot = reboot;
        s->wait = MEMCTL_WAIT_PENDING;
        if (!reboot && s->phase == MEMCTL_PHASE_CONNECTED) {
                build_register(vm, false, ret);
                s->phase = MEMCTL_PHASE_ADMITTING;
                return true;
        }
        if (reboot && s->phase == MEMCTL_PHASE_ACTIVE) {
                *ret = (struct memctl_msg){.type = MEMCTL_RESTART};
                s->phase = MEMCTL_PHASE_ADMITTING;
                return true;
        }
        /*
         * A first boot without a connection registers on the next one. A reboot while the
         * daemon is gone, or while a re-registration is still unanswered (a restart cannot
         * overtake it), boots with startup: the daemon learns of it from the next report.
         */
        if (reboot)
                s->wait = MEMCTL_WAIT_STARTUP;
        return false;
}

void memctl_session_boot_done(struct memctl_session *s)
{
        s->wait = MEMCTL_WAIT_NONE;
}

void memctl_session_admit_timeout(struct memctl_session *s)
{
        if (s->wait == MEMCTL_WAIT_PENDING)
                s->wait = s->reboot ? MEMCTL_WAIT_STARTUP : MEMCTL_WAIT_TIMEOUT;
}

static void unexpected(const struct memctl_session *s, const char *what, struct memctl_action *act)
{
        act->type = MEMCTL_ACT_DROP;
        snprintf(act->text, sizeof(act->text), "tidald sent \"%s\" while this VM was %s", what,
                 memctl_phase_name(s->phase));
}

static void refused(struct memctl_session *s, const struct memctl_msg *msg,
                    struct memctl_action *act)
{
        char needed[32], found[32];

        act->type = MEMCTL_ACT_REFUSED;
        if (msg->refused.error[0])
                snprintf(act->text, sizeof(act->text), "%s", msg->refused.error);
        else
                snprintf(act->text, sizeof(act->text),
                         "tidald cannot find the memory to start this VM: it needs %s, %s can "
                         "be found",
                         format_size(msg->refused.needed, needed, sizeof(needed)),
                         format_size(msg->refused.found, found, sizeof(found)));
        if (s->wait == MEMCTL_WAIT_PENDING)
                s->wait = MEMCTL_WAIT_REFUSED;
}

static void admitted(struct memctl_session *s, uint64_t grant, struct memctl_action *act)
{
        s->phase = MEMCTL_PHASE_ACTIVE;
        s->answer_open = false;
        s->running = true;
        s->have_grant = true;
        s->grant = grant;
        if (s->wait == MEMCTL_WAIT_PENDING)
                s->wait = MEMCTL_WAIT_ADMITTED;
        act->type = MEMCTL_ACT_ADMITTED;
        act->bytes = grant;
}

void memctl_session_receive(struct memctl_session *s, const struct memctl_msg *msg,
                            struct memctl_action *act)
{
        *act = (struct memctl_action){.type = MEMCTL_ACT_NONE};
        switch (msg->type) {
        case MEMCTL_ADMITTED:
                if (s->phase != MEMCTL_PHASE_ADMITTING && !s->answer_open)
                        return unexpected(s, MEMCTL_MSG_ADMITTED, act);
                return admitted(s, msg->admitted.grant, act);
        case MEMCTL_REFUSED:
                if (s->phase != MEMCTL_PHASE_ADMITTING && !s->answer_open)
                        return unexpected(s, MEMCTL_MSG_REFUSED, act);
                return refused(s, msg, act);
        case MEMCTL_TARGET:
                if (s->phase != MEMCTL_PHASE_ACTIVE)
                        return unexpected(s, MEMCTL_MSG_TARGET, act);
                s->answer_open = false; /* the daemon took the registration */
                s->have_grant = true;
                s->grant = msg->target.bytes;
                act->type = MEMCTL_ACT_TARGET;
                act->bytes = msg->target.bytes;
                return;
        case MEMCTL_SETTINGS:
                if (!memctl_session_registered(s))
                        return unexpected(s, MEMCTL_MSG_SETTINGS, act);
                act->type = MEMCTL_ACT_SETTINGS;
                act->settings = msg->settings.settings;
                return;
        case MEMCTL_ERROR:
                act->type = MEMCTL_ACT_DROP;
                snprintf(act->text, sizeof(act->text), "tidald reported an error: %s",
                         msg->error.error);
                return;
        case MEMCTL_REGISTER:
                return unexpected(s, MEMCTL_MSG_REGISTER, act);
        case MEMCTL_REPORT:
                return unexpected(s, MEMCTL_MSG_REPORT, act);
        case MEMCTL_RESTART:
                return unexpected(s, MEMCTL_MSG_RESTART, act);
        }
        unexpected(s, "an unknown message", act);
}

bool memctl_session_active(const struct memctl_session *s)
{
        return s->phase == MEMCTL_PHASE_ACTIVE;
}

bool memctl_session_registered(const struct memctl_session *s)
{
        return s->phase == MEMCTL_PHASE_ADMITTING || s->phase == MEMCTL_PHASE_ACTIVE;
}

void memctl_build_report(const struct dynmem_state *st, struct memctl_msg *ret)
{
        *ret = (struct memctl_msg){
                .type = MEMCTL_REPORT,
                .report =
                        {
                                .assigned = st->assigned,
                                .have_demand = st->have_demand,
                                .demand = st->have_demand ? st->demand : 0,
                                .fresh = st->fresh,
                                .pressure = st->pressure,
                                .status = st->status,
                                .balloon = st->balloon,
                                .vmem_plugged = st->vmem_plugged,
                                .unplugging = st->unplugging,
                        },
        };
}

void memctl_build_settings(const struct mem_settings *settings, struct memctl_msg *ret)
{
        *ret = (struct memctl_msg){.type = MEMCTL_SETTINGS, .settings = {.settings = *settings}};
}

const char *memctl_phase_name(enum memctl_phase phase)
{
        switch (phase) {
        case MEMCTL_PHASE_DISCONNECTED:
                return "disconnected";
        case MEMCTL_PHASE_CONNECTED:
                return "not registered yet";
        case MEMCTL_PHASE_ADMITTING:
                return "waiting to be admitted";
        case MEMCTL_PHASE_ACTIVE:
                return "admitted";
        }
        return "in an unknown state";
}
