/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "tidal/event-loop.h"
#include "tidal/macro.h"

struct event_source {
        struct event_loop *loop;
        int fd;
        bool owns_fd; /* timers own their timerfd */
        bool is_timer;
        bool dead; /* freed from inside a dispatch round: reaped after it */
        event_fn fn;
        void *opaque;
        struct event_source *next_dead;
};

struct event_loop {
        int epoll_fd;
        int wake_fd;
        bool quit;
        pthread_mutex_t dead_lock;
        struct event_source *dead; /* freed sources, reaped between dispatch rounds */
};

static void reap_dead(struct event_loop *loop);

int event_loop_new(struct event_loop **ret)
{
        _cleanup_free_ struct event_loop *loop = calloc(1, sizeof(*loop));
        struct epoll_event ev = {.events = EPOLLIN};

        if (!loop)
                return -ENOMEM;
        pthread_mutex_init(&loop->dead_lock, NULL);
        loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (loop->epoll_fd < 0)
                return -errno;
        loop->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (loop->wake_fd < 0) {
                int r = -errno;
                close(loop->epoll_fd);
                return r;
        }
        ev.data.ptr = NULL; /* NULL marks the wake-up eventfd */
        if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->wake_fd, &ev) < 0) {
                int r = -errno;
                close(loop->wake_fd);
                close(loop->epoll_fd);
                return r;
        }
        *ret = TAKE_PTR(loop);
        return 0;
}

void event_loop_free(struct event_loop *loop)
{
        if (!loop)
                return;
        reap_dead(loop);
        pthread_mutex_destroy(&loop->dead_lock);
        close(loop->wake_fd);
        close(loop->epoll_fd);
        free(loop);
}

static int add_source(struct event_loop *loop, int fd, uint32_t events, event_fn fn, void *opaque,
                      bool is_timer, struct event_source **ret)
{
        struct event_source *src = calloc(1, sizeof(*src));
        struct epoll_event ev = {.events = events};

        if (!src)
                return -ENOMEM;
        *src = (struct event_source){.loop = loop,
                                     .fd = fd,
                                     .fn = fn,
                                     .opaque = opaque,
                                     .is_timer = is_timer,
                                     .owns_fd = is_timer};
        ev.data.ptr = src;
        if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                int r = -errno;
                free(src);
                return r;
        }
        *ret = src;
        return 0;
}

int event_loop_add_fd(struct event_loop *loop, int fd, uint32_t events, event_fn fn, void *opaque,
                      struct event_source **ret)
{
        struct event_source *src;
        int r = add_source(loop, fd, events, fn, opaque, false, &src);

        if (r >= 0 && ret)
                *ret = src;
        return r;
}

int event_source_set_period(struct event_source *src, uint64_t period_ns)
{
        struct itimerspec its = {
                .it_interval = {.tv_sec = period_ns / 1000000000,
                                .tv_nsec = period_ns % 1000000000},
        };

        if (!src->is_timer)
                return -EINVAL;
        its.it_value = its.it_interval;
        if (timerfd_settime(src->fd, 0, &its, NULL) < 0)
                return -errno;
        return 0;
}

static void timer_fired(void *opaque, uint32_t events)
{
        struct event_source *src = opaque;
        uint64_t expirations;

        /* Drain first so a slow callback does not make the timer fire in a loop. */
        if (read(src->fd, &expirations, sizeof(expirations)) != sizeof(expirations))
                return;
        src->fn(src->opaque, events);
}

int event_loop_add_timer(struct event_loop *loop, uint64_t period_ns, event_fn fn, void *opaque,
                         struct event_source **ret)
{
        struct event_source *src;
        int fd, r;

        fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (fd < 0)
                return -errno;
        r = add_source(loop, fd, EPOLLIN, fn, opaque, true, &src);
        if (r < 0) {
                close(fd);
                return r;
        }
        r = event_source_set_period(src, period_ns);
        if (r < 0) {
                event_source_free(src);
                return r;
        }
        if (ret)
                *ret = src;
        return 0;
}

/*
 * Sources may be freed from any thread (a vCPU resetting a device, say) while the loop thread
 * holds a pointer to them from epoll_wait(), so freeing only unregisters and marks them; the
 * memory goes at the end of the loop's current round.
 */
void event_source_free(struct event_source *src)
{
        struct event_loop *loop;

        if (!src)
                return;
        loop = src->loop;
        epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, src->fd, NULL);
        if (src->owns_fd)
                close(src->fd);
        __atomic_store_n(&src->dead, true, __ATOMIC_RELEASE);
        pthread_mutex_lock(&loop->dead_lock);
        src->next_dead = loop->dead;
        loop->dead = src;
        pthread_mutex_unlock(&loop->dead_lock);
}

static void reap_dead(struct event_loop *loop)
{
        struct event_source *list;

        pthread_mutex_lock(&loop->dead_lock);
        list = loop->dead;
        loop->dead = NULL;
        pthread_mutex_unlock(&loop->dead_lock);
        while (list) {
                struct event_source *src = list;
                list = src->next_dead;
                free(src);
        }
}

static void dispatch(struct event_source *src, uint32_t events)
{
        if (__atomic_load_n(&src->dead, __ATOMIC_ACQUIRE))
                return;
        if (src->is_timer)
                timer_fired(src, events);
        else
                src->fn(src->opaque, events);
}

int event_loop_run(struct event_loop *loop)
{
        struct epoll_event events[32];

        while (!__atomic_load_n(&loop->quit, __ATOMIC_ACQUIRE)) {
                int n = epoll_wait(loop->epoll_fd, events, ARRAY_SIZE(events), -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (int i = 0; i < n; i++) {
                        if (events[i].data.ptr)
                                dispatch(events[i].data.ptr, events[i].events);
                }
                reap_dead(loop);
        }
        /* Consumed: the loop can be run again (tidal runs it once per guest boot). */
        __atomic_store_n(&loop->quit, false, __ATOMIC_RELEASE);
        return 0;
}

void event_loop_quit(struct event_loop *loop)
{
        uint64_t one = 1;

        __atomic_store_n(&loop->quit, true, __ATOMIC_RELEASE);
        if (write(loop->wake_fd, &one, sizeof(one)) < 0) {
                /* The counter can only be full if a wake-up is already pending. */
        }
}
