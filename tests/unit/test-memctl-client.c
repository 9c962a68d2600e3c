/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The VMM as a client of tidald, its pure parts (src/vmm/memctl/session.c, wire.c): which
 * message goes out when, what each message from the daemon does, the reconnection and reboot
 * paths, and the bounds of the line buffers.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "tidal/event-loop.h"
#include "tidal/macro.h"
#include "vmm/dynmem/demand.h"
#include "vmm/memctl/client.h"
#include "vmm/memctl/session.h"
#include "vmm/memctl/wire.h"

static const struct mem_settings settings = {
        .dynamic = true,
        .startup = 1 * GiB,
        .minimum = 512 * MiB,
        .maximum = 4 * GiB,
        .buffer = 20,
        .weight = 5000,
};

static const struct memctl_vm vm = {
        .name = "vm1",
        .settings = &settings,
        .assigned = 1536 * MiB,
        .target = 1600 * MiB,
};

/* A message from the daemon as it goes over the wire: through the real codec. */
static void receive_line(struct memctl_session *s, const char *line, struct memctl_action *act)
{
        struct memctl_msg msg;
        char err[256] = "";

        if (memctl_msg_parse(line, strlen(line), &msg, err, sizeof(err)) < 0)
                fail_msg("'%s' does not parse: %s", line, err);
        memctl_session_receive(s, &msg, act);
}

/* The message the session wants sent, as the daemon will read it. */
static void round_trip(const struct memctl_msg *out, struct memctl_msg *in)
{
        char *line = NULL, err[256] = "";

        assert_int_equal(memctl_msg_format(out, &line), 0);
        assert_non_null(strchr(line, '\n'));
        if (memctl_msg_parse(line, strlen(line) - 1, in, err, sizeof(err)) < 0)
                fail_msg("'%s' does not parse back: %s", line, err);
        free(line);
}

/* Connected at start, then the first boot registers with running=false and waits. */
static void first_boot_registers_and_waits(struct memctl_session *s)
{
        struct memctl_msg msg, back;

        memctl_session_init(s);
        assert_false(memctl_session_connected(s, &vm, &msg));
        assert_int_equal(s->phase, MEMCTL_PHASE_CONNECTED);
        assert_true(memctl_session_boot(s, false, &vm, &msg));
        assert_int_equal(s->wait, MEMCTL_WAIT_PENDING);
        assert_int_equal(s->phase, MEMCTL_PHASE_ADMITTING);
        round_trip(&msg, &back);
        assert_int_equal(back.type, MEMCTL_REGISTER);
        assert_string_equal(back.reg.name, "vm1");
        assert_false(back.reg.running);
        assert_int_equal(back.reg.settings.startup, settings.startup);
        assert_int_equal(back.reg.settings.minimum, settings.minimum);
        assert_int_equal(back.reg.settings.maximum, settings.maximum);
        assert_int_equal(back.reg.settings.buffer, settings.buffer);
        assert_int_equal(back.reg.settings.weight, settings.weight);
}

static void admitted_lets_the_boot_go(void **state)
{
        struct memctl_session s;
        struct memctl_action act;

        first_boot_registers_and_waits(&s);
        /* Nothing but admitted/refused/settings/error is in order before the answer. */
        assert_false(memctl_session_active(&s));
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":1073741824}", &act);
        assert_int_equal(act.type, MEMCTL_ACT_ADMITTED);
        assert_int_equal(act.bytes, 1 * GiB);
        assert_int_equal(s.wait, MEMCTL_WAIT_ADMITTED);
        assert_true(memctl_session_active(&s));
        assert_true(s.have_grant);
        assert_int_equal(s.grant, 1 * GiB);
        memctl_session_boot_done(&s);
        assert_int_equal(s.wait, MEMCTL_WAIT_NONE);

        /* Then targets are obeyed and remembered. */
        receive_line(&s, "{\"msg\":\"target\",\"target_bytes\":2147483648}", &act);
        assert_int_equal(act.type, MEMCTL_ACT_TARGET);
        assert_int_equal(act.bytes, 2 * GiB);
        assert_int_equal(s.grant, 2 * GiB);
}

