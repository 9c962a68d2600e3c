/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The tidald protocol (docs/memctl-protocol.md), shared by the daemon (src/memctl/tidald), the
 * client every tidal process links (src/vmm/memctl) and tidalctl. Newline-delimited JSON over
 * a Unix stream socket. A connection is one of two kinds, fixed by its first line:
 *
 *  - a VM: its first line is a "register" message ("msg" member); afterwards the VM sends
 *    "report", "settings" and "restart" messages and the daemon sends "admitted" or
 *    "refused" (once, in answer to "register"), "target", "settings" and "error";
 *  - an administrator (tidalctl): request lines with a "cmd" member ("list", "set",
 *    "metrics"), each answered by one reply with "ok" (as on a VM's control socket,
 *    docs/api.md).
 *
 * The VM side's messages are encoded and decoded here (src/shared/memctl-proto.c, pure, tested)
 * so both ends agree on every member and every bound.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tidal/memory-settings.h"

#define MEMCTL_SOCKET_DEFAULT "/run/tidal/tidald.sock"

#define MEMCTL_LINE_MAX   (16 * 1024)  /* longest line, newline excluded; longer: error, close */
#define MEMCTL_OUTPUT_MAX (256 * 1024) /* unsent bytes queued for one peer; past this: drop it */
#define MEMCTL_NAME_MAX   64           /* VM names: [A-Za-z0-9._-], not starting with '.' */
#define MEMCTL_UUID_LEN   36           /* canonical text form */
/*
 * Longest reply to an administrator ("list", "metrics"), newline excluded: about 1 KiB per VM,
 * so thousands of VMs fit. An administrator connection may queue one such reply (plus what
 * MEMCTL_OUTPUT_MAX allows) before it is dropped; tidalctl reads replies up to this long.
 */
#define MEMCTL_REPLY_MAX (16 * 1024 * 1024)
/* How long the daemon waits for other VMs to shrink before refusing an admission. */
#define MEMCTL_ADMIT_TIMEOUT_MS 30000
/* A VM that has not reported for this long has stale statistics and is not squeezed. */
#define MEMCTL_STALE_MS 5000

/* Members. */
#define MEMCTL_KEY_MSG      "msg"
#define MEMCTL_KEY_NAME     "name"
#define MEMCTL_KEY_UUID     "uuid"
#define MEMCTL_KEY_STARTUP  "startup_bytes"
#define MEMCTL_KEY_MINIMUM  "minimum_bytes"
#define MEMCTL_KEY_MAXIMUM  "maximum_bytes"
#define MEMCTL_KEY_BUFFER   "buffer"
#define MEMCTL_KEY_WEIGHT   "weight"
#define MEMCTL_KEY_RUNNING  "running"
#define MEMCTL_KEY_ASSIGNED "assigned_bytes"
#define MEMCTL_KEY_GRANT    "grant_bytes"
#define MEMCTL_KEY_DEMAND   "demand_bytes"
#define MEMCTL_KEY_FRESH    "fresh"
#define MEMCTL_KEY_PRESSURE "pressure"
#define MEMCTL_KEY_STATUS   "status"
#define MEMCTL_KEY_BALLOON  "balloon_bytes"
#define MEMCTL_KEY_VMEM     "vmem_plugged_bytes"
#define MEMCTL_KEY_UNPLUG   "unplugging_bytes"
#define MEMCTL_KEY_TARGET   "target_bytes"
#define MEMCTL_KEY_NEEDED   "needed_bytes"
#define MEMCTL_KEY_FOUND    "found_bytes"
#define MEMCTL_KEY_ERROR    "error"
#define MEMCTL_KEY_PAGING   "smart_paging"

/* Message names ("msg"). */
#define MEMCTL_MSG_REGISTER "register"
#define MEMCTL_MSG_REPORT   "report"
#define MEMCTL_MSG_SETTINGS "settings"
#define MEMCTL_MSG_RESTART  "restart"
#define MEMCTL_MSG_ADMITTED "admitted"
#define MEMCTL_MSG_REFUSED  "refused"
#define MEMCTL_MSG_TARGET   "target"
#define MEMCTL_MSG_ERROR    "error"

