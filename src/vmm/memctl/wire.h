/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The bounded buffers of the VM's connection to tidald: lines coming in (at most
 * MEMCTL_LINE_MAX bytes each) and bytes waiting to go out (at most MEMCTL_OUTPUT_MAX). Pure, so
 * that the bounds are unit tested; the socket calls are in client.c.
 */
#pragma once

#include <stddef.h>

#include "tidal/memctl-proto.h"

struct memctl_inbuf {
        size_t len;
        char data[MEMCTL_LINE_MAX + 1]; /* the longest line and its newline */
};

/* Where the next read goes; *room is how much fits (0 only after -EMSGSIZE). */
char *memctl_inbuf_space(struct memctl_inbuf *b, size_t *room);

typedef int (*memctl_line_fn)(void *opaque, const char *line, size_t len);

/*
 * After `n` bytes were read into the space: calls fn with every complete line (newline
 * excluded) and keeps the incomplete rest. Stops at fn's first error and returns it; returns
 * -EMSGSIZE when the rest cannot become a line within MEMCTL_LINE_MAX.
 */
int memctl_inbuf_commit(struct memctl_inbuf *b, size_t n, memctl_line_fn fn, void *opaque);

void memctl_inbuf_reset(struct memctl_inbuf *b);

struct memctl_outq {
        char *data;
        size_t len;  /* bytes in data */
        size_t sent; /* of which already written */
};

/* Queues bytes: 0, -ENOBUFS when more than MEMCTL_OUTPUT_MAX would be pending, -ENOMEM. */
int memctl_outq_push(struct memctl_outq *q, const char *data, size_t len);

static inline size_t memctl_outq_pending(const struct memctl_outq *q)
{
        return q->len - q->sent;
}

static inline const char *memctl_outq_head(const struct memctl_outq *q)
{
        return q->data + q->sent;
}

/* `n` bytes of the head were written. */
void memctl_outq_consume(struct memctl_outq *q, size_t n);

/* Drops everything queued and frees the memory. */
void memctl_outq_reset(struct memctl_outq *q);
