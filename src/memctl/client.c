/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "memctl/client.h"
#include "tidal/api.h"
#include "tidal/macro.h"
#include "tidal/unix-socket.h"

#define BUF_INITIAL 4096

struct api_client {
        int fd;
        size_t reply_max; /* longest reply line, newline excluded */
        char *buf;        /* grows up to reply_max + 1: one reply line, newline included */
        size_t len, cap;
};

/* Blocking I/O with socket timeouts: connect() on a Unix socket honours SO_SNDTIMEO too. */
static int set_timeouts(int fd, int timeout_ms)
{
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};

        if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
                return -errno;
        return 0;
}

int api_client_connect(const char *path, int timeout_ms, size_t reply_max, struct api_client **ret)
{
        _cleanup_close_ int fd = -1;
        struct api_client *c;
        int r;

        if (reply_max == 0 || reply_max >= SIZE_MAX)
                return -EINVAL;
        /* Non-blocking: a server whose backlog is full would hold a blocking connect. */
        r = unix_connect(path, true, &fd);
        if (r == -EAGAIN)
                return -ETIMEDOUT;
        if (r < 0)
                return r;
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
                return -errno;
        r = set_timeouts(fd, timeout_ms);
        if (r < 0)
                return r;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = TAKE_FD(fd);
        c->reply_max = reply_max;
        *ret = c;
        return 0;
}

void api_client_free(struct api_client *c)
{
        if (!c)
                return;
        close(c->fd);
        free(c->buf);
        free(c);
}

static int send_all(int fd, const char *data, size_t len)
{
        while (len > 0) {
                ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? -ETIMEDOUT : errno == EPIPE ? -ECONNRESET : -errno;
                }
                data += n;
                len -= (size_t)n;
        }
        return 0;
}

static int send_request(struct api_client *c, struct json_object *request)
{
        const char *s;
        size_t len;
        int r;

        s = json_object_to_json_string_length(
                request, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (!s)
                return -ENOMEM;
        r = send_all(c->fd, s, len);
        return r < 0 ? r : send_all(c->fd, "\n", 1);
}

/*
 * Makes room to receive: the buffer doubles as a reply grows, up to one line of reply_max
 * bytes and its newline, so a small reply costs little and a large one no more than it needs.
 */
static int make_room(struct api_client *c)
{
        size_t limit = c->reply_max + 1, cap;
        char *p;

        if (c->len < c->cap)
                return 0;
        if (c->cap >= limit)
                return -EPROTO; /* no newline within reply_max bytes */
        cap = c->cap ? (c->cap > limit / 2 ? limit : c->cap * 2) : MIN((size_t)BUF_INITIAL, limit);
        p = realloc(c->buf, cap);
        if (!p)
                return -ENOMEM;
        c->buf = p;
        c->cap = cap;
        return 0;
}

/* Reads until a newline; returns the line's length (newline excluded) or a negative errno. */
static ssize_t recv_line(struct api_client *c)
{
        size_t scanned = 0; /* bytes already searched for the newline */

        for (;;) {
                char *nl = c->len ? memchr(c->buf + scanned, '\n', c->len - scanned) : NULL;
                ssize_t n;
                int r;

                if (nl)
                        return nl - c->buf;
                scanned = c->len;
                r = make_room(c);
                if (r < 0)
                        return r;
                n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == EAGAIN ? -ETIMEDOUT : -errno;
                if (n == 0)
                        return -ECONNRESET;
                c->len += (size_t)n;
        }
}

static int parse_reply(const char *line, size_t len, struct json_object **ret)
{
        struct json_tokener *tok = json_tokener_new();
        struct json_object *o, *ok;

        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, line, (int)len);
        json_tokener_free(tok);
        if (!o || !json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, API_KEY_OK, &ok) ||
            !json_object_is_type(ok, json_type_boolean)) {
                json_object_put(o);
                return -EPROTO;
        }
        *ret = o;
        return 0;
}

int api_client_call(struct api_client *c, struct json_object *request, struct json_object **reply)
{
        ssize_t len;
        int r;

        r = send_request(c, request);
        if (r < 0)
                return r;
        len = recv_line(c);
        if (len < 0)
                return (int)len;
        r = parse_reply(c->buf, (size_t)len, reply);
        /* Keep whatever followed the line for the next call. */
        c->len -= (size_t)len + 1;
        memmove(c->buf, c->buf + len + 1, c->len);
        return r;
}

const char *api_reply_error(struct json_object *reply)
{
        struct json_object *ok, *err;

        if (json_object_object_get_ex(reply, API_KEY_OK, &ok) && json_object_get_boolean(ok))
                return NULL;
        if (json_object_object_get_ex(reply, API_KEY_ERROR, &err) &&
            json_object_is_type(err, json_type_string))
                return json_object_get_string(err);
        return "unknown error";
}
