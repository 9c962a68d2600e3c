/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A blocking client for the control socket (docs/api.md): connect, send one request line,
 * read one reply line. Used by tidalctl; later by anything else that talks to a tidal VM.
 */
#pragma once

#include <stddef.h>

struct json_object;
struct api_client;

/*
 * Connects to the socket at path; timeout_ms bounds each later send and receive, reply_max the
 * length of a reply line (newline excluded): API_LINE_MAX for a VM's control socket,
 * MEMCTL_REPLY_MAX for tidald, whose list of a thousand VMs is a megabyte. The reply buffer
 * grows as needed up to that. 0 or a negative errno: -ENOENT no such socket, -ECONNREFUSED
 * nothing listens there (stale), -EACCES, -EINVAL a reply_max of 0.
 */
int api_client_connect(const char *path, int timeout_ms, size_t reply_max, struct api_client **ret);
void api_client_free(struct api_client *client);

/*
 * Sends `request` and waits for its reply. 0 or a negative errno: -ETIMEDOUT, -ECONNRESET (the
 * VM hung up), -EPROTO (the reply is not a JSON object with a boolean "ok", or longer than
 * reply_max), -ENOMEM.
 */
int api_client_call(struct api_client *client, struct json_object *request,
                    struct json_object **reply);

/* The "error" of a reply whose "ok" is false ("unknown error" if it has none); NULL when ok. */
const char *api_reply_error(struct json_object *reply);
