/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control-socket server: non-blocking accept, read and write on the VMM's event loop. Each
 * client has a bounded input buffer (one line) and a bounded output queue, so neither a client
 * that floods nor one that stops reading can hold up the loop or grow tidal's memory.
 */
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tidal/api.h"
#include "tidal/event-loop.h"
#include "tidal/json.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "tidal/unix-socket.h"
#include "vmm/api/protocol.h"
#include "vmm/api/server.h"

#define LISTEN_BACKLOG  API_CLIENTS_MAX
#define ACCEPT_BATCH    16        /* clients taken per wake-up, so a burst cannot hog the loop */
#define INPUT_CAP_FIRST (4 * KiB) /* the input buffer grows from here to one maximal line */

struct api_conn {
        struct api_server *server;
        struct api_conn *prev, *next;
        int fd;
        struct event_source *src;
        uint32_t events; /* what src watches */
        char *in;
        size_t in_len, in_cap;
        char *out;
        size_t out_len, out_sent;
        bool closing; /* takes no more requests; closed once its output is flushed */
};

struct api_server {
        struct event_loop *loop;
        const struct api_ops *ops;
        void *opaque;
        char *path;
        int fd;
        struct event_source *src;
        dev_t dev; /* the socket file we made, so that only it is removed at exit */
        ino_t ino;
        struct api_conn *conns;
        unsigned nr_conns;
};

/* ---- connections ---- */

static void conn_free(struct api_conn *c)
{
        struct api_server *s = c->server;

        event_source_free(c->src);
        close(c->fd);
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->nr_conns--;
        free(c->in);
        free(c->out);
        free(c);
}

static int conn_queue(struct api_conn *c, const char *data, size_t len)
{
        size_t pending = c->out_len - c->out_sent;
        char *out;

        if (pending + len > API_OUTPUT_MAX)
                return -ENOBUFS; /* it stopped reading its replies */
        if (c->out_sent > 0) {
                memmove(c->out, c->out + c->out_sent, pending);
                c->out_len = pending;
                c->out_sent = 0;
        }
        out = realloc(c->out, c->out_len + len);
        if (!out)
                return -ENOMEM;
        memcpy(out + c->out_len, data, len);
        c->out = out;
        c->out_len += len;
        return 0;
}

static int conn_queue_reply(struct api_conn *c, struct json_object *reply)
{
        _cleanup_free_ char *line = NULL;
        size_t len;
        int r;

        r = api_reply_encode(reply, &line, &len);
        if (r < 0)
                return r;
        return conn_queue(c, line, len);
}

static int conn_queue_error(struct api_conn *c, struct json_object *id, const char *msg)
{
        _cleanup_(json_putp) struct json_object *reply = api_reply_new_error(id, msg);

        return reply ? conn_queue_reply(c, reply) : -ENOMEM;
}

/* Writes what the socket takes now; the rest waits for EPOLLOUT. */
static int conn_flush(struct api_conn *c)
{
        while (c->out_sent < c->out_len) {
                ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -errno;
                }
                c->out_sent += (size_t)n;
        }
        c->out_len = c->out_sent = 0;
        return 0;
}

/* ---- requests ---- */

static int memory_set(struct api_server *s, const struct api_request *req, char *err, size_t errlen)
{
        struct mem_settings m = {
                .minimum = req->values[0],
                .maximum = req->values[1],
                /* Past UINT_MAX is out of range anyway; keep it so for the range check. */
                .buffer = (unsigned)MIN(req->values[2], (uint64_t)UINT_MAX),
                .weight = (unsigned)MIN(req->values[3], (uint64_t)UINT_MAX),
        };

        return s->ops->memory_set(s->opaque, &m, req->present, err, errlen);
}

static int call_op(struct api_server *s, const struct api_request *req, char *err, size_t errlen)
{
        const struct api_ops *ops = s->ops;

        switch (req->cmd) {
        case API_REQ_BALLOON_SET:
                return ops->balloon_set ? ops->balloon_set(s->opaque, req->value, err, errlen)
                                        : -EOPNOTSUPP;
        case API_REQ_STATS_PERIOD:
                return ops->stats_period ? ops->stats_period(s->opaque, req->value, err, errlen)
                                         : -EOPNOTSUPP;
        case API_REQ_MEMORY_SET:
                return ops->memory_set ? memory_set(s, req, err, errlen) : -EOPNOTSUPP;
        case API_REQ_SHUTDOWN:
                return ops->shutdown ? ops->shutdown(s->opaque, err, errlen) : -EOPNOTSUPP;
        case API_REQ_REBOOT:
                return ops->reboot ? ops->reboot(s->opaque, err, errlen) : -EOPNOTSUPP;
        default:
                return -EINVAL;
        }
}

