/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdlib.h>

#include "smartpage/dropbehind.h"

static int ring_init(struct page_ring *r, unsigned cap)
{
        *r = (struct page_ring){.cap = cap};
        if (cap == 0)
                return 0;
        r->pages = calloc(cap, sizeof(*r->pages));
        return r->pages ? 0 : -ENOMEM;
}

/* Appends a page; a full ring gives up its oldest, returned in *out (true then). */
static bool ring_push(struct page_ring *r, uint64_t page, uint64_t *out)
{
        bool full = r->n == r->cap;

        if (r->cap == 0) {
                *out = page;
                return true;
        }
        if (full) {
                *out = r->pages[r->head];
                r->head = (r->head + 1) % r->cap;
                r->n--;
        }
        r->pages[(r->head + r->n) % r->cap] = page;
        r->n++;
        return full;
}

int dropbehind_init(struct dropbehind *db, unsigned lag, unsigned depth)
{
        int r;

        *db = (struct dropbehind){0};
        if (depth == 0)
                return -EINVAL;
        r = ring_init(&db->lag, lag);
        if (r == 0)
                r = ring_init(&db->stack, depth);
        if (r < 0)
                dropbehind_done(db);
        return r;
}

void dropbehind_done(struct dropbehind *db)
{
        free(db->lag.pages);
        free(db->stack.pages);
        *db = (struct dropbehind){0};
}

void dropbehind_push(struct dropbehind *db, uint64_t page)
{
        uint64_t passed, forgotten;

        if (ring_push(&db->lag, page, &passed))
                (void)ring_push(&db->stack, passed, &forgotten);
}

bool dropbehind_pop(struct dropbehind *db, uint64_t *page)
{
        struct page_ring *s = &db->stack;

        if (s->n == 0)
                return false;
        s->n--;
        *page = s->pages[(s->head + s->n) % s->cap];
        return true;
}
