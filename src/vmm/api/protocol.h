/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Requests and replies of the control socket as pure functions, with no I/O, so that every
 * validation rule can be unit tested (tests/unit/test-api-protocol.c).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "vmm/api/server.h"

struct json_object;

enum api_cmd {
        API_REQ_INFO,
        API_REQ_BALLOON_SET,
        API_REQ_STATS_PERIOD,
        API_REQ_MEMORY_SET,
        API_REQ_SHUTDOWN,
        API_REQ_REBOOT,
};

struct api_request {
        enum api_cmd cmd;
        struct json_object *id; /* echoed in the reply; NULL when the request had none */
        uint64_t value;         /* "bytes" of balloon-set, "seconds" of stats-period */
        /* memory-set: minimum_bytes, maximum_bytes, buffer, weight, in that order */
        uint64_t values[4];
        unsigned present; /* memory-set: MEM_SET_* bits of the members given */
};

/*
 * Parses and validates one request line (newline excluded). On error returns -EINVAL and puts
 * a message for the client in err; req->id is still set when the request carried a valid id,
 * so that the error reply can echo it. Call api_request_done() afterwards in every case.
 */
int api_request_parse(const char *line, size_t len, struct api_request *req, char *err,
                      size_t errlen);
void api_request_done(struct api_request *req);

/* {"ok":true[,"id":ID]}: the caller may add members. NULL when out of memory. */
struct json_object *api_reply_new_ok(struct json_object *id);
/* {"ok":false[,"id":ID],"error":MSG}. NULL when out of memory. */
struct json_object *api_reply_new_error(struct json_object *id, const char *msg);

/* One reply line, "\n" included (and NUL-terminated), in a malloc'd buffer. 0 or -ENOMEM / -E2BIG.
 */
int api_reply_encode(struct json_object *reply, char **ret, size_t *len);

/* The "info" member of an info reply. 0 or -ENOMEM. */
int api_info_to_json(const struct api_info *info, struct json_object **ret);

/* The message for a callback's failure when it gave none. */
const char *api_errno_message(int error);
