/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tidal/guest-mem.h"
#include "tidal/macro.h"

static void add_region(struct guest_mem *gm, uint64_t gpa, uint64_t size, uint64_t fd_offset)
{
        gm->regions[gm->nr_regions++] = (struct guest_mem_region){
                .gpa = gpa,
                .size = size,
                .fd_offset = fd_offset,
        };
}

int guest_mem_plan(struct guest_mem *gm, uint64_t ram_size, uint64_t hole_start)
{
        uint64_t low;

        memset(gm, 0, sizeof(*gm));
        gm->memfd = -1;
        if (ram_size == 0 || !IS_ALIGNED(ram_size, GUEST_PAGE_SIZE) ||
            !IS_ALIGNED(hole_start, GUEST_PAGE_SIZE) || hole_start == 0 ||
            hole_start > (UINT64_C(1) << 32))
                return -EINVAL;
        gm->size = ram_size;
        low = MIN(ram_size, hole_start);
        add_region(gm, 0, low, 0);
        if (ram_size > low)
                add_region(gm, UINT64_C(1) << 32, ram_size - low, low);
        return 0;
}

int guest_mem_init(struct guest_mem *gm, const char *name, uint64_t ram_size, uint64_t hole_start)
{
        _cleanup_close_ int fd = -1;
        void *base;
        int r;

        r = guest_mem_plan(gm, ram_size, hole_start);
        if (r < 0)
                return r;

        /* Not sealed: later work punches holes in it and hands it to the paging engine. */
        fd = memfd_create(name, MFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (ftruncate(fd, (off_t)ram_size) < 0)
                return -errno;
        /* MAP_NORESERVE: memory is committed when the guest touches it, not up front. */
        base = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
        if (base == MAP_FAILED)
                return -errno;
        /* Guest RAM in a core dump of tidal would be large and would leak guest secrets. */
        (void)madvise(base, ram_size, MADV_DONTDUMP);
        /*
         * Huge pages where the host allows them for shmem (shmem_enabled=advise): far fewer
         * faults and TLB misses, as QEMU gets for its anonymous RAM. Discards of 4 KiB pages
         * still work: the kernel splits the huge page.
         */
        (void)madvise(base, ram_size, MADV_HUGEPAGE);

        gm->base = base;
        gm->memfd = TAKE_FD(fd);
        for (unsigned i = 0; i < gm->nr_regions; i++)
                gm->regions[i].hva = gm->base + gm->regions[i].fd_offset;
        return 0;
}

void guest_mem_release(struct guest_mem *gm)
{
        if (gm->base)
                munmap(gm->base, gm->size);
        if (gm->memfd >= 0)
                close(gm->memfd);
        memset(gm, 0, sizeof(*gm));
        gm->memfd = -1;
}

const struct guest_mem_region *guest_mem_region_of(const struct guest_mem *gm, uint64_t gpa)
{
        for (unsigned i = 0; i < gm->nr_regions; i++) {
                const struct guest_mem_region *r = &gm->regions[i];
                if (gpa >= r->gpa && gpa - r->gpa < r->size)
                        return r;
        }
        return NULL;
}

void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
        const struct guest_mem_region *r = guest_mem_region_of(gm, gpa);

        /* Written so that no addition can wrap: len is compared with what is left. */
        if (!r || len > r->size - (gpa - r->gpa))
                return NULL;
        return r->hva + (gpa - r->gpa);
}

uint64_t guest_mem_end(const struct guest_mem *gm)
{
        const struct guest_mem_region *last;

        if (gm->nr_regions == 0)
                return 0;
        last = &gm->regions[gm->nr_regions - 1];
        return last->gpa + last->size;
}

int guest_mem_discard(struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
        const struct guest_mem_region *r = guest_mem_region_of(gm, gpa);
        uint64_t off;

        if (!r || len == 0 || !IS_ALIGNED(gpa | len, GUEST_PAGE_SIZE) ||
            len > r->size - (gpa - r->gpa))
                return -EINVAL;
        off = r->fd_offset + (gpa - r->gpa);
        /* Frees the memfd pages; KVM's and our mappings see zeroes on the next touch. */
        if (fallocate(gm->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                      (off_t)len) < 0)
                return -errno;
        return 0;
}
