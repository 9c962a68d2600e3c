/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Client connections: non-blocking, line-buffered, bounded both ways. A connection is a VM or
 * an administrator, decided by its first line. Connections are closed only from their own
 * callback, the reaper or the tick, never while a round iterates over the VMs: sending only
 * queues and marks a peer that cannot take its output, and the reaper closes it next.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "memctl/tidald/tidald.h"
#include "tidal/log.h"
#include "tidal/macro.h"

#define IN_BUF_INITIAL 1024
#define READ_MAX       (64 * 1024) /* per event, so one busy peer does not starve the others */

enum conn_kind {
        CONN_NEW,   /* no valid line yet */
        CONN_VM,    /* sent "register" */
        CONN_ADMIN, /* sent a "cmd" */
};

struct conn {
        struct conn *next, *prev;
        struct daemon *d;
        int fd;
        struct event_source *src;
        uint32_t watching; /* the events the source watches */
        enum conn_kind kind;
        struct vm *vm; /* CONN_VM, once registered */
        struct ucred cred;
        uint64_t connected_ms;
        char *in;
        size_t in_len, in_cap;
        char *out;
        size_t out_len, out_cap;
        uint64_t out_stalled_since_ms; /* 0: nothing waiting */
        bool closing;                  /* hang up once out is sent */
        bool dead;                     /* close now */
};

static void conn_event(void *opaque, uint32_t events);

uid_t conn_uid(const struct conn *c)
{
        return c->cred.uid;
}

pid_t conn_pid(const struct conn *c)
{
        return c->cred.pid;
}

static void wake_reaper(struct daemon *d)
{
        uint64_t one = 1;

        if (write(d->reap_fd, &one, sizeof(one)) < 0) {
                /* Full only if a wake-up is already pending. */
        }
}

static void mark_dead(struct conn *c, const char *why)
{
        if (c->dead)
                return;
        log_debug("connection of pid %d dropped: %s", (int)c->cred.pid, why);
        c->dead = true;
        wake_reaper(c->d);
}

static void conn_free(struct conn *c)
{
        struct daemon *d = c->d;

        if (c->vm)
                vm_conn_closed(d, c->vm);
        event_source_free(c->src);
        close(c->fd);
        if (c->prev)
                c->prev->next = c->next;
        else
                d->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        d->nr_conns--;
        free(c->in);
        free(c->out);
        free(c);
}

/*
 * The loop cannot change a source's events: watch again. Input is not watched once hanging
 * up, so a peer that keeps writing cannot spin the loop.
 */
static int watch(struct conn *c, bool out)
{
        uint32_t events = (c->closing ? 0 : EPOLLIN) | (out ? EPOLLOUT : 0);
        struct event_source *src;
        int r;

        if (c->src && c->watching == events)
                return 0;
        event_source_free(c->src);
        c->src = NULL;
        r = event_loop_add_fd(c->d->loop, c->fd, events, conn_event, c, &src);
        if (r < 0)
                return r;
        c->src = src;
        c->watching = events;
        return 0;
}

static void flush(struct conn *c)
{
        while (c->out_len > 0) {
                ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        if (!c->out_stalled_since_ms)
                                c->out_stalled_since_ms = monotonic_ms();
                        if (watch(c, true) < 0)
                                mark_dead(c, "cannot watch for output");
                        return;
                }
                if (n <= 0) {
                        mark_dead(c, "write failed");
                        return;
                }
                memmove(c->out, c->out + n, c->out_len - (size_t)n);
                c->out_len -= (size_t)n;
                c->out_stalled_since_ms = c->out_len ? monotonic_ms() : 0;
        }
        if (watch(c, false) < 0)
                mark_dead(c, "cannot watch for input");
        if (c->closing)
                wake_reaper(c->d);
}

/*
 * Unsent output a peer may leave queued. A VM's messages are small. An administrator's reply
 * to "list" or "metrics" grows with the number of VMs (400 and 600 KiB for a thousand), so it
 * may queue one reply of MEMCTL_REPLY_MAX and its newline on top of the usual bound.
 */
static size_t output_max(const struct conn *c)
{
        return c->kind == CONN_ADMIN ? MEMCTL_OUTPUT_MAX + MEMCTL_REPLY_MAX + 1 : MEMCTL_OUTPUT_MAX;
}

