/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tidal/macro.h"
#include "vmm/memctl/wire.h"

char *memctl_inbuf_space(struct memctl_inbuf *b, size_t *room)
{
        *room = sizeof(b->data) - b->len;
        return b->data + b->len;
}

int memctl_inbuf_commit(struct memctl_inbuf *b, size_t n, memctl_line_fn fn, void *opaque)
{
        char *start = b->data, *nl;
        size_t rest;
        int r;

        b->len += MIN(n, sizeof(b->data) - b->len);
        while ((nl = memchr(start, '\n', b->len - (size_t)(start - b->data)))) {
                r = fn(opaque, start, (size_t)(nl - start));
                if (r < 0)
                        return r;
                start = nl + 1;
        }
        rest = b->len - (size_t)(start - b->data);
        memmove(b->data, start, rest);
        b->len = rest;
        /* Full and no newline: the line is longer than the protocol allows. */
        return b->len == sizeof(b->data) ? -EMSGSIZE : 0;
}

void memctl_inbuf_reset(struct memctl_inbuf *b)
{
        b->len = 0;
}

int memctl_outq_push(struct memctl_outq *q, const char *data, size_t len)
{
        size_t pending = memctl_outq_pending(q);
        char *out;

        if (len > MEMCTL_OUTPUT_MAX || pending > MEMCTL_OUTPUT_MAX - len)
                return -ENOBUFS; /* the daemon stopped reading */
        if (len == 0)
                return 0;
        if (q->sent > 0) {
                memmove(q->data, q->data + q->sent, pending);
                q->len = pending;
                q->sent = 0;
        }
        out = realloc(q->data, q->len + len);
        if (!out)
                return -ENOMEM;
        memcpy(out + q->len, data, len);
        q->data = out;
        q->len += len;
        return 0;
}

void memctl_outq_consume(struct memctl_outq *q, size_t n)
{
        q->sent += MIN(n, memctl_outq_pending(q));
        if (q->sent == q->len)
                q->len = q->sent = 0;
}

void memctl_outq_reset(struct memctl_outq *q)
{
        free(q->data);
        *q = (struct memctl_outq){0};
}
