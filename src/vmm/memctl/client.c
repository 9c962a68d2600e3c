/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tidal/event-loop.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "tidal/parse.h"
#include "tidal/unix-socket.h"
#include "vmm/dynmem/dynmem.h"
#include "vmm/memctl/client.h"
#include "vmm/memctl/wire.h"

#define RETRY_PERIOD_NS 1000000000ULL
/* The daemon may squeeze other VMs for MEMCTL_ADMIT_TIMEOUT_MS before it answers. */
#define ADMIT_WAIT_NS ((MEMCTL_ADMIT_TIMEOUT_MS + 10000ULL) * 1000000ULL)

struct memctl_client {
        struct event_loop *loop;
        char *socket;
        const char *name;
        const struct mem_settings *settings;
        const struct memctl_client_ops *ops;
        void *opaque;

        struct memctl_session session;
        struct dynmem *dynmem; /* the running boot's, or NULL */

        int fd; /* -1 while disconnected */
        struct event_source *src;
        uint32_t events;               /* what src watches */
        struct event_source *retry;    /* every second while disconnected */
        struct event_source *deadline; /* a waiting boot's patience */
        bool waiting;                  /* a boot runs the loop until the wait ends */
        struct memctl_inbuf in;
        struct memctl_outq out;

        int error;           /* set while dispatching: hang up when done */
        unsigned dispatch;   /* nesting depth of client callbacks */
        bool lost_logged;    /* "tidald is gone" said once per outage */
        bool refusal_logged; /* a running VM's re-registration refused: said once */
        char refusal[sizeof(((struct memctl_action *)0)->text)];
};

static void on_conn_event(void *opaque, uint32_t events);

static void current_vm(struct memctl_client *c, struct memctl_vm *vm)
{
        struct dynmem_state st = {.assigned = c->settings->startup, .target = c->settings->startup};

        if (c->dynmem)
                dynmem_get_state(c->dynmem, &st);
        *vm = (struct memctl_vm){
                .name = c->name,
                .settings = c->settings,
                .assigned = st.assigned,
                .target = st.target,
        };
}

/* Queues one message; a failure hangs up once the current callback is done. */
static void queue_msg(struct memctl_client *c, const struct memctl_msg *msg)
{
        _cleanup_free_ char *line = NULL;
        int r;

        if (c->fd < 0 || c->error)
                return;
        r = memctl_msg_format(msg, &line);
        if (r >= 0)
                r = memctl_outq_push(&c->out, line, strlen(line));
        if (r < 0)
                c->error = r;
}

/* Writes what the socket takes now; the rest waits for EPOLLOUT. */
static int flush(struct memctl_client *c)
{
        while (memctl_outq_pending(&c->out) > 0) {
                ssize_t n = send(c->fd, memctl_outq_head(&c->out), memctl_outq_pending(&c->out),
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -errno;
                }
                memctl_outq_consume(&c->out, (size_t)n);
        }
        return 0;
}

/* The loop offers no "modify": watching other events means a new source for the same fd. */
static int watch(struct memctl_client *c, uint32_t events)
{
        int r;

        if (c->src && events == c->events)
                return 0;
        event_source_free(c->src);
        c->src = NULL;
        r = event_loop_add_fd(c->loop, c->fd, events, on_conn_event, c, &c->src);
        if (r < 0)
                return r;
        c->events = events;
        return 0;
}

static void hang_up(struct memctl_client *c)
{
        event_source_free(c->src);
        c->src = NULL;
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        memctl_inbuf_reset(&c->in);
        memctl_outq_reset(&c->out);
        c->error = 0;
        memctl_session_disconnected(&c->session);
        if (event_source_set_period(c->retry, RETRY_PERIOD_NS) < 0)
                log_error("tidald: cannot arm the reconnection timer: VM stays on its own");
}

static void lost(struct memctl_client *c, int error, const char *why)
{
        struct memctl_vm vm;
        char target[32];

        current_vm(c, &vm);
        if (!c->lost_logged && !c->refusal_logged)
                log_full(LOG_LEVEL_WARNING, error,
                         "lost tidald at %s (%s): keeping the target of %s, retrying every second",
                         c->socket, why, format_size(vm.target, target, sizeof(target)));
        c->lost_logged = true;
        hang_up(c);
}

/* A waiting boot whose wait just ended gets the loop back. */
static void check_wait(struct memctl_client *c)
{
        if (c->waiting && c->session.wait != MEMCTL_WAIT_PENDING)
                event_loop_quit(c->loop);
}

/* After every client callback: hang up on an error, flush, watch for what is needed. */
static void settle(struct memctl_client *c)
{
        int r = c->error;

        if (c->dispatch > 0)
                return; /* the outermost callback settles */
        if (c->fd >= 0) {
                if (r >= 0)
                        r = flush(c);
                if (r >= 0)
                        r = watch(c, EPOLLIN | (memctl_outq_pending(&c->out) ? EPOLLOUT : 0));
                if (r < 0)
                        lost(c, r, r == -ENOBUFS ? "it stopped reading" : "write failed");
        }
        check_wait(c);
}