void conn_send(struct conn *c, const char *line, size_t len)
{
        if (c->dead || len == 0)
                return;
        if (c->out_len > output_max(c) || len > output_max(c) - c->out_len) {
                mark_dead(c, "it does not read its output");
                return;
        }
        if (c->out_len + len > c->out_cap) {
                size_t cap = MAX(c->out_cap * 2, c->out_len + len);
                char *p = realloc(c->out, cap);

                if (!p) {
                        mark_dead(c, "out of memory");
                        return;
                }
                c->out = p;
                c->out_cap = cap;
        }
        memcpy(c->out + c->out_len, line, len);
        c->out_len += len;
        flush(c);
}

void conn_send_msg(struct conn *c, const struct memctl_msg *msg)
{
        _cleanup_free_ char *line = NULL;
        int r;

        r = memctl_msg_format(msg, &line);
        if (r < 0) {
                log_errno(r, "cannot format a message");
                mark_dead(c, "out of memory");
                return;
        }
        conn_send(c, line, strlen(line));
}

void conn_detach_vm(struct conn *c)
{
        c->vm = NULL;
}

void conn_hang_up(struct conn *c)
{
        c->closing = true;
        if (watch(c, c->out_len > 0) < 0)
                mark_dead(c, "cannot watch for output");
        wake_reaper(c->d);
}

/* The first valid line decides: a "cmd" member makes an administrator, anything else a VM. */
static bool is_admin_line(const char *line, size_t len)
{
        struct json_tokener *tok = json_tokener_new();
        struct json_object *o, *cmd;
        bool admin;

        if (!tok)
                return false;
        o = json_tokener_parse_ex(tok, line, (int)len);
        json_tokener_free(tok);
        admin = o && json_object_is_type(o, json_type_object) &&
                json_object_object_get_ex(o, "cmd", &cmd);
        json_object_put(o);
        return admin;
}

static void handle_line(struct conn *c, const char *line, size_t len)
{
        int r;

        if (c->kind == CONN_NEW)
                c->kind = is_admin_line(line, len) ? CONN_ADMIN : CONN_VM;
        if (c->kind == CONN_ADMIN)
                r = admin_handle_line(c->d, c, line, len);
        else
                r = vm_handle_line(c->d, c, &c->vm, line, len);
        if (r < 0)
                conn_hang_up(c);
}

/* Handles every complete line in the buffer; keeps the incomplete tail. */
static void handle_lines(struct conn *c)
{
        size_t start = 0;

        while (!c->closing && !c->dead && start < c->in_len) {
                char *nl = memchr(c->in + start, '\n', c->in_len - start);
                size_t len;

                if (!nl)
                        break;
                len = (size_t)(nl - (c->in + start));
                *nl = '\0';
                handle_line(c, c->in + start, len);
                start += len + 1;
        }
        memmove(c->in, c->in + start, c->in_len - start);
        c->in_len -= start;
}

static void refuse_long_line(struct conn *c)
{
        static const char vm_error[] = "{\"msg\":\"error\",\"error\":\"line longer than 16384 "
                                       "bytes\"}\n";
        static const char admin_error[] = "{\"ok\":false,\"error\":\"line longer than 16384 "
                                          "bytes\"}\n";

        if (c->kind == CONN_ADMIN)
                conn_send(c, admin_error, sizeof(admin_error) - 1);
        else
                conn_send(c, vm_error, sizeof(vm_error) - 1);
        conn_hang_up(c);
}

/* Makes room to read: grows the buffer up to one line plus its newline. */
static int make_room(struct conn *c)
{
        size_t cap;
        char *p;

        if (c->in_len < c->in_cap)
                return 0;
        if (c->in_cap >= MEMCTL_LINE_MAX + 1)
                return -EMSGSIZE;
        cap = c->in_cap ? MIN(c->in_cap * 2, (size_t)MEMCTL_LINE_MAX + 1) : IN_BUF_INITIAL;
        p = realloc(c->in, cap);
        if (!p)
                return -ENOMEM;
        c->in = p;
        c->in_cap = cap;
        return 0;
}

static void read_input(struct conn *c)
{
        size_t total = 0;

        while (!c->closing && !c->dead && total < READ_MAX) {
                ssize_t n;
                int r = make_room(c);

                if (r == -EMSGSIZE) {
                        refuse_long_line(c);
                        return;
                }
                if (r < 0) {
                        mark_dead(c, "out of memory");
                        return;
                }
                n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) {
                        /* The peer went away (a VM exited or crashed): free its grant now. */
                        mark_dead(c, n == 0 ? "closed by the peer" : "read failed");
                        return;
                }
                c->in_len += (size_t)n;
                total += (size_t)n;
                handle_lines(c);
        }
}