static void refused_stops_the_boot_with_the_message(void **state)
{
        struct memctl_session s;
        struct memctl_action act;

        first_boot_registers_and_waits(&s);
        receive_line(&s,
                     "{\"msg\":\"refused\",\"needed_bytes\":1073741824,\"found_bytes\":536870912,"
                     "\"error\":\"cannot admit vm1: needs 1 GiB, 512 MiB can be found\"}",
                     &act);
        assert_int_equal(act.type, MEMCTL_ACT_REFUSED);
        assert_int_equal(s.wait, MEMCTL_WAIT_REFUSED);
        assert_string_equal(act.text, "cannot admit vm1: needs 1 GiB, 512 MiB can be found");
        /* The daemon hangs up; the refusal stands. */
        memctl_session_disconnected(&s);
        assert_int_equal(s.wait, MEMCTL_WAIT_REFUSED);
}

static void refusal_without_text_says_the_amounts(void **state)
{
        struct memctl_session s;
        struct memctl_action act;
        struct memctl_msg msg = {
                .type = MEMCTL_REFUSED,
                .refused = {.needed = 1 * GiB, .found = 512 * MiB},
        };

        first_boot_registers_and_waits(&s);
        memctl_session_receive(&s, &msg, &act);
        assert_int_equal(act.type, MEMCTL_ACT_REFUSED);
        assert_non_null(strstr(act.text, "1 GiB"));
        assert_non_null(strstr(act.text, "512 MiB"));
}

static void out_of_order_messages_drop_the_connection(void **state)
{
        struct memctl_session s;
        struct memctl_action act;

        /* A target before the admission. */
        first_boot_registers_and_waits(&s);
        receive_line(&s, "{\"msg\":\"target\",\"target_bytes\":2147483648}", &act);
        assert_int_equal(act.type, MEMCTL_ACT_DROP);
        assert_non_null(strstr(act.text, "target"));
        assert_int_equal(s.wait, MEMCTL_WAIT_PENDING);

        /* A second admission. */
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":1073741824}", &act);
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":1073741824}", &act);
        assert_int_equal(act.type, MEMCTL_ACT_DROP);
        receive_line(&s,
                     "{\"msg\":\"refused\",\"needed_bytes\":1,\"found_bytes\":0,\"error\":\"x\"}",
                     &act);
        assert_int_equal(act.type, MEMCTL_ACT_DROP);

        /* Messages only a VM sends. */
        receive_line(&s, "{\"msg\":\"restart\"}", &act);
        assert_int_equal(act.type, MEMCTL_ACT_DROP);

        /* The daemon's own error. */
        receive_line(&s, "{\"msg\":\"error\",\"error\":\"report out of order\"}", &act);
        assert_int_equal(act.type, MEMCTL_ACT_DROP);
        assert_non_null(strstr(act.text, "report out of order"));

        /* Settings before registering. */
        memctl_session_init(&s);
        assert_false(memctl_session_connected(&s, &vm, &(struct memctl_msg){0}));
        receive_line(&s,
                     "{\"msg\":\"settings\",\"startup_bytes\":1073741824,\"minimum_bytes\":"
                     "268435456,\"maximum_bytes\":8589934592,\"buffer\":30,\"weight\":100}",
                     &act);
        assert_int_equal(act.type, MEMCTL_ACT_DROP);
}

static void settings_from_the_daemon_are_applied(void **state)
{
        struct memctl_session s;
        struct memctl_action act;

        first_boot_registers_and_waits(&s);
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":1073741824}", &act);
        receive_line(&s,
                     "{\"msg\":\"settings\",\"startup_bytes\":1073741824,\"minimum_bytes\":"
                     "268435456,\"maximum_bytes\":8589934592,\"buffer\":30,\"weight\":100}",
                     &act);
        assert_int_equal(act.type, MEMCTL_ACT_SETTINGS);
        assert_int_equal(act.settings.minimum, 256 * MiB);
        assert_int_equal(act.settings.maximum, 8 * GiB);
        assert_int_equal(act.settings.buffer, 30);
        assert_int_equal(act.settings.weight, 100);
}