static void apply_target(struct memctl_client *c, uint64_t bytes, bool boot)
{
        char a[32], b[32];
        int r;

        /*
         * A partial grant for a reboot (docs/memctl-protocol.md, "Restart with a partial
         * grant"): the guest boots with its startup memory; smart paging (started by the VMM
         * once the admission is over, vm-smartpage.c) keeps only the grant resident; the grant
         * stays the target, so the balloon takes the guest down to it once its driver is up.
         */
        if (boot && bytes < c->settings->startup)
                log_info("tidald granted %s, less than startup (%s): smart paging bridges the gap",
                         format_size(bytes, a, sizeof(a)),
                         format_size(c->settings->startup, b, sizeof(b)));
        if (!c->dynmem)
                return; /* between boots: the next boot starts at startup and asks again */
        r = dynmem_set_external_target(c->dynmem, bytes);
        if (r < 0)
                log_errno(r, "tidald: cannot move to the target of %s",
                          format_size(bytes, a, sizeof(a)));
}

static void apply_settings(struct memctl_client *c, const struct mem_settings *req)
{
        struct memctl_msg msg;
        char err[256] = "";
        int r;

        r = c->ops->apply_settings(c->opaque, req, err, sizeof(err));
        if (r >= 0)
                return;
        /* Tell the daemon what the settings really are, so that its view matches. */
        log_warn("tidald sent settings this VM cannot take: %s", err[0] ? err : strerror(-r));
        memctl_build_settings(c->settings, &msg);
        queue_msg(c, &msg);
}

/* One action; a negative return hangs up. */
static int act(struct memctl_client *c, const struct memctl_action *a, bool boot)
{
        switch (a->type) {
        case MEMCTL_ACT_NONE:
                return 0;
        case MEMCTL_ACT_ADMITTED:
                c->refusal_logged = false;
                apply_target(c, a->bytes, boot);
                return 0;
        case MEMCTL_ACT_TARGET:
                c->refusal_logged = false;
                apply_target(c, a->bytes, false);
                return 0;
        case MEMCTL_ACT_SETTINGS:
                apply_settings(c, &a->settings);
                return 0;
        case MEMCTL_ACT_REFUSED:
                snprintf(c->refusal, sizeof(c->refusal), "%s", a->text);
                /* A booting VM stops with the message; a running one keeps trying. */
                if (c->session.wait != MEMCTL_WAIT_REFUSED && !c->refusal_logged) {
                        log_warn("tidald refused to take this running VM back (retrying every "
                                 "second): %s",
                                 a->text);
                        c->refusal_logged = true;
                }
                return -ECONNABORTED; /* the daemon hangs up after a refusal anyway */
        case MEMCTL_ACT_DROP:
                log_error("%s; hanging up and reconnecting", a->text);
                return -EPROTO;
        }
        return -EPROTO;
}

static int handle_line(void *opaque, const char *line, size_t len)
{
        struct memctl_client *c = opaque;
        struct memctl_action a;
        struct memctl_msg msg;
        char err[256] = "";
        bool boot = c->session.wait == MEMCTL_WAIT_PENDING;

        if (memctl_msg_parse(line, len, &msg, err, sizeof(err)) < 0) {
                log_error("tidald sent a bad line (%s); hanging up and reconnecting", err);
                return -EPROTO;
        }
        memctl_session_receive(&c->session, &msg, &a);
        return act(c, &a, boot);
}

static int read_input(struct memctl_client *c)
{
        size_t room;
        char *space = memctl_inbuf_space(&c->in, &room);
        ssize_t n = recv(c->fd, space, room, MSG_DONTWAIT);

        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if (n == 0)
                return -ECONNRESET;
        return memctl_inbuf_commit(&c->in, (size_t)n, handle_line, c);
}

static void on_conn_event(void *opaque, uint32_t events)
{
        struct memctl_client *c = opaque;
        int r = 0;

        if (c->fd < 0)
                return;
        c->dispatch++;
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                r = read_input(c);
        c->dispatch--;
        if (r == -EMSGSIZE)
                log_error("tidald sent a line longer than %d bytes; hanging up and reconnecting",
                          MEMCTL_LINE_MAX);
        if (r == -ECONNABORTED && c->session.wait == MEMCTL_WAIT_REFUSED) {
                hang_up(c); /* the boot stops: no "lost" message */
                event_source_set_period(c->retry, 0);
        } else if (r < 0) {
                lost(c, r == -ECONNRESET || r == -EPROTO || r == -EMSGSIZE ? 0 : r,
                     r == -ECONNRESET ? "it closed the connection" : "connection dropped");
        }
        settle(c);
}

