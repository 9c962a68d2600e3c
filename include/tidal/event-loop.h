/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A small epoll loop run by one I/O thread per VMM: virtqueue notifications (ioeventfds),
 * timers and sockets are dispatched here, never on vCPU threads. Sources may be added and freed
 * from any thread; a callback may still run once, on the loop thread, for a source another
 * thread is freeing, so callbacks check their own state under their own lock.
 */
#pragma once

#include <stdint.h>

struct event_loop;
struct event_source;

/* Called on the loop thread with the epoll events that fired. */
typedef void (*event_fn)(void *opaque, uint32_t events);

int event_loop_new(struct event_loop **ret);
void event_loop_free(struct event_loop *loop);

/* Watches fd for events (EPOLLIN, ...). The loop does not own fd. */
int event_loop_add_fd(struct event_loop *loop, int fd, uint32_t events, event_fn fn, void *opaque,
                      struct event_source **ret);

/* Periodic timer; fn gets EPOLLIN once per expiry batch. period_ns == 0 disarms it. */
int event_loop_add_timer(struct event_loop *loop, uint64_t period_ns, event_fn fn, void *opaque,
                         struct event_source **ret);
int event_source_set_period(struct event_source *src, uint64_t period_ns);

/* Stops watching and frees the source (memory reclaimed after the loop's current round). */
void event_source_free(struct event_source *src);

/*
 * Runs until event_loop_quit(); returns 0 or a negative errno on a loop failure. May be run
 * again afterwards.
 */
int event_loop_run(struct event_loop *loop);

/* Thread-safe; wakes the loop. */
void event_loop_quit(struct event_loop *loop);
