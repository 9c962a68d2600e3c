/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "smartpage/io.h"
#include "tidal/macro.h"

#define PAGE 4096u

int pageio_init(struct pageio *io, int fd, unsigned queue_depth, unsigned nr_slots)
{
        struct iovec iov;
        int r;

        memset(io, 0, sizeof(*io));
        io->fd = fd;
        io->nr_slots = nr_slots;
        io->max_reqs = queue_depth;
        io->reqs = calloc(queue_depth, sizeof(*io->reqs));
        if (!io->reqs)
                return -ENOMEM;
        /* Page aligned, as O_DIRECT wants; never swapped or dumped. */
        io->bounce = mmap(NULL, (size_t)nr_slots * PAGE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (io->bounce == MAP_FAILED) {
                io->bounce = NULL;
                return -errno;
        }
        (void)madvise(io->bounce, (size_t)nr_slots * PAGE, MADV_DONTDUMP);
        r = io_uring_queue_init(queue_depth, &io->ring, 0);
        if (r < 0)
                return r;
        io->ring_ok = true;
        /* Fixed buffers: pinned once, not mapped again on every read and write. */
        iov = (struct iovec){.iov_base = io->bounce, .iov_len = (size_t)nr_slots * PAGE};
        return io_uring_register_buffers(&io->ring, &iov, 1);
}

void pageio_done(struct pageio *io)
{
        if (io->ring_ok)
                io_uring_queue_exit(&io->ring);
        if (io->bounce)
                munmap(io->bounce, (size_t)io->nr_slots * PAGE);
        free(io->reqs);
        memset(io, 0, sizeof(*io));
        io->fd = -1;
}

static struct io_uring_sqe *new_req(struct pageio *io, bool write, unsigned slot, unsigned npages,
                                    uint64_t file_off)
{
        struct io_uring_sqe *sqe;
        unsigned idx = io->nr_reqs;

        if (idx >= io->max_reqs)
                return NULL;
        sqe = io_uring_get_sqe(&io->ring);
        if (!sqe)
                return NULL;
        io->reqs[idx] = (struct pageio_req){
                .file_off = file_off,
                .slot = slot,
                .npages = npages,
                .write = write,
                .res = 1,
        };
        io_uring_sqe_set_data64(sqe, idx);
        io->nr_reqs++;
        return sqe;
}

int pageio_queue(struct pageio *io, bool write, unsigned slot, unsigned npages, uint64_t file_off)
{
        struct io_uring_sqe *sqe;

        if (npages == 0 || slot > io->nr_slots || npages > io->nr_slots - slot)
                return -EINVAL;
        sqe = new_req(io, write, slot, npages, file_off);
        if (!sqe)
                return -ENOSPC;
        if (write)
                io_uring_prep_write_fixed(sqe, io->fd, pageio_slot(io, slot), npages * PAGE,
                                          file_off, 0);
        else
                io_uring_prep_read_fixed(sqe, io->fd, pageio_slot(io, slot), npages * PAGE,
                                         file_off, 0);
        return 0;
}

int pageio_queue_write_from(struct pageio *io, const void *buf, unsigned npages, uint64_t file_off)
{
        struct io_uring_sqe *sqe;

        if (npages == 0)
                return -EINVAL;
        sqe = new_req(io, true, 0, npages, file_off);
        if (!sqe)
                return -ENOSPC;
        io_uring_prep_write(sqe, io->fd, buf, npages * PAGE, file_off);
        return 0;
}

int pageio_submit(struct pageio *io)
{
        int r = io_uring_submit(&io->ring);

        return r < 0 ? r : 0;
}

static int completion_result(const struct pageio_req *req, int res)
{
        if (res < 0)
                return res;
        if ((unsigned)res == req->npages * PAGE)
                return 0;
        /* A short write is the file system running out of room; a short read, a lost page. */
        return req->write ? -ENOSPC : -EIO;
}

int pageio_wait(struct pageio *io)
{
        unsigned pending = io->nr_reqs;
        int first_error = 0, r;

        if (pending == 0)
                return 0;
        r = io_uring_submit_and_wait(&io->ring, pending);
        if (r < 0 && r != -EINTR)
                goto fail_all;
        while (pending > 0) {
                struct io_uring_cqe *cqe;
                uint64_t idx;

                r = io_uring_wait_cqe(&io->ring, &cqe);
                if (r == -EINTR)
                        continue;
                if (r < 0)
                        goto fail_all;
                idx = io_uring_cqe_get_data64(cqe);
                if (idx < io->nr_reqs && io->reqs[idx].res == 1) {
                        io->reqs[idx].res = completion_result(&io->reqs[idx], cqe->res);
                        if (io->reqs[idx].res < 0 && first_error == 0)
                                first_error = io->reqs[idx].res;
                        pending--;
                }
                io_uring_cqe_seen(&io->ring, cqe);
        }
        io->nr_reqs = 0;
        return first_error;

fail_all:
        /* The ring itself failed: nothing can be trusted, every unfinished request failed. */
        for (unsigned i = 0; i < io->nr_reqs; i++)
                if (io->reqs[i].res == 1)
                        io->reqs[i].res = r;
        io->nr_reqs = 0;
        return r;
}