static int run_info(struct api_server *s, struct json_object *reply, char *err, size_t errlen)
{
        struct api_info info = {.pid = (int)getpid()};
        struct json_object *o;
        int r;

        if (!s->ops->info)
                return -EOPNOTSUPP;
        r = s->ops->info(s->opaque, &info, err, errlen);
        if (r < 0)
                return r;
        r = api_info_to_json(&info, &o);
        if (r < 0)
                return r;
        return json_object_object_add(reply, API_KEY_INFO, o) < 0 ? -ENOMEM : 0;
}

/* Runs one request; on failure returns a negative errno and maybe a message in err. */
static int run_request(struct api_server *s, const struct api_request *req,
                       struct json_object **ret, char *err, size_t errlen)
{
        _cleanup_(json_putp) struct json_object *reply = api_reply_new_ok(req->id);
        int r;

        if (!reply)
                return -ENOMEM;
        if (req->cmd == API_REQ_INFO)
                r = run_info(s, reply, err, errlen);
        else
                r = call_op(s, req, err, errlen);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(reply);
        return 0;
}

/* Answers one line. Only a failure to queue the reply (0 or negative errno) ends the client. */
static int conn_handle_line(struct api_conn *c, const char *line, size_t len)
{
        _cleanup_(json_putp) struct json_object *reply = NULL;
        struct api_request req;
        char err[256] = "";
        int r;

        r = api_request_parse(line, len, &req, err, sizeof(err));
        if (r >= 0)
                r = run_request(c->server, &req, &reply, err, sizeof(err));
        if (r < 0) {
                log_debug("control socket: request failed: %s",
                          err[0] ? err : api_errno_message(r));
                reply = api_reply_new_error(req.id, err[0] ? err : api_errno_message(r));
        }
        r = reply ? conn_queue_reply(c, reply) : -ENOMEM;
        if (r == -E2BIG)
                r = conn_queue_error(c, req.id, "the reply would be too long");
        api_request_done(&req);
        return r;
}

/* Answers every complete line in the input buffer and keeps the partial one. */
static int conn_handle_input(struct api_conn *c)
{
        char *start = c->in, *nl;
        int r = 0;

        while (!c->closing && (nl = memchr(start, '\n', c->in_len - (size_t)(start - c->in)))) {
                size_t len = (size_t)(nl - start);

                /* Tolerate CRLF from interactive tools. */
                r = conn_handle_line(c, start, len > 0 && start[len - 1] == '\r' ? len - 1 : len);
                if (r < 0)
                        return r;
                start = nl + 1;
        }
        c->in_len -= (size_t)(start - c->in);
        memmove(c->in, start, c->in_len);
        if (c->in_len > API_LINE_MAX) {
                /* We cannot find where the next request starts: answer once and hang up. */
                c->closing = true;
                return conn_queue_error(c, NULL, "request line too long (over 65536 bytes)");
        }
        return 0;
}

static int conn_grow_input(struct api_conn *c)
{
        size_t cap = c->in_cap ? MIN(c->in_cap * 2, API_LINE_MAX + 1) : INPUT_CAP_FIRST;
        char *in = realloc(c->in, cap);

        if (!in)
                return -ENOMEM;
        c->in = in;
        c->in_cap = cap;
        return 0;
}

/* One read per wake-up (the loop is level-triggered), so one client cannot hog the loop. */
static int conn_read(struct api_conn *c)
{
        ssize_t n;
        int r;

        if (c->in_len == c->in_cap) {
                r = conn_grow_input(c);
                if (r < 0)
                        return r;
        }
        n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if (n == 0) {
                /* The client is done sending: a last request without "\n" still counts. */
                r = c->in_len > 0 ? conn_handle_line(c, c->in, c->in_len) : 0;
                c->in_len = 0;
                c->closing = true;
                return r;
        }
        c->in_len += (size_t)n;
        return conn_handle_input(c);
}

static void on_conn_event(void *opaque, uint32_t events);

/* The loop offers no "modify": watching other events means a new source for the same fd. */
static int conn_watch(struct api_conn *c, uint32_t events)
{
        struct event_source *src;
        int r;

        if (events == c->events)
                return 0;
        event_source_free(c->src);
        c->src = NULL;
        r = event_loop_add_fd(c->server->loop, c->fd, events, on_conn_event, c, &src);
        if (r < 0)
                return r;
        c->src = src;
        c->events = events;
        return 0;
}