static void report_carries_dynmem_state(void **state)
{
        struct dynmem_state st = {
                .source = DYNMEM_SOURCE_EXTERNAL,
                .target = 2 * GiB,
                .assigned = 1800 * MiB,
                .have_demand = true,
                .demand = 1600 * MiB,
                .pressure = DEMAND_PRESSURE_SWAP_IN,
                .fresh = true,
                .status = MEM_STATUS_LOW,
                .balloon = 0,
                .vmem_plugged = 800 * MiB,
        };
        struct memctl_msg msg, back;

        memctl_build_report(&st, &msg);
        round_trip(&msg, &back);
        assert_int_equal(back.type, MEMCTL_REPORT);
        assert_int_equal(back.report.assigned, 1800 * MiB);
        assert_true(back.report.have_demand);
        assert_int_equal(back.report.demand, 1600 * MiB);
        assert_true(back.report.fresh);
        assert_int_equal(back.report.pressure, DEMAND_PRESSURE_SWAP_IN);
        assert_int_equal(back.report.status, MEM_STATUS_LOW);
        assert_int_equal(back.report.vmem_plugged, 800 * MiB);
        assert_int_equal(back.report.balloon, 0);

        /* Before the guest's first statistics: no demand. */
        st.have_demand = false;
        st.demand = 123;
        memctl_build_report(&st, &msg);
        round_trip(&msg, &back);
        assert_false(back.report.have_demand);

        memctl_build_settings(&settings, &msg);
        round_trip(&msg, &back);
        assert_int_equal(back.type, MEMCTL_SETTINGS);
        assert_int_equal(back.settings.settings.maximum, settings.maximum);
}

static void daemon_gone_and_back_reregisters_running(void **state)
{
        struct memctl_session s;
        struct memctl_action act;
        struct memctl_msg msg, back;

        first_boot_registers_and_waits(&s);
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":1073741824}", &act);
        memctl_session_boot_done(&s);

        memctl_session_disconnected(&s);
        assert_int_equal(s.phase, MEMCTL_PHASE_DISCONNECTED);
        assert_false(memctl_session_active(&s));
        assert_false(memctl_session_registered(&s));
        assert_int_equal(s.wait, MEMCTL_WAIT_NONE); /* the running guest is not disturbed */

        /* Back: registers as running, with what it has and where it is going. */
        assert_true(memctl_session_connected(&s, &vm, &msg));
        assert_int_equal(s.reconnects, 1);
        round_trip(&msg, &back);
        assert_int_equal(back.type, MEMCTL_REGISTER);
        assert_true(back.reg.running);
        assert_int_equal(back.reg.assigned, vm.assigned);
        assert_int_equal(back.reg.grant, vm.target);
        /* No admission for a running guest: it reports and obeys at once. */
        assert_true(memctl_session_active(&s));

        /* The daemon may still answer with "admitted": a target, no boot waits for it. */
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":1677721600}", &act);
        assert_int_equal(act.type, MEMCTL_ACT_ADMITTED);
        assert_int_equal(act.bytes, 1600 * MiB);
        assert_int_equal(s.wait, MEMCTL_WAIT_NONE);
        assert_true(memctl_session_active(&s));
        /* ...but only once. */
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":1677721600}", &act);
        assert_int_equal(act.type, MEMCTL_ACT_DROP);

        /* Or with targets straight away; then no late answer is in order. */
        memctl_session_disconnected(&s);
        assert_true(memctl_session_connected(&s, &vm, &msg));
        receive_line(&s, "{\"msg\":\"target\",\"target_bytes\":2147483648}", &act);
        assert_int_equal(act.type, MEMCTL_ACT_TARGET);
        assert_int_equal(s.grant, 2 * GiB);
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":1677721600}", &act);
        assert_int_equal(act.type, MEMCTL_ACT_DROP);

        /* Refused while running: hang up and try again, the guest keeps running. */
        memctl_session_disconnected(&s);
        assert_true(memctl_session_connected(&s, &vm, &msg));
        assert_int_equal(s.reconnects, 3);
        receive_line(&s,
                     "{\"msg\":\"refused\",\"needed_bytes\":1,\"found_bytes\":0,\"error\":\"x\"}",
                     &act);
        assert_int_equal(act.type, MEMCTL_ACT_REFUSED);
        assert_int_equal(s.wait, MEMCTL_WAIT_NONE);
}

