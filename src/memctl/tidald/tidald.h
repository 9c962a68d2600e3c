/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tidald (docs/tidald.md): one daemon per host that shares the host's memory between tidal VMs
 * by weight. Everything runs on one event-loop thread; these are the daemon's pieces and the
 * state they share through `struct daemon`, passed down (no globals).
 */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tidal/clock.h"
#include "tidal/event-loop.h"
#include "tidal/memctl-proto.h"
#include "tidal/memory-settings.h"

#define TIDALD_ROUND_MS       1000  /* the balancing loop's cadence */
#define TIDALD_HELLO_MS       10000 /* a connection must send a valid first line within this */
#define TIDALD_WRITE_STALL_MS 10000 /* a peer that reads none of its output for this long goes */

struct conn;

enum vm_state {
        VM_ADMITTING,  /* registered, waiting for room for its startup memory */
        VM_RUNNING,    /* admitted (or re-registered running) */
        VM_RESTARTING, /* the guest reboots and waits for its startup memory again */
};

struct vm {
        struct vm *next;
        struct conn *conn; /* the VM's connection: the VM lives exactly as long as it */
        char name[MEMCTL_NAME_MAX + 1];
        char uuid[MEMCTL_UUID_LEN + 1];
        uid_t uid; /* SO_PEERCRED of its connection: its owner */
        pid_t pid;
        enum vm_state state;
        struct mem_settings settings;
        uint64_t admit_deadline_ms; /* admitting/restarting: refuse after this */
        uint64_t grant;             /* the last target sent (admitting: its startup) */
        /*
         * A restart admitted with less than its startup (smart paging): the grant it was
         * admitted with, which the VMM keeps the guest's resident memory within while paging
         * is active. 0 otherwise.
         */
        uint64_t paging_limit;
        /* From its last report. */
        uint64_t assigned;
        bool have_demand;
        uint64_t demand;
        bool fresh;
        unsigned pressure;
        enum mem_status status;
        uint64_t balloon, vmem_plugged;
        uint64_t unplugging; /* its virtio-mem's unplug in flight (report) */
        struct memctl_paging paging;
        uint64_t last_report_ms;
        uint64_t rss; /* host RSS of its process, read each round */
};

struct host {
        uint64_t fixed_memory; /* --host-memory, 0: MemTotal - reserve */
        uint64_t reserve;      /* --host-reserve, 0: max(1 GiB, 5 %) */
        /* Read each round. */
        uint64_t total, available;
        uint64_t budget; /* what may be granted this round */
};

struct daemon {
        struct event_loop *loop;
        int listen_fd;
        bool socket_created; /* ours to unlink on exit (not socket-activated) */
        const char *socket_path;
        struct event_source *listen_src, *tick_src, *reap_src, *watchdog_src, *signal_src;
        int reap_fd; /* eventfd: connections to close are waiting */
        int signal_fd;
        struct conn *conns;
        size_t nr_conns;
        struct vm *vms; /* in registration order */
        size_t nr_vms;
        struct host host;
        struct http *http;
        uint64_t last_status_granted;
        size_t last_status_vms;
        bool status_sent;
};

/* listen.c */
int listen_open(struct daemon *d, const char *path, const char *group);
void listen_close(struct daemon *d);

/* conn.c */
int conn_accept_start(struct daemon *d);
int conn_reaper_start(struct daemon *d);
/* Queues one line (ending in '\n') for the peer; a peer that cannot take it is dropped. */
void conn_send(struct conn *c, const char *line, size_t len);
/* Sends a daemon message to the VM's connection. */
void conn_send_msg(struct conn *c, const struct memctl_msg *msg);
/* Hangs up once the queued output is sent; no further input is read. */
void conn_hang_up(struct conn *c);
/* The VM was taken out of the registry (refused): the connection no longer stands for it. */
void conn_detach_vm(struct conn *c);
void conn_check_timeouts(struct daemon *d, uint64_t now);
void conn_close_all(struct daemon *d);
uid_t conn_uid(const struct conn *c);
pid_t conn_pid(const struct conn *c);

/* vm-conn.c: the messages of a VM's connection. */
int vm_handle_line(struct daemon *d, struct conn *c, struct vm **vm, const char *line, size_t len);
void vm_conn_closed(struct daemon *d, struct vm *vm);

/* registry.c */
struct vm *registry_find(struct daemon *d, const char *name);
struct vm *registry_add(struct daemon *d, struct conn *c, const struct memctl_msg *reg);
void registry_remove(struct daemon *d, struct vm *vm);
uint64_t registry_granted(const struct daemon *d);
const char *vm_state_name(enum vm_state state);
struct json_object *vm_to_json(const struct vm *vm);
void vm_send_target(struct vm *vm, uint64_t bytes);

/* host.c */
int host_init(struct host *h);
void host_update(struct daemon *d);

/* admit.c */
void admit_request(struct daemon *d, struct vm *vm);
void admit_pending(struct daemon *d, uint64_t now);

/* balance.c */
int balance_start(struct daemon *d);
void balance_round(struct daemon *d);
/* True if the report shows the VM needs more than its grant now: balance at once. */
bool balance_is_spike(const struct vm *vm);

/* admin.c */
int admin_handle_line(struct daemon *d, struct conn *c, const char *line, size_t len);

/* metrics.c */
int metrics_text(struct daemon *d, char **ret);

/* http.c */
int http_start(struct daemon *d, const char *listen);
void http_stop(struct daemon *d);
void http_check_timeouts(struct daemon *d, uint64_t now);
