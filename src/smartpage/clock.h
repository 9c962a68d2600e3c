/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The page table of the paging engine and its clock (second chance) over resident pages.
 *
 * Reference information comes from userfaultfd MINOR faults: the clock "samples" a resident page
 * by zapping its page-table entries (the page stays in the memfd), and the next access to it,
 * by the guest through KVM or by any thread, raises a MINOR fault that sets PG_REF. A page the
 * hand finds zapped and still unreferenced has not been touched for a whole turn: the victim.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum {
        PG_RESIDENT = 1u << 0, /* in the memfd */
        PG_PAGED = 1u << 1,    /* not in the memfd; its contents are in the paging file */
        PG_REF = 1u << 2,      /* accessed since the hand last passed */
        PG_ZAPPED = 1u << 3,   /* resident without page-table entries: an access faults MINOR */
        /*
         * Resident and unchanged since it was brought in from its copy, which is the file's
         * (PG_INFILE) or zeroes: it has been write-protected (userfaultfd WP) all along, so a
         * write would have raised a WP fault and cleared this. Evicting it needs no write.
         */
        PG_CLEAN = 1u << 4,
        PG_INFILE = 1u << 5, /* with PG_CLEAN: the paging file holds the page's contents */
        /* Brought in by a sequential stream and not sampled as used since: a drop-behind
         * victim (dropbehind.h). */
        PG_STREAM = 1u << 6,
};
/*
 * A page with neither PG_RESIDENT nor PG_PAGED is absent: it reads as zeroes. A resident page
 * without PG_CLEAN is dirty: it is written to the file when evicted.
 */

struct pagetab {
        uint8_t *state;
        uint64_t nr;
        uint64_t hand;
        uint64_t resident;
        uint64_t paged;
        /*
         * Pages the hand passes over: the run brought in last, about to be used. Without this a
         * sequential stream loses pages of its current window to the hand's sampling (a zap,
         * then a MINOR fault each) once per turn.
         */
        uint64_t spare_first, spare_n;
};

int pagetab_init(struct pagetab *pt, uint64_t nr_pages);
void pagetab_done(struct pagetab *pt);

/* flags: PG_REF, PG_CLEAN, PG_INFILE, PG_STREAM. */
void pagetab_set_resident(struct pagetab *pt, uint64_t page, uint8_t flags);
void pagetab_set_paged(struct pagetab *pt, uint64_t page);
void pagetab_set_absent(struct pagetab *pt, uint64_t page);

/* Zaps the page-table entries of pages [first, first + n); 0 or a negative errno. */
typedef int (*clock_zap_fn)(void *ctx, uint64_t first, uint64_t n);

/*
 * Moves the hand until `want` victims (at most max) are found, zapping the referenced pages it
 * passes. Victims are written to victims[] in the order found (ascending but for one wrap) and
 * are left PG_RESIDENT: the caller evicts them. Each page at most once. Returns the count or a
 * negative errno from zap.
 */
int clock_pick(struct pagetab *pt, uint64_t want, uint64_t *victims, clock_zap_fn zap, void *ctx);