static void first_boot_waits_through_a_daemon_restart(void **state)
{
        struct memctl_session s;
        struct memctl_action act;
        struct memctl_msg msg, back;

        first_boot_registers_and_waits(&s);
        memctl_session_disconnected(&s);
        assert_int_equal(s.wait, MEMCTL_WAIT_PENDING);
        /* The next connection asks again, still as a VM that does not run yet. */
        assert_true(memctl_session_connected(&s, &vm, &msg));
        round_trip(&msg, &back);
        assert_false(back.reg.running);
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":1073741824}", &act);
        assert_int_equal(s.wait, MEMCTL_WAIT_ADMITTED);

        /* Without an answer in time, the start fails. */
        first_boot_registers_and_waits(&s);
        memctl_session_admit_timeout(&s);
        assert_int_equal(s.wait, MEMCTL_WAIT_TIMEOUT);
}

static void reboot_says_restart_and_waits(void **state)
{
        struct memctl_session s;
        struct memctl_action act;
        struct memctl_msg msg, back;

        first_boot_registers_and_waits(&s);
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":1073741824}", &act);
        memctl_session_boot_done(&s);

        assert_true(memctl_session_boot(&s, true, &vm, &msg));
        round_trip(&msg, &back);
        assert_int_equal(back.type, MEMCTL_RESTART);
        assert_int_equal(s.wait, MEMCTL_WAIT_PENDING);
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":536870912}", &act);
        assert_int_equal(act.type, MEMCTL_ACT_ADMITTED);
        assert_int_equal(act.bytes, 512 * MiB); /* below startup: the VMM boots with startup */
        assert_int_equal(s.wait, MEMCTL_WAIT_ADMITTED);
        memctl_session_boot_done(&s);

        /* The daemon vanishes during the wait: reboot with startup. */
        assert_true(memctl_session_boot(&s, true, &vm, &msg));
        memctl_session_disconnected(&s);
        assert_int_equal(s.wait, MEMCTL_WAIT_STARTUP);
        memctl_session_boot_done(&s);

        /* Already gone when the guest reboots: no wait at all. */
        assert_false(memctl_session_boot(&s, true, &vm, &msg));
        assert_int_equal(s.wait, MEMCTL_WAIT_STARTUP);
        memctl_session_boot_done(&s);

        /* A daemon that does not answer a reboot in time counts as gone. */
        assert_true(memctl_session_connected(&s, &vm, &msg));
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":1073741824}", &act);
        assert_true(memctl_session_boot(&s, true, &vm, &msg));
        memctl_session_admit_timeout(&s);
        assert_int_equal(s.wait, MEMCTL_WAIT_STARTUP);

        /* Refused on reboot: the VM stops with the message. */
        memctl_session_boot_done(&s);
        memctl_session_disconnected(&s);
        assert_true(memctl_session_connected(&s, &vm, &msg));
        receive_line(&s, "{\"msg\":\"admitted\",\"grant_bytes\":1073741824}", &act);
        assert_true(memctl_session_boot(&s, true, &vm, &msg));
        receive_line(&s,
                     "{\"msg\":\"refused\",\"needed_bytes\":1073741824,\"found_bytes\":0,"
                     "\"error\":\"no room\"}",
                     &act);
        assert_int_equal(s.wait, MEMCTL_WAIT_REFUSED);
}

/* ---- wire.c ---- */

struct lines {
        unsigned n;
        char last[64];
        int fail_at; /* 1-based line number to fail on, 0: never */
};

static int collect(void *opaque, const char *line, size_t len)
{
        struct lines *l = opaque;

        l->n++;
        snprintf(l->last, sizeof(l->last), "%.*s", (int)MIN(len, 63), line);
        return l->fail_at && (int)l->n == l->fail_at ? -EPROTO : 0;
}

