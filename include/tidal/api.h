/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control-socket protocol shared by the tidal VMM (server, src/vmm/api) and tidalctl
 * (client, src/memctl): newline-delimited JSON, one request and one reply per line. The
 * protocol is documented in docs/api.md; these are the names and limits both sides rely on.
 */
#pragma once

#include <stddef.h>

#include "tidal/macro.h"

/* Longest request or reply line, newline excluded. A longer request closes the connection. */
#define API_LINE_MAX (64 * KiB)
/* Replies queued for one client that does not read them; past this the client is dropped. */
#define API_OUTPUT_MAX (256 * KiB)
/* Clients served at once; more are told so and disconnected. */
#define API_CLIENTS_MAX 64

/* Longest string "id"; an id is echoed in the reply, which must stay one line. */
#define API_ID_MAX 256

/* Upper bounds the protocol itself enforces; the VMM then checks against the actual VM. */
#define API_BALLOON_BYTES_MAX (1ULL << 40) /* the largest guest tidal runs (1 TiB) */
#define API_STATS_PERIOD_MAX  86400        /* seconds; 0 turns statistics polling off */
#define API_MEMORY_BYTES_MAX  (1ULL << 40) /* minimum_bytes, maximum_bytes of memory-set */

/* Request members. */
#define API_KEY_CMD     "cmd"
#define API_KEY_ID      "id"
#define API_KEY_BYTES   "bytes"
#define API_KEY_SECONDS "seconds"
#define API_KEY_MINIMUM "minimum_bytes"
#define API_KEY_MAXIMUM "maximum_bytes"
#define API_KEY_BUFFER  "buffer"
#define API_KEY_WEIGHT  "weight"

/* Reply members. */
#define API_KEY_OK    "ok"
#define API_KEY_ERROR "error"
#define API_KEY_INFO  "info"

/* Commands. */
#define API_CMD_INFO         "info"
#define API_CMD_BALLOON_SET  "balloon-set"
#define API_CMD_STATS_PERIOD "stats-period"
#define API_CMD_MEMORY_SET   "memory-set"
#define API_CMD_SHUTDOWN     "shutdown"
#define API_CMD_REBOOT       "reboot"

/*
 * The default control socket of VM `name`: "$XDG_RUNTIME_DIR/tidal/<name>.sock", or
 * "/run/tidal/<name>.sock" for root. 0, -EINVAL (a name that cannot be a file name), -ENXIO
 * (not root and XDG_RUNTIME_DIR unset or not absolute), -ENAMETOOLONG (longer than a Unix
 * socket address allows).
 */
int api_socket_default_path(const char *name, char *buf, size_t size);

/* Creates the directory holding socket `path` (one level, mode 0700) unless it exists. */
int api_socket_make_dir(const char *path);
