/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A tidal process as a client of tidald (docs/tidal.md, "The host daemon"): the connection on
 * the VMM's event loop, non-blocking with bounded buffers, the retry timer when the daemon is
 * gone, and the glue between the protocol (session.h, pure) and dynamic memory. Every function
 * here runs on the event-loop thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tidal/memory-settings.h"
#include "vmm/memctl/session.h"

struct dynmem;
struct event_loop;
struct memctl_client;

/* What the client needs from the VMM. */
struct memctl_client_ops {
        /*
         * Applies settings the daemon sends (minimum, maximum, buffer, weight) under the
         * runtime rules, and kicks dynamic memory. 0, or a negative errno with a message in err.
         */
        int (*apply_settings)(void *opaque, const struct mem_settings *req, char *err,
                              size_t errlen);
        /* Smart paging's status, for every report (optional: none when NULL). */
        void (*get_paging)(void *opaque, struct memctl_paging *ret);
};

struct memctl_client_config {
        struct event_loop *loop;
        const char *socket;
        const char *name;                    /* the VM's name, valid for memctl_name_valid() */
        const struct mem_settings *settings; /* the VM's settings as they change; outlives us */
        const struct memctl_client_ops *ops;
        void *opaque;
};

/*
 * Connects to tidald at cfg->socket. 0, or a negative errno when nobody answers there
 * (-ENOENT, -ECONNREFUSED, -EACCES...): the caller decides whether that is an error. The
 * registration waits for the first boot (memctl_client_boot_begin).
 */
int memctl_client_new(const struct memctl_client_config *cfg, struct memctl_client **ret);
void memctl_client_free(struct memctl_client *c);

/*
 * A boot's dynamic memory (NULL when the boot is over): its target comes from the daemon from
 * now on, and its reports go to the daemon.
 */
void memctl_client_attach(struct memctl_client *c, struct dynmem *d);

/*
 * Before a boot's vCPUs run (`reboot`: after a guest reboot): registers, or says "restart".
 * Returns true when the boot must wait: the caller then runs the event loop until
 * memctl_client_boot_wait() is no longer MEMCTL_WAIT_PENDING (the client quits the loop when
 * it changes) or the VM is asked to stop.
 */
bool memctl_client_boot_begin(struct memctl_client *c, bool reboot);
enum memctl_wait memctl_client_boot_wait(struct memctl_client *c);
/* The daemon's refusal, for MEMCTL_WAIT_REFUSED. */
const char *memctl_client_refusal(struct memctl_client *c);
/* The boot went (or gave up): stop waiting. */
void memctl_client_boot_end(struct memctl_client *c);

/* The VM's settings changed through its own control socket: tell the daemon. */
void memctl_client_settings_changed(struct memctl_client *c);

struct memctl_client_info {
        const char *socket;
        bool connected; /* registered with the daemon on a live connection */
        bool have_grant;
        uint64_t grant;
        unsigned reconnects;
};

void memctl_client_get_info(struct memctl_client *c, struct memctl_client_info *ret);
