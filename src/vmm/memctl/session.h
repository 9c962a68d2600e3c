/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The VM's side of the tidald protocol (include/tidal/memctl-proto.h) as a pure state machine:
 * which message to send when, what a message from the daemon means for the VM, and whether a
 * boot waiting for admission may go. No I/O and no logging, so every decision is unit tested
 * (tests/unit/test-memctl-client.c); src/vmm/memctl/client.c does the socket and the timers.
 *
 * The daemon is not trusted: a message it should not send in the current phase is a protocol
 * error (MEMCTL_ACT_DROP), like a line that does not parse.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tidal/memctl-proto.h"
#include "vmm/dynmem/dynmem.h"

enum memctl_phase {
        MEMCTL_PHASE_DISCONNECTED, /* no connection; the client retries every second */
        MEMCTL_PHASE_CONNECTED,    /* connected, nothing said yet: the first boot registers */
        MEMCTL_PHASE_ADMITTING,    /* "register" or "restart" sent, waiting for "admitted" */
        MEMCTL_PHASE_ACTIVE,       /* admitted: reports go out, targets come in */
};

/* A boot that waits for the daemon before its vCPUs run, and how the wait ended. */
enum memctl_wait {
        MEMCTL_WAIT_NONE,     /* no boot is waiting */
        MEMCTL_WAIT_PENDING,  /* waiting */
        MEMCTL_WAIT_ADMITTED, /* go, with the grant as the target */
        MEMCTL_WAIT_STARTUP,  /* a reboot without the daemon: go with startup */
        MEMCTL_WAIT_REFUSED,  /* the daemon refused: stop with its message (exit 3) */
        MEMCTL_WAIT_TIMEOUT,  /* the daemon did not answer in time: fail the start */
};

struct memctl_session {
        enum memctl_phase phase;
        enum memctl_wait wait;
        bool reboot;      /* the waiting boot is a guest reboot ("restart"), not the first */
        bool running;     /* the guest was admitted once: a new connection re-registers it */
        bool answer_open; /* re-registered running: "admitted" or "refused" may still come */
        bool have_grant;  /* the daemon has given a target on this connection or an earlier */
        uint64_t grant;   /* its latest target */
        bool connected_once;
        unsigned reconnects; /* connections made after the first one */
};

/* What the VMM must do about a message from the daemon. */
enum memctl_action_type {
        MEMCTL_ACT_NONE,
        MEMCTL_ACT_ADMITTED, /* move to `bytes`; a waiting boot (see wait) may go */
        MEMCTL_ACT_TARGET,   /* move to `bytes` */
        MEMCTL_ACT_SETTINGS, /* apply `settings` (minimum, maximum, buffer, weight) */
        MEMCTL_ACT_REFUSED,  /* `text` says why; a waiting boot stops, else hang up and retry */
        MEMCTL_ACT_DROP,     /* protocol or daemon error in `text`: log it, hang up, retry */
};

struct memctl_action {
        enum memctl_action_type type;
        uint64_t bytes;
        struct mem_settings settings;
        char text[320];
};

/* What a registration says about the VM. */
struct memctl_vm {
        const char *name;
        const struct mem_settings *settings;
        uint64_t assigned; /* what the guest can use now */
        uint64_t target;   /* where it is being moved */
};

void memctl_session_init(struct memctl_session *s);

/*
 * A connection was made. Returns true with the message to send in ret (a registration:
 * running=false for a first boot that waits, running=true for a guest that already runs),
 * false when there is nothing to say yet (the first boot is still being built). A running
 * guest is not admitted again: it reports and obeys at once; the daemon may still answer the
 * registration with "admitted" (a target) or "refused" (say, its name is taken meanwhile).
 */
bool memctl_session_connected(struct memctl_session *s, const struct memctl_vm *vm,
                              struct memctl_msg *ret);

/*
 * The connection is gone (EOF, error, or dropped by us). A reboot waiting for the daemon goes
 * on with startup; a first boot keeps waiting for a new connection.
 */
void memctl_session_disconnected(struct memctl_session *s);

/*
 * A boot is about to start its vCPUs (`reboot`: after a guest reboot). Sets s->wait: PENDING
 * with a message to send (returns true) when the daemon must answer first, STARTUP for a
 * reboot while disconnected, PENDING without a message for a first boot while disconnected
 * (it registers on the next connection).
 */
bool memctl_session_boot(struct memctl_session *s, bool reboot, const struct memctl_vm *vm,
                         struct memctl_msg *ret);

/* The wait is over (the boot went, or stopped); s->wait back to NONE. */
void memctl_session_boot_done(struct memctl_session *s);

/* The daemon did not answer a waiting boot in time: TIMEOUT (first boot) or STARTUP. */
void memctl_session_admit_timeout(struct memctl_session *s);

/* Reacts to one parsed message from the daemon. */
void memctl_session_receive(struct memctl_session *s, const struct memctl_msg *msg,
                            struct memctl_action *act);

/* True when reports may be sent: admitted on this connection. */
bool memctl_session_active(const struct memctl_session *s);
/* True when settings may be sent: registered on this connection (admitted or not yet). */
bool memctl_session_registered(const struct memctl_session *s);

/* A "report" from dynamic memory's state. */
void memctl_build_report(const struct dynmem_state *st, struct memctl_msg *ret);

/* A "settings" message: the VM's settings changed through its own control socket. */
void memctl_build_settings(const struct mem_settings *settings, struct memctl_msg *ret);

const char *memctl_phase_name(enum memctl_phase phase);
