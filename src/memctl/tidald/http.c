/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * --metrics-listen: a tiny HTTP/1.0 server on loopback for Prometheus. It answers GET /metrics
 * and 404 to anything else, reads at most one bounded request per connection, and closes after
 * the reply. Non-blocking like everything else on the loop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "memctl/tidald/tidald.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "tidal/parse.h"

#define REQUEST_MAX  4096
#define CLIENTS_MAX  32
#define HTTP_TIMEOUT 10000 /* ms for a whole exchange */

struct http_client {
        struct http_client *next;
        struct http *http;
        int fd;
        struct event_source *src;
        uint64_t started_ms;
        char req[REQUEST_MAX + 1];
        size_t req_len;
        char *reply;
        size_t reply_len, reply_off;
};

struct http {
        struct daemon *d;
        int fd;
        struct event_source *src;
        struct http_client *clients;
        size_t nr_clients;
};

static void client_free(struct http_client *c)
{
        struct http *h = c->http;

        for (struct http_client **p = &h->clients; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        h->nr_clients--;
        event_source_free(c->src);
        close(c->fd);
        free(c->reply);
        free(c);
}

static int build_reply(struct http_client *c)
{
        _cleanup_free_ char *body = NULL;
        bool metrics = strncmp(c->req, "GET /metrics ", 13) == 0 ||
                       strncmp(c->req, "GET /metrics\r", 13) == 0;
        FILE *f;
        int r;

        if (metrics) {
                r = metrics_text(c->http->d, &body);
                if (r < 0)
                        return r;
        }
        f = open_memstream(&c->reply, &c->reply_len);
        if (!f)
                return -ENOMEM;
        if (metrics)
                fprintf(f,
                        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                        strlen(body), body);
        else
                fputs("HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
                      "Content-Length: 10\r\nConnection: close\r\n\r\nnot found\n",
                      f);
        return fclose(f) == 0 ? 0 : -ENOMEM;
}

static void client_event(void *opaque, uint32_t events);

/* Sends what the socket takes; true when the client is done (all sent, or it failed). */
static bool client_write(struct http_client *c)
{
        while (c->reply_off < c->reply_len) {
                ssize_t n = send(c->fd, c->reply + c->reply_off, c->reply_len - c->reply_off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return false;
                if (n <= 0)
                        return true;
                c->reply_off += (size_t)n;
        }
        return true;
}

/* The request is complete once its header ends; only its first line matters. */
static bool request_complete(const struct http_client *c)
{
        return strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n");
}

/* true when the client is done. */
static bool client_read(struct http_client *c)
{
        ssize_t n = recv(c->fd, c->req + c->req_len, REQUEST_MAX - c->req_len, MSG_DONTWAIT);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return false;
        if (n <= 0)
                return true;
        c->req_len += (size_t)n;
        c->req[c->req_len] = '\0';
        if (memchr(c->req, '\0', c->req_len))
                return true; /* not HTTP */
        if (!request_complete(c))
                return c->req_len == REQUEST_MAX; /* too large: hang up */
        if (build_reply(c) < 0)
                return true;
        /* From now on only the reply matters: watch for room to write it. */
        event_source_free(c->src);
        c->src = NULL;
        if (event_loop_add_fd(c->http->d->loop, c->fd, EPOLLOUT, client_event, c, &c->src) < 0)
                return true;
        return client_write(c);
}

static void client_event(void *opaque, uint32_t events)
{
        struct http_client *c = opaque;
        bool done;

        if (c->reply)
                done = client_write(c) || (events & (EPOLLERR | EPOLLHUP));
        else
                done = client_read(c);
        if (done)
                client_free(c);
}

static void accept_event(void *opaque, uint32_t events)
{
        struct http *h = opaque;
        struct http_client *c;
        int fd;

        fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
                /* As for the tidald socket (conn.c): the listener stays readable; do not spin
                 * on it, watch it again on the next tick. */
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                        event_source_free(h->src);
                        h->src = NULL;
                }
                return;
        }
        if (h->nr_clients >= CLIENTS_MAX || !(c = calloc(1, sizeof(*c)))) {
                close(fd);
                return;
        }
        *c = (struct http_client){.http = h, .fd = fd, .started_ms = monotonic_ms()};
        if (event_loop_add_fd(h->d->loop, fd, EPOLLIN, client_event, c, &c->src) < 0) {
                close(fd);
                free(c);
                return;
        }
        c->next = h->clients;
        h->clients = c;
        h->nr_clients++;
}

/* "127.0.0.1:9100": an IPv4 loopback address and a port; nothing else is accepted. */
static int parse_listen(const char *s, struct sockaddr_in *sa)
{
        const char *colon = strrchr(s, ':');
        char host[INET_ADDRSTRLEN];
        uint64_t port;

        if (!colon || (size_t)(colon - s) >= sizeof(host))
                return -EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        *sa = (struct sockaddr_in){.sin_family = AF_INET};
        if (inet_pton(AF_INET, host, &sa->sin_addr) != 1 ||
            (ntohl(sa->sin_addr.s_addr) >> 24) != 127)
                return -EINVAL;
        if (parse_uint(colon + 1, 1, 65535, &port) < 0)
                return -EINVAL;
        sa->sin_port = htons((uint16_t)port);
        return 0;
}

int http_start(struct daemon *d, const char *listen_on)
{
        _cleanup_close_ int fd = -1;
        struct sockaddr_in sa;
        struct http *h;
        int one = 1, r;

        if (parse_listen(listen_on, &sa) < 0)
                return log_error("--metrics-listen %s: expected 127.x.y.z:PORT (loopback only)",
                                 listen_on),
                       -EINVAL;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_errno(errno, "socket");
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0)
                return log_errno(errno, "cannot listen on %s", listen_on);
        h = calloc(1, sizeof(*h));
        if (!h)
                return log_errno(ENOMEM, "metrics endpoint");
        h->d = d;
        h->fd = fd;
        r = event_loop_add_fd(d->loop, fd, EPOLLIN, accept_event, h, &h->src);
        if (r < 0) {
                free(h);
                return log_errno(r, "metrics endpoint");
        }
        TAKE_FD(fd);
        d->http = h;
        return 0;
}

void http_check_timeouts(struct daemon *d, uint64_t now)
{
        struct http_client *next;

        if (!d->http)
                return;
        if (!d->http->src && event_loop_add_fd(d->loop, d->http->fd, EPOLLIN, accept_event, d->http,
                                               &d->http->src) < 0)
                log_warn("cannot watch the metrics socket again");
        for (struct http_client *c = d->http->clients; c; c = next) {
                next = c->next;
                if (now - c->started_ms > HTTP_TIMEOUT)
                        client_free(c);
        }
}

void http_stop(struct daemon *d)
{
        struct http *h = d->http;

        if (!h)
                return;
        while (h->clients)
                client_free(h->clients);
        event_source_free(h->src);
        close(h->fd);
        free(h);
        d->http = NULL;
}
