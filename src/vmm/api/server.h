/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control socket a tidal process serves (docs/api.md). The server runs on the VMM's event
 * loop and knows nothing about KVM: it answers requests by calling the api_ops table the VMM
 * gives it. Every callback runs on the event-loop thread, between two dispatch rounds, so it
 * must not block; it must not free the server either.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tidal/memctl-proto.h"
#include "tidal/memory-settings.h"

struct event_loop;
struct api_server;

enum api_vm_state {
        API_VM_RUNNING,
        API_VM_STOPPING,  /* a shutdown was requested and has not taken effect yet */
        API_VM_REBOOTING, /* a reboot was requested and has not taken effect yet */
        API_VM_STARTING,  /* built, waiting for tidald to admit it before the vCPUs run */
};

/* Where the guest's driver of a virtio device stands. */
enum api_driver_state {
        API_DRIVER_NONE,        /* not (yet) driving it: no DRIVER_OK since the last reset */
        API_DRIVER_RUNNING,     /* DRIVER_OK */
        API_DRIVER_NEEDS_RESET, /* the guest broke the protocol; the device waits for a reset */
};

/* What the balloon did since the VM started (struct balloon_metrics, by name). */
struct api_balloon_counters {
        uint64_t inflate_requests, deflate_requests, report_requests;
        uint64_t inflated_bytes, deflated_bytes, reported_bytes, discarded_bytes;
        uint64_t discard_calls, discard_errors;
        uint64_t out_of_range_pages, skipped_reports, malformed_requests;
        uint64_t deferred_bytes, evicted_blocks;
};

/* What virtio-mem did since the VM started (struct virtio_mem_metrics, by name). */
struct api_vmem_counters {
        uint64_t plug_requests, unplug_requests, unplug_all_requests, state_requests;
        uint64_t nacks, errors, busy;
        uint64_t plugged_bytes, unplugged_bytes, discarded_bytes, discard_errors;
        uint64_t malformed_requests, nudges;
        uint64_t unplug_behind_us, plug_behind_us, request_us;
};

/* Virtio-balloon statistics are indexed by their virtio tag (VIRTIO_BALLOON_S_*). */
#define API_BALLOON_STATS_MAX 16

struct api_balloon_info {
        uint64_t target;        /* bytes the balloon is asked to hold (taken from the guest) */
        uint64_t actual;        /* bytes the guest has put into the balloon */
        uint64_t stats_period;  /* seconds between statistics requests; 0 = off */
        bool have_stats;        /* the guest has reported statistics at least once */
        uint64_t stats_age_ms;  /* how old the latest report is */
        uint32_t stats_present; /* bit n set: stats[n] was in the report */
        uint64_t stats[API_BALLOON_STATS_MAX]; /* values as the guest reported them */
        enum api_driver_state driver;
        uint64_t inflated;    /* bytes the host counted as inflated */
        uint64_t pending;     /* of which not punched yet: in partial 2 MiB blocks */
        uint64_t stats_count; /* statistics buffers received */
        struct api_balloon_counters counters;
};

/* Dynamic memory: the settings, where the guest stands and how memory moves. */
struct api_memory_info {
        struct mem_settings settings;
        uint64_t ceiling;        /* the most the guest can ever be given (dynamic) */
        uint64_t target;         /* where the controller is moving the guest */
        bool target_from_daemon; /* tidald sets the target, not the standalone controller */
        uint64_t assigned;       /* what the guest can use now */
        bool have_demand;        /* false until the guest's first statistics report */
        uint64_t demand;
        enum mem_status status;
        uint64_t stuck; /* plugged memory virtio-mem cannot unplug, ballooned instead */
        bool has_vmem;  /* a virtio-mem device exists */
        enum api_driver_state vmem_driver;
        uint64_t vmem_region, vmem_requested, vmem_plugged;
        struct api_vmem_counters vmem_counters;
        struct memctl_paging paging; /* smart paging in this boot; all zero if none */
};

/* The VM as a client of tidald. */
struct api_memctl_info {
        bool daemon;        /* false: standalone (or static memory) */
        const char *socket; /* the daemon's socket; NULL when standalone */
        bool connected;
        bool have_grant; /* tidald has given a target */
        uint64_t grant;  /* its latest */
        unsigned reconnects;
};

/* What "info" reports. Strings may be NULL (absent); they must live until the callback returns. */
struct api_info {
        const char *name;
        int pid; /* filled in by the server */
        enum api_vm_state state;
        unsigned boots; /* 1 for the first boot, +1 per guest reboot */
        unsigned vcpus;
        uint64_t memory; /* guest RAM, bytes */
        const char *kernel, *initrd, *cmdline;
        const char *kernel_entry; /* "cache": entered decompressed; "decompressor": the guest's */
        bool has_balloon;
        struct api_balloon_info balloon;
        struct api_memory_info mem;
        struct api_memctl_info memctl;
};

/*
 * The VMM's side. Each returns 0 or a negative errno. On failure it may write a message for
 * the client into err (errlen bytes, starts empty); if it leaves err empty the server words
 * one from the errno: -ENODEV "this VM has no balloon device", -EOPNOTSUPP "not supported by
 * this VM", -ERANGE "value out of range for this VM", otherwise strerror(). A NULL callback
 * means the command is not supported. Arguments are already range-checked against the
 * protocol limits in include/tidal/api.h, not against this VM.
 */
struct api_ops {
        int (*info)(void *opaque, struct api_info *info, char *err, size_t errlen);
        /* bytes: the balloon's new target size; the VMM rounds it down to whole pages. */
        int (*balloon_set)(void *opaque, uint64_t bytes, char *err, size_t errlen);
        int (*stats_period)(void *opaque, uint64_t seconds, char *err, size_t errlen);
        /* which: MEM_SET_MINIMUM/MAXIMUM/BUFFER/WEIGHT bits of the members of req given. */
        int (*memory_set)(void *opaque, const struct mem_settings *req, unsigned which, char *err,
                          size_t errlen);
        /* The reply is sent before these return control to the loop: they only ask. */
        int (*shutdown)(void *opaque, char *err, size_t errlen);
        int (*reboot)(void *opaque, char *err, size_t errlen);
};

/*
 * Binds and listens on the Unix socket `path` (mode 0600) and serves it on `loop`. An existing
 * socket that still answers is left alone (-EADDRINUSE); a stale one is replaced; any other
 * file is left alone (-EEXIST). On failure *why (if why != NULL) says which step failed, for
 * the caller's single log line. `ops` and `opaque` must outlive the server.
 */
int api_server_new(struct event_loop *loop, const char *path, const struct api_ops *ops,
                   void *opaque, struct api_server **ret, const char **why);

/* Disconnects every client, stops listening and removes the socket file if it is still ours. */
void api_server_free(struct api_server *server);

const char *api_server_path(const struct api_server *server);