static int feed(struct memctl_inbuf *b, const char *data, struct lines *l)
{
        size_t room, len = strlen(data);
        char *space = memctl_inbuf_space(b, &room);

        assert_true(len <= room);
        memcpy(space, data, len);
        return memctl_inbuf_commit(b, len, collect, l);
}

static void inbuf_splits_lines(void **state)
{
        struct memctl_inbuf *b = calloc(1, sizeof(*b));
        struct lines l = {0};

        assert_int_equal(feed(b, "{\"a\":1}\n{\"b\"", &l), 0);
        assert_int_equal(l.n, 1);
        assert_string_equal(l.last, "{\"a\":1}");
        assert_int_equal(feed(b, ":2}\n\n", &l), 0);
        assert_int_equal(l.n, 3);
        assert_string_equal(l.last, ""); /* an empty line reaches the parser, which refuses it */
        assert_int_equal(b->len, 0);

        /* The callback's error stops the walk. */
        l = (struct lines){.fail_at = 1};
        assert_int_equal(feed(b, "x\ny\n", &l), -EPROTO);
        assert_int_equal(l.n, 1);
        free(b);
}

static void inbuf_bounds_a_line(void **state)
{
        struct memctl_inbuf *b = calloc(1, sizeof(*b));
        char *big = malloc(MEMCTL_LINE_MAX + 2);
        struct lines l = {0};
        size_t room;

        /* Exactly MEMCTL_LINE_MAX bytes and a newline: fine. */
        memset(big, 'x', MEMCTL_LINE_MAX);
        big[MEMCTL_LINE_MAX] = '\n';
        big[MEMCTL_LINE_MAX + 1] = '\0';
        assert_int_equal(feed(b, big, &l), 0);
        assert_int_equal(l.n, 1);
        /* One more byte without a newline: too long. */
        big[MEMCTL_LINE_MAX] = 'x';
        assert_int_equal(feed(b, big, &l), -EMSGSIZE);
        assert_int_equal(l.n, 1);
        memctl_inbuf_space(b, &room);
        assert_int_equal(room, 0);
        /* A commit larger than the room given cannot overrun. */
        memctl_inbuf_reset(b);
        assert_int_equal(memctl_inbuf_commit(b, SIZE_MAX, collect, &l), -EMSGSIZE);
        assert_int_equal(b->len, sizeof(b->data));
        free(big);
        free(b);
}

static void outq_is_bounded(void **state)
{
        struct memctl_outq q = {0};
        char *chunk = calloc(1, 64 * 1024);

        assert_int_equal(memctl_outq_push(&q, "abc\n", 4), 0);
        assert_int_equal(memctl_outq_pending(&q), 4);
        memctl_outq_consume(&q, 2);
        assert_memory_equal(memctl_outq_head(&q), "c\n", 2);
        memctl_outq_consume(&q, 100); /* more than pending: clamps */
        assert_int_equal(memctl_outq_pending(&q), 0);

        for (int i = 0; i < 4; i++)
                assert_int_equal(memctl_outq_push(&q, chunk, 64 * 1024), 0);
        assert_int_equal(memctl_outq_pending(&q), MEMCTL_OUTPUT_MAX);
        assert_int_equal(memctl_outq_push(&q, "x", 1), -ENOBUFS);
        memctl_outq_consume(&q, 1);
        assert_int_equal(memctl_outq_push(&q, "x", 1), 0);
        assert_int_equal(memctl_outq_push(&q, chunk, SIZE_MAX), -ENOBUFS);
        memctl_outq_reset(&q);
        assert_int_equal(memctl_outq_pending(&q), 0);
        free(chunk);
}

/* ---- client.c over a real socket, the test playing tidald ---- */

struct fake_daemon {
        char dir[64], path[96];
        int listen_fd, fd;
        struct event_loop *loop;
        unsigned settings_applied;
};

static int fake_apply_settings(void *opaque, const struct mem_settings *req, char *err,
                               size_t errlen)
{
        struct fake_daemon *d = opaque;

        d->settings_applied++;
        return 0;
}