/* Administrator commands ("cmd"). */
#define MEMCTL_CMD_LIST    "list"
#define MEMCTL_CMD_SET     "set"
#define MEMCTL_CMD_METRICS "metrics"

enum memctl_msg_type {
        MEMCTL_REGISTER, /* VM -> daemon, first line */
        MEMCTL_REPORT,   /* VM -> daemon, after every statistics report and on a demand spike */
        MEMCTL_SETTINGS, /* both ways: settings changed (VM socket) / to apply (tidalctl set) */
        MEMCTL_RESTART,  /* VM -> daemon: the guest reboots and needs its startup memory again */
        MEMCTL_ADMITTED, /* daemon -> VM: answer to register/restart; grant = the first target */
        MEMCTL_REFUSED,  /* daemon -> VM: answer to register/restart; then the daemon hangs up */
        MEMCTL_TARGET,   /* daemon -> VM: move to `bytes` */
        MEMCTL_ERROR,    /* daemon -> VM: a protocol error; then the daemon hangs up */
};

/* Smart paging (docs/smart-paging.md) as a VM reports it. */
struct memctl_paging {
        bool active;
        uint64_t file_bytes; /* size of the paging file */
        uint64_t pages_in, pages_out;
        uint64_t active_ms; /* how long it has been active */
};

struct memctl_msg {
        enum memctl_msg_type type;
        union {
                struct {
                        char name[MEMCTL_NAME_MAX + 1];
                        char uuid[MEMCTL_UUID_LEN + 1]; /* "" when the VM has none */
                        struct mem_settings settings;   /* always dynamic */
                        /*
                         * running: the VM already runs and holds `assigned`, moving to `grant`
                         * (it re-registers after a daemon restart); no admission, the daemon
                         * takes its state from it. Otherwise it asks to be admitted with
                         * settings.startup.
                         */
                        bool running;
                        uint64_t assigned, grant;
                } reg;
                struct {
                        uint64_t assigned; /* startup + plugged - ballooned */
                        bool have_demand;  /* false until the guest's first statistics */
                        uint64_t demand;
                        bool fresh;        /* the statistics are recent */
                        unsigned pressure; /* DEMAND_PRESSURE_* bits (src/vmm/dynmem/demand.h) */
                        enum mem_status status;
                        uint64_t balloon;      /* bytes in the balloon */
                        uint64_t vmem_plugged; /* bytes plugged with virtio-mem */
                        /*
                         * Bytes virtio-mem is taking out right now, which the demand may
                         * count as used (isolated free pages): no reason to grow. Optional
                         * on the wire, 0 when absent.
                         */
                        uint64_t unplugging;
                        struct memctl_paging paging;
                } report;
                struct {
                        struct mem_settings settings; /* minimum, maximum, buffer, weight */
                } settings;
                struct {
                        uint64_t grant; /* admitted: the first target */
                } admitted;
                struct {
                        uint64_t needed, found;
                        char error[256];
                } refused;
                struct {
                        uint64_t bytes;
                } target;
                struct {
                        char error[256];
                } error;
        };
};

/*
 * Decodes one line (without its newline). 0, or -EINVAL/-EPROTO with a message in err: not
 * JSON, not an object, unknown "msg", a member missing, of the wrong type or out of range, a
 * name that is not a valid VM name, settings that fail mem_settings_check(). Never trusts the
 * peer: every number is range-checked.
 */
int memctl_msg_parse(const char *line, size_t len, struct memctl_msg *ret, char *err,
                     size_t errlen);

/* Encodes msg as one line ending in '\n' into a malloc'd string. 0 or -ENOMEM/-EINVAL. */
int memctl_msg_format(const struct memctl_msg *msg, char **ret);

struct json_object;
/*
 * Smart paging's status as every interface shows it (the wire, tidald's list, the VMM's info):
 * {"active", "file_bytes", "pages_in", "pages_out", "active_ms"}. NULL when out of memory.
 */
struct json_object *memctl_paging_to_json(const struct memctl_paging *p);

/* True if `name` may name a VM: 1..MEMCTL_NAME_MAX of [A-Za-z0-9._-], not starting with '.'. */
bool memctl_name_valid(const char *name);
