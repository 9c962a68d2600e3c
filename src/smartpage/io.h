/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The paging engine's file I/O: io_uring with one registered (fixed) bounce area of whole pages.
 * A caller queues up to io->max_reqs reads or writes of runs of pages between bounce slots and
 * the file, then waits for all of them at once: one submission, all in flight together.
 */
#pragma once

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

struct pageio_req {
        uint64_t file_off;
        unsigned slot;   /* first bounce page (fixed buffer requests) */
        unsigned npages; /* pages in the run */
        bool write;
        int res; /* after pageio_wait(): 0 or a negative errno (-EIO/-ENOSPC if short) */
};

struct pageio {
        struct io_uring ring;
        bool ring_ok;
        int fd;
        uint8_t *bounce;
        unsigned nr_slots;
        struct pageio_req *reqs;
        unsigned nr_reqs, max_reqs;
};

int pageio_init(struct pageio *io, int fd, unsigned queue_depth, unsigned nr_slots);
void pageio_done(struct pageio *io);

static inline uint8_t *pageio_slot(struct pageio *io, unsigned slot)
{
        return io->bounce + (uint64_t)slot * 4096u;
}

/* Queues a request; -ENOSPC when max_reqs are already queued (wait first). */
int pageio_queue(struct pageio *io, bool write, unsigned slot, unsigned npages, uint64_t file_off);
/* Queues a write of npages from buf (page aligned, not the bounce area) to the file. */
int pageio_queue_write_from(struct pageio *io, const void *buf, unsigned npages, uint64_t file_off);
/* Submits what is queued without waiting: pageio_wait() later waits for it too. */
int pageio_submit(struct pageio *io);
/* Submits what is queued, waits for every completion; returns the first error, results in
 * io->reqs[0..nr_reqs). The requests stay readable until the next pageio_queue after it. */
int pageio_wait(struct pageio *io);
