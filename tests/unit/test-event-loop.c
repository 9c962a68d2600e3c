/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tidal/event-loop.h"

struct ctx {
        struct event_loop *loop;
        struct event_source *src;
        int fd;
        int fired;
        int stop_after;
};

static void on_event(void *opaque, uint32_t events)
{
        struct ctx *c = opaque;
        uint64_t v;

        if (c->fd >= 0)
                assert_int_equal(read(c->fd, &v, sizeof(v)), sizeof(v));
        if (++c->fired == c->stop_after) {
                /* Freeing the running source from its own callback must be safe. */
                event_source_free(c->src);
                c->src = NULL;
                event_loop_quit(c->loop);
        }
}

static void timer_fires_periodically(void **state)
{
        struct ctx c = {.fd = -1, .stop_after = 3};

        assert_int_equal(event_loop_new(&c.loop), 0);
        assert_int_equal(event_loop_add_timer(c.loop, 2000000, on_event, &c, &c.src), 0);
        assert_int_equal(event_loop_run(c.loop), 0);
        assert_int_equal(c.fired, 3);
        event_loop_free(c.loop);
}

static void fd_events(void **state)
{
        struct ctx c = {.stop_after = 1};
        uint64_t one = 1;

        c.fd = eventfd(0, EFD_NONBLOCK);
        assert_int_equal(event_loop_new(&c.loop), 0);
        assert_int_equal(event_loop_add_fd(c.loop, c.fd, EPOLLIN, on_event, &c, &c.src), 0);
        assert_int_equal(write(c.fd, &one, sizeof(one)), sizeof(one));
        assert_int_equal(event_loop_run(c.loop), 0);
        assert_int_equal(c.fired, 1);
        event_loop_free(c.loop);
        close(c.fd);
}

static void *quit_later(void *arg)
{
        usleep(20000);
        event_loop_quit(arg);
        return NULL;
}

static void quit_from_other_thread(void **state)
{
        struct event_loop *loop;
        pthread_t t;

        assert_int_equal(event_loop_new(&loop), 0);
        pthread_create(&t, NULL, quit_later, loop);
        assert_int_equal(event_loop_run(loop), 0);
        pthread_join(t, NULL);
        /* A second run waits for a second quit rather than returning at once. */
        pthread_create(&t, NULL, quit_later, loop);
        assert_int_equal(event_loop_run(loop), 0);
        pthread_join(t, NULL);
        event_loop_free(loop);
}

static void set_period_rejects_plain_fd(void **state)
{
        struct event_loop *loop;
        struct event_source *src;
        int fd = eventfd(0, EFD_NONBLOCK);

        assert_int_equal(event_loop_new(&loop), 0);
        assert_int_equal(event_loop_add_fd(loop, fd, EPOLLIN, on_event, NULL, &src), 0);
        assert_int_equal(event_source_set_period(src, 1000), -EINVAL);
        /* Adding the same fd twice is refused by epoll, and reported. */
        assert_int_equal(event_loop_add_fd(loop, fd, EPOLLIN, on_event, NULL, NULL), -EEXIST);
        event_source_free(src);
        event_loop_free(loop);
        close(fd);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(timer_fires_periodically),
                cmocka_unit_test(fd_events),
                cmocka_unit_test(quit_from_other_thread),
                cmocka_unit_test(set_period_rejects_plain_fd),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