static void conn_event(void *opaque, uint32_t events)
{
        struct conn *c = opaque;

        if (events & EPOLLOUT)
                flush(c);
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (c->closing) {
                        /* Input is not read any more; only a hang-up matters. */
                        if (events & (EPOLLHUP | EPOLLERR))
                                mark_dead(c, "closed by the peer");
                } else {
                        read_input(c);
                }
        }
        if (c->dead || (c->closing && c->out_len == 0))
                conn_free(c);
}

static void accept_one(struct daemon *d, int fd)
{
        struct conn *c = calloc(1, sizeof(*c));
        socklen_t len = sizeof(c->cred);

        if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0) {
                log_warn_errno(c ? errno : ENOMEM, "cannot take a connection");
                close(fd);
                free(c);
                return;
        }
        c->d = d;
        c->fd = fd;
        c->connected_ms = monotonic_ms();
        if (watch(c, false) < 0) {
                log_warn("cannot watch a connection");
                close(fd);
                free(c);
                return;
        }
        c->next = d->conns;
        if (d->conns)
                d->conns->prev = c;
        d->conns = c;
        d->nr_conns++;
}

/*
 * Out of descriptors or memory: the pending connection stays in the backlog and the listening
 * socket stays readable, so watching it would spin. Stop watching until the next tick
 * (conn_check_timeouts), when connections may have closed.
 */
static void pause_accepting(struct daemon *d, int error)
{
        log_warn_errno(error, "cannot accept connections now; trying again in a second");
        event_source_free(d->listen_src);
        d->listen_src = NULL;
}

static void listen_event(void *opaque, uint32_t events)
{
        struct daemon *d = opaque;

        /* A bounded batch per wake-up keeps the loop responsive under a connection storm. */
        for (int i = 0; i < 64; i++) {
                int fd = accept4(d->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                            errno == ENOMEM)
                                pause_accepting(d, errno);
                        else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warn_errno(errno, "accept");
                        return;
                }
                accept_one(d, fd);
        }
}

int conn_accept_start(struct daemon *d)
{
        return event_loop_add_fd(d->loop, d->listen_fd, EPOLLIN, listen_event, d, &d->listen_src);
}

/* Closes connections marked dead, or hung up with their output sent. */
static void reap_event(void *opaque, uint32_t events)
{
        struct daemon *d = opaque;
        uint64_t n;
        bool again = true;

        if (read(d->reap_fd, &n, sizeof(n)) < 0) {
                /* Nothing pending. */
        }
        /*
         * Closing a VM runs a round, which may mark other connections (before or after this
         * one): pass again until a pass frees none. conn_free() frees only its own connection,
         * so the next one stays valid, and a thousand VMs going at once cost a few passes, not
         * one per VM.
         */
        while (again) {
                struct conn *next;

                again = false;
                for (struct conn *c = d->conns; c; c = next) {
                        next = c->next;
                        if (c->dead || (c->closing && c->out_len == 0)) {
                                conn_free(c);
                                again = true;
                        }
                }
        }
}

int conn_reaper_start(struct daemon *d)
{
        d->reap_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (d->reap_fd < 0)
                return -errno;
        return event_loop_add_fd(d->loop, d->reap_fd, EPOLLIN, reap_event, d, &d->reap_src);
}

void conn_check_timeouts(struct daemon *d, uint64_t now)
{
        if (!d->listen_src && conn_accept_start(d) < 0)
                log_warn("cannot watch the listening socket again");
        for (struct conn *c = d->conns; c; c = c->next) {
                if (c->kind == CONN_NEW && now - c->connected_ms > TIDALD_HELLO_MS)
                        mark_dead(c, "nothing valid within 10 s");
                if (c->out_stalled_since_ms &&
                    now - c->out_stalled_since_ms > TIDALD_WRITE_STALL_MS)
                        mark_dead(c, "it does not read its output");
        }
}

void conn_close_all(struct daemon *d)
{
        /* No rounds on the way out: the VMs keep their memory and re-register later. */
        while (d->conns) {
                d->conns->vm = NULL;
                conn_free(d->conns);
        }
}