static const struct memctl_client_ops fake_ops = {.apply_settings = fake_apply_settings};

static void quit_loop(void *opaque, uint32_t events)
{
        event_loop_quit(opaque);
}

static void daemon_start(struct fake_daemon *d)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        snprintf(d->dir, sizeof(d->dir), "/tmp/test-memctl-XXXXXX");
        assert_non_null(mkdtemp(d->dir));
        snprintf(d->path, sizeof(d->path), "%s/tidald.sock", d->dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->path);
        d->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(d->listen_fd >= 0);
        assert_int_equal(bind(d->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(d->listen_fd, 4), 0);
        d->fd = -1;
        assert_int_equal(event_loop_new(&d->loop), 0);
}

static void daemon_stop(struct fake_daemon *d)
{
        if (d->fd >= 0)
                close(d->fd);
        close(d->listen_fd);
        unlink(d->path);
        rmdir(d->dir);
        event_loop_free(d->loop);
}

/* One line the client sent (blocking: it was flushed before we look). */
static void daemon_read_line(struct fake_daemon *d, struct memctl_msg *msg)
{
        char line[MEMCTL_LINE_MAX + 1], err[256] = "";
        size_t len = 0;

        while (len < sizeof(line)) {
                assert_int_equal(read(d->fd, line + len, 1), 1);
                if (line[len] == '\n')
                        break;
                len++;
        }
        if (memctl_msg_parse(line, len, msg, err, sizeof(err)) < 0)
                fail_msg("the client sent '%.*s': %s", (int)len, line, err);
}

static void daemon_send(struct fake_daemon *d, const char *line)
{
        assert_int_equal(write(d->fd, line, strlen(line)), (ssize_t)strlen(line));
}

/* Runs the loop until the client hangs up on us. */
static void run_until_hangup(struct fake_daemon *d)
{
        struct event_source *src;
        char c;

        assert_int_equal(event_loop_add_fd(d->loop, d->fd, EPOLLRDHUP, quit_loop, d->loop, &src),
                         0);
        assert_int_equal(event_loop_run(d->loop), 0);
        event_source_free(src);
        assert_int_equal(read(d->fd, &c, 1), 0); /* EOF: the client closed its end */
        close(d->fd);
        d->fd = -1;
}

/* Runs the loop until the client connects again (its retry timer), and accepts it. */
static void run_until_reconnect(struct fake_daemon *d)
{
        struct event_source *src;

        assert_int_equal(
                event_loop_add_fd(d->loop, d->listen_fd, EPOLLIN, quit_loop, d->loop, &src), 0);
        assert_int_equal(event_loop_run(d->loop), 0);
        event_source_free(src);
        d->fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(d->fd >= 0);
}

static struct memctl_client *client_connect(struct fake_daemon *d)
{
        struct memctl_client_config cfg = {
                .loop = d->loop,
                .socket = d->path,
                .name = "vm1",
                .settings = &settings,
                .ops = &fake_ops,
                .opaque = d,
        };
        struct memctl_client *c;

        assert_int_equal(memctl_client_new(&cfg, &c), 0);
        d->fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(d->fd >= 0);
        return c;
}

