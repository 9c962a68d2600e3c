/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A blocking client for the control socket (docs/api.md): connect, send one request line,
 * read one reply line. Used by tidalctl; later by anything else that talks to a tidal VM.
 */
#pragma once

struct json_object;
struct api_client;

/*
 * Connects to the socket at path; timeout_ms bounds each later send and receive. 0 or a
 * negative errno: -ENOENT no such socket, -ECONNREFUSED nothing listens there (stale), -EACCES.
 */
int api_client_connect(const char *path, int timeout_ms, struct api_client **ret);
void api_client_free(struct api_client *client);

/*
 * Sends `request` and waits for its reply. 0 or a negative errno: -ETIMEDOUT, -ECONNRESET (the
 * VM hung up), -EPROTO (the reply is not a JSON object with a boolean "ok").
 */
int api_client_call(struct api_client *client, struct json_object *request,
                    struct json_object **reply);

/* The "error" of a reply whose "ok" is false ("unknown error" if it has none); NULL when ok. */
const char *api_reply_error(struct json_object *reply);