static void on_conn_event(void *opaque, uint32_t events)
{
        struct api_conn *c = opaque;
        int r = 0;

        if (!c->closing && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                r = conn_read(c);
        if (r >= 0)
                r = conn_flush(c);
        if (r >= 0 && c->closing && c->out_len == 0)
                r = -ECONNRESET; /* done with it */
        if (r >= 0)
                r = conn_watch(c, (c->closing ? 0 : EPOLLIN) | (c->out_len ? EPOLLOUT : 0));
        if (r < 0) {
                if (r != -ECONNRESET && r != -EPIPE)
                        log_debug("control socket: dropping a client: %s", strerror(-r));
                conn_free(c);
        }
}

static int conn_new(struct api_server *s, int fd)
{
        struct api_conn *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        *c = (struct api_conn){.server = s, .fd = fd, .events = EPOLLIN, .next = s->conns};
        r = event_loop_add_fd(s->loop, fd, EPOLLIN, on_conn_event, c, &c->src);
        if (r < 0) {
                free(c);
                return r;
        }
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        s->nr_conns++;
        return 0;
}

/* ---- listening ---- */

/* Past the client limit: say why, best effort, and hang up. */
static void refuse_client(int fd)
{
        static const char msg[] = "{\"ok\":false,\"error\":\"too many clients\"}\n";

        if (send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
                /* nothing more to do for it */
        }
        close(fd);
}

static void on_listen_event(void *opaque, uint32_t events)
{
        struct api_server *s = opaque;

        for (unsigned i = 0; i < ACCEPT_BATCH; i++) {
                int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                int r;

                if (fd < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warn_errno(-errno, "control socket: cannot accept a client");
                        return;
                }
                if (s->nr_conns >= API_CLIENTS_MAX) {
                        refuse_client(fd);
                        continue;
                }
                r = conn_new(s, fd);
                if (r < 0) {
                        log_warn_errno(r, "control socket: cannot serve a client");
                        close(fd);
                }
        }
}

static int listen_on(struct api_server *s, const struct sockaddr_un *sa, const char **why)
{
        _cleanup_close_ int fd = -1;
        struct stat st;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                *why = "cannot create a socket";
                return -errno;
        }
        /*
         * Linux creates the socket file with the socket inode's mode (less the umask), so it is
         * 0600 from the moment it appears; the umask, being per process, is left alone.
         */
        if (fchmod(fd, 0600) < 0 || bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
                *why = errno == EADDRINUSE ? "another process created the socket meanwhile"
                                           : "cannot bind the socket";
                return -errno;
        }
        /* Make sure of it before listen(): until then nobody can connect. */
        if (stat(sa->sun_path, &st) < 0 ||
            ((st.st_mode & 07777) != 0600 && chmod(sa->sun_path, 0600) < 0)) {
                *why = "cannot restrict the socket's permissions";
                unlink(sa->sun_path);
                return -errno;
        }
        if (listen(fd, LISTEN_BACKLOG) < 0) {
                *why = "cannot listen on the socket";
                unlink(sa->sun_path);
                return -errno;
        }
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        s->fd = TAKE_FD(fd);
        return 0;
}

/* Removes the socket file only if it is still the one we bound. */
static void remove_socket_file(struct api_server *s)
{
        struct stat st;

        if (lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
                unlink(s->path);
}

int api_server_new(struct event_loop *loop, const char *path, const struct api_ops *ops,
                   void *opaque, struct api_server **ret, const char **why)
{
        struct api_server *s;
        struct sockaddr_un sa;
        const char *ignored;
        int r;

        why = why ? why : &ignored;
        *why = "out of memory";
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        *s = (struct api_server){.loop = loop, .ops = ops, .opaque = opaque, .fd = -1};
        s->path = strdup(path);
        if (!s->path) {
                free(s);
                return -ENOMEM;
        }
        r = unix_address(path, &sa);
        if (r < 0)
                *why = r == -EINVAL ? "the path is empty"
                                    : "the path is too long for a Unix socket (107 bytes at most)";
        if (r >= 0)
                r = unix_clear_stale(&sa, why);
        if (r == -EADDRINUSE)
                *why = "another process is serving this socket (is this VM already running?)";
        if (r >= 0)
                r = listen_on(s, &sa, why);
        if (r >= 0) {
                r = event_loop_add_fd(loop, s->fd, EPOLLIN, on_listen_event, s, &s->src);
                *why = "cannot watch the socket";
        }
        if (r < 0) {
                api_server_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

void api_server_free(struct api_server *s)
{
        if (!s)
                return;
        while (s->conns)
                conn_free(s->conns);
        event_source_free(s->src);
        if (s->fd >= 0) {
                close(s->fd);
                remove_socket_file(s);
        }
        free(s->path);
        free(s);
}

const char *api_server_path(const struct api_server *s)
{
        return s->path;
}
