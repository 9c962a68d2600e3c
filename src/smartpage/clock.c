/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdlib.h>

#include "smartpage/clock.h"

#define ZAP_GAP 64u

int pagetab_init(struct pagetab *pt, uint64_t nr_pages)
{
        *pt = (struct pagetab){.nr = nr_pages};
        pt->state = calloc(nr_pages ? nr_pages : 1, 1);
        return pt->state ? 0 : -ENOMEM;
}

void pagetab_done(struct pagetab *pt)
{
        free(pt->state);
        *pt = (struct pagetab){0};
}

static void clear(struct pagetab *pt, uint64_t page)
{
        uint8_t s = pt->state[page];

        if (s & PG_RESIDENT)
                pt->resident--;
        if (s & PG_PAGED)
                pt->paged--;
        pt->state[page] = 0;
}

void pagetab_set_resident(struct pagetab *pt, uint64_t page, uint8_t flags)
{
        clear(pt, page);
        pt->state[page] =
                (uint8_t)(PG_RESIDENT | (flags & (PG_REF | PG_CLEAN | PG_INFILE | PG_STREAM)));
        pt->resident++;
}

void pagetab_set_paged(struct pagetab *pt, uint64_t page)
{
        clear(pt, page);
        pt->state[page] = PG_PAGED;
        pt->paged++;
}

void pagetab_set_absent(struct pagetab *pt, uint64_t page)
{
        clear(pt, page);
}

/* A run of pages to zap, contiguous and just behind the hand. */
struct zap_run {
        uint64_t first, n;
};

static int flush(struct zap_run *run, clock_zap_fn zap, void *ctx)
{
        int r = 0;

        if (run->n)
                r = zap(ctx, run->first, run->n);
        run->n = 0;
        return r;
}

int clock_pick(struct pagetab *pt, uint64_t want, uint64_t *victims, clock_zap_fn zap, void *ctx)
{
        struct zap_run run = {0};
        uint64_t found = 0, steps;
        int r;

        if (pt->nr == 0)
                return 0;
        /*
         * Bounded: after one full turn every resident page is zapped and unreferenced (nothing
         * else runs meanwhile: MINOR faults are handled by this same thread), so the second
         * turn finds victims as long as there are resident pages.
         */
        for (steps = 0; found < want && steps < 2 * pt->nr + 1; steps++) {
                uint64_t page = pt->hand;
                uint8_t *s = &pt->state[page];

                if (++pt->hand == pt->nr)
                        pt->hand = 0;
                if (!(*s & PG_RESIDENT) || page - pt->spare_first < pt->spare_n)
                        continue;
                /* Back at the first victim: a second turn would return the same pages again. */
                if (found && page == victims[0]) {
                        pt->hand = page;
                        break;
                }
                if ((*s & (PG_ZAPPED | PG_REF)) == PG_ZAPPED) {
                        victims[found++] = page;
                } else {
                        /* Second chance: forget the reference and watch for the next access. */
                        *s = (uint8_t)((*s & ~PG_REF) | PG_ZAPPED);
                        /* One madvise() for a stretch; zapping absent pages in it is harmless. */
                        if (run.n && page - (run.first + run.n) > ZAP_GAP) {
                                r = flush(&run, zap, ctx);
                                if (r < 0)
                                        return r;
                        }
                        if (run.n == 0)
                                run.first = page;
                        run.n = page - run.first + 1;
                }
                /* A page zapped now must be zapped before the hand comes back to it. */
                if (pt->hand == 0) {
                        r = flush(&run, zap, ctx);
                        if (r < 0)
                                return r;
                }
        }
        r = flush(&run, zap, ctx);
        return r < 0 ? r : (int)found;
}