static void client_admission_and_reconnection(void **state)
{
        struct fake_daemon d;
        struct memctl_client *c;
        struct memctl_client_info info;
        struct memctl_msg msg;

        daemon_start(&d);
        c = client_connect(&d);

        /* The boot registers and waits; admitted gives the loop back. */
        assert_true(memctl_client_boot_begin(c, false));
        daemon_read_line(&d, &msg);
        assert_int_equal(msg.type, MEMCTL_REGISTER);
        assert_false(msg.reg.running);
        daemon_send(&d, "{\"msg\":\"admitted\",\"grant_bytes\":1073741824}\n");
        assert_int_equal(event_loop_run(d.loop), 0);
        assert_int_equal(memctl_client_boot_wait(c), MEMCTL_WAIT_ADMITTED);
        memctl_client_boot_end(c);
        memctl_client_get_info(c, &info);
        assert_true(info.connected);
        assert_true(info.have_grant);
        assert_int_equal(info.grant, 1 * GiB);

        /* Settings from the VM's own socket go to the daemon. */
        memctl_client_settings_changed(c);
        daemon_read_line(&d, &msg);
        assert_int_equal(msg.type, MEMCTL_SETTINGS);

        /* A line that does not parse: the client hangs up, then comes back as running. */
        daemon_send(&d, "{\"msg\":\"target\",\"target_bytes\":-1}\n");
        run_until_hangup(&d);
        memctl_client_get_info(c, &info);
        assert_false(info.connected);
        assert_int_equal(info.grant, 1 * GiB); /* kept */
        run_until_reconnect(&d);
        daemon_read_line(&d, &msg);
        assert_int_equal(msg.type, MEMCTL_REGISTER);
        assert_true(msg.reg.running);
        memctl_client_get_info(c, &info);
        assert_true(info.connected);
        assert_int_equal(info.reconnects, 1);

        /* A daemon that closes: same. */
        close(d.fd);
        d.fd = -1;
        run_until_reconnect(&d);
        daemon_read_line(&d, &msg);
        assert_true(msg.reg.running);
        memctl_client_get_info(c, &info);
        assert_int_equal(info.reconnects, 2);

        memctl_client_free(c);
        daemon_stop(&d);
}

static void client_refused_and_oversized(void **state)
{
        struct fake_daemon d;
        struct memctl_client *c;
        struct memctl_msg msg;
        char *big;

        daemon_start(&d);
        c = client_connect(&d);
        assert_true(memctl_client_boot_begin(c, false));
        daemon_read_line(&d, &msg);
        daemon_send(&d, "{\"msg\":\"refused\",\"needed_bytes\":1073741824,\"found_bytes\":0,"
                        "\"error\":\"cannot admit vm1: needs 1 GiB, 0 B can be found\"}\n");
        assert_int_equal(event_loop_run(d.loop), 0);
        assert_int_equal(memctl_client_boot_wait(c), MEMCTL_WAIT_REFUSED);
        assert_string_equal(memctl_client_refusal(c),
                            "cannot admit vm1: needs 1 GiB, 0 B can be found");
        memctl_client_boot_end(c);
        memctl_client_free(c);
        close(d.fd);
        d.fd = -1;

        /* A line over MEMCTL_LINE_MAX: hang up. */
        c = client_connect(&d);
        big = malloc(MEMCTL_LINE_MAX + 2);
        memset(big, ' ', MEMCTL_LINE_MAX + 1);
        big[MEMCTL_LINE_MAX + 1] = '\0';
        daemon_send(&d, big);
        run_until_hangup(&d);
        free(big);
        memctl_client_free(c);
        daemon_stop(&d);
}

static void client_without_daemon(void **state)
{
        struct memctl_client_config cfg = {
                .socket = "/nonexistent/tidald.sock",
                .name = "vm1",
                .settings = &settings,
                .ops = &fake_ops,
        };
        struct memctl_client *c = NULL;

        assert_int_equal(event_loop_new(&cfg.loop), 0);
        assert_int_equal(memctl_client_new(&cfg, &c), -ENOENT);
        assert_null(c);
        event_loop_free(cfg.loop);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(admitted_lets_the_boot_go),
                cmocka_unit_test(refused_stops_the_boot_with_the_message),
                cmocka_unit_test(refusal_without_text_says_the_amounts),
                cmocka_unit_test(out_of_order_messages_drop_the_connection),
                cmocka_unit_test(settings_from_the_daemon_are_applied),
                cmocka_unit_test(report_carries_dynmem_state),
                cmocka_unit_test(daemon_gone_and_back_reregisters_running),
                cmocka_unit_test(first_boot_waits_through_a_daemon_restart),
                cmocka_unit_test(reboot_says_restart_and_waits),
                cmocka_unit_test(inbuf_splits_lines),
                cmocka_unit_test(inbuf_bounds_a_line),
                cmocka_unit_test(outq_is_bounded),
                cmocka_unit_test(client_admission_and_reconnection),
                cmocka_unit_test(client_refused_and_oversized),
                cmocka_unit_test(client_without_daemon),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