/* A connection is up: say what the session wants said. */
static void connected(struct memctl_client *c, int fd)
{
        struct memctl_msg msg;
        struct memctl_vm vm;

        c->fd = fd;
        event_source_set_period(c->retry, 0);
        current_vm(c, &vm);
        if (memctl_session_connected(&c->session, &vm, &msg))
                queue_msg(c, &msg);
}

static void on_retry(void *opaque, uint32_t events)
{
        struct memctl_client *c = opaque;
        int fd, r;

        if (c->fd >= 0)
                return;
        r = unix_connect(c->socket, true, &fd);
        if (r < 0) {
                log_debug("tidald at %s: still not there: %s", c->socket, strerror(-r));
                return;
        }
        if (c->lost_logged)
                log_info("connected to tidald at %s again: registering this VM", c->socket);
        c->lost_logged = false;
        connected(c, fd);
        settle(c);
}

static void on_report(void *opaque, const struct dynmem_state *st)
{
        struct memctl_client *c = opaque;
        struct memctl_msg msg;

        if (!memctl_session_active(&c->session))
                return;
        memctl_build_report(st, &msg);
        if (c->ops->get_paging)
                c->ops->get_paging(c->opaque, &msg.report.paging);
        queue_msg(c, &msg);
        settle(c);
}

int memctl_client_new(const struct memctl_client_config *cfg, struct memctl_client **ret)
{
        struct memctl_client *c = calloc(1, sizeof(*c));
        int fd, r;

        if (!c)
                return -ENOMEM;
        *c = (struct memctl_client){
                .loop = cfg->loop,
                .socket = strdup(cfg->socket),
                .name = cfg->name,
                .settings = cfg->settings,
                .ops = cfg->ops,
                .opaque = cfg->opaque,
                .fd = -1,
        };
        memctl_session_init(&c->session);
        r = c->socket ? 0 : -ENOMEM;
        if (r >= 0)
                r = event_loop_add_timer(c->loop, 0, on_retry, c, &c->retry);
        if (r >= 0)
                r = unix_connect(c->socket, true, &fd);
        if (r < 0) {
                memctl_client_free(c);
                return r;
        }
        connected(c, fd);
        settle(c);
        *ret = c;
        return 0;
}

void memctl_client_free(struct memctl_client *c)
{
        if (!c)
                return;
        event_source_free(c->src);
        event_source_free(c->retry);
        event_source_free(c->deadline);
        if (c->fd >= 0)
                close(c->fd);
        memctl_outq_reset(&c->out);
        free(c->socket);
        free(c);
}

void memctl_client_attach(struct memctl_client *c, struct dynmem *d)
{
        c->dynmem = d;
        if (!d)
                return;
        dynmem_set_source(d, DYNMEM_SOURCE_EXTERNAL);
        dynmem_set_report_fn(d, on_report, c);
}

static void on_deadline(void *opaque, uint32_t events)
{
        struct memctl_client *c = opaque;

        event_source_free(c->deadline);
        c->deadline = NULL;
        memctl_session_admit_timeout(&c->session);
        /* A daemon that does not answer a reboot is as good as gone: start over later. */
        if (c->session.wait == MEMCTL_WAIT_STARTUP && c->fd >= 0)
                lost(c, 0, "it did not answer the reboot");
        settle(c);
}

bool memctl_client_boot_begin(struct memctl_client *c, bool reboot)
{
        struct memctl_msg msg;
        struct memctl_vm vm;
        int r;

        current_vm(c, &vm);
        if (memctl_session_boot(&c->session, reboot, &vm, &msg))
                queue_msg(c, &msg);
        if (c->session.wait != MEMCTL_WAIT_PENDING)
                return false;
        r = event_loop_add_timer(c->loop, ADMIT_WAIT_NS, on_deadline, c, &c->deadline);
        if (r < 0) {
                log_errno(r, "tidald: cannot time the admission");
                memctl_session_admit_timeout(&c->session);
                return false;
        }
        c->waiting = true;
        settle(c);
        return true;
}

enum memctl_wait memctl_client_boot_wait(struct memctl_client *c)
{
        return c->session.wait;
}

const char *memctl_client_refusal(struct memctl_client *c)
{
        return c->refusal;
}

void memctl_client_boot_end(struct memctl_client *c)
{
        event_source_free(c->deadline);
        c->deadline = NULL;
        c->waiting = false;
        memctl_session_boot_done(&c->session);
}

void memctl_client_settings_changed(struct memctl_client *c)
{
        struct memctl_msg msg;

        if (!memctl_session_registered(&c->session))
                return; /* the next registration carries them */
        memctl_build_settings(c->settings, &msg);
        queue_msg(c, &msg);
        settle(c);
}

void memctl_client_get_info(struct memctl_client *c, struct memctl_client_info *ret)
{
        *ret = (struct memctl_client_info){
                .socket = c->socket,
                .connected = c->fd >= 0,
                .have_grant = c->session.have_grant,
                .grant = c->session.grant,
                .reconnects = c->session.reconnects,
        };
}
