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
        gm->map_size = ram_size;
        low = MIN(ram_size, hole_start);
        add_region(gm, 0, low, 0);
        if (ram_size > low)
                add_region(gm, UINT64_C(1) << 32, ram_size - low, low);
        return 0;
}

/* All blocks start unplugged: nothing in the hot-plug region is reachable until a plug. */
static int protect_hotplug_region(struct guest_mem *gm, uint8_t *base)
{
        const struct guest_mem_region *r = guest_mem_hotplug_region(gm);

        if (r && mprotect(base + r->fd_offset, r->size, PROT_NONE) < 0)
                return -errno;
        return 0;
}

int guest_mem_map(struct guest_mem *gm, const char *name)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ uint64_t *plugged = NULL;
        void *base;
        int r;

        if (gm->nr_regions == 0 || gm->base)
                return -EINVAL;
        if (gm->hotplug.block_size) {
                plugged = calloc((gm->hotplug.nr_blocks + 63) / 64, sizeof(*plugged));
                if (!plugged)
                        return -ENOMEM;
        }
        /* Not sealed: discards punch holes in it, and the paging engine will get it. */
        fd = memfd_create(name, MFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (ftruncate(fd, (off_t)gm->map_size) < 0)
                return -errno;
        /* MAP_NORESERVE: memory is committed when the guest touches it, not up front. */
        base = mmap(NULL, gm->map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
        if (base == MAP_FAILED)
                return -errno;
        r = protect_hotplug_region(gm, base);
        if (r < 0) {
                munmap(base, gm->map_size);
                return r;
        }
        /* Guest RAM in a core dump of tidal would be large and would leak guest secrets. */
        (void)madvise(base, gm->map_size, MADV_DONTDUMP);

        gm->base = base;
        gm->memfd = TAKE_FD(fd);
        gm->hotplug.plugged = TAKE_PTR(plugged);
        for (unsigned i = 0; i < gm->nr_regions; i++)
                gm->regions[i].hva = gm->base + gm->regions[i].fd_offset;
        return 0;
}

int guest_mem_init(struct guest_mem *gm, const char *name, uint64_t ram_size, uint64_t hole_start)
{
        int r = guest_mem_plan(gm, ram_size, hole_start);

        return r < 0 ? r : guest_mem_map(gm, name);
}

void guest_mem_release(struct guest_mem *gm)
{
        if (gm->base)
                munmap(gm->base, gm->map_size);
        if (gm->memfd >= 0)
                close(gm->memfd);
        free(gm->hotplug.plugged);
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

/* Whether every block touched by [off, off + len) of the hot-plug region is plugged. */
static bool hotplug_range_plugged(const struct guest_mem *gm, uint64_t off, uint64_t len)
{
        uint64_t bs = gm->hotplug.block_size, first, end;

        if (bs == 0)
                return false;
        first = off / bs;
        end = (off + (len ? len - 1 : 0)) / bs + 1;
        return guest_mem_find_block(gm, first, end, false) == end;
}

void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
        const struct guest_mem_region *r = guest_mem_region_of(gm, gpa);

        /* Written so that no addition can wrap: len is compared with what is left. */
        if (!r || len > r->size - (gpa - r->gpa))
                return NULL;
        /* A device must not touch unplugged memory: it is PROT_NONE, and not the guest's. */
        if (r->hotplug && !hotplug_range_plugged(gm, gpa - r->gpa, len))
                return NULL;
        return r->hva + (gpa - r->gpa);
}

uint64_t guest_mem_end(const struct guest_mem *gm)
{
        uint64_t end = 0;

        for (unsigned i = 0; i < gm->nr_regions; i++)
                if (!gm->regions[i].hotplug)
                        end = MAX(end, gm->regions[i].gpa + gm->regions[i].size);
        return end;
}

/* The first RAM range of region r inside [from, to), if any. */
static bool region_next_ram(const struct guest_mem *gm, const struct guest_mem_region *r,
                            uint64_t from, uint64_t to, uint64_t *start, uint64_t *end)
{
        /* A partial page at either end of a region is not RAM a caller may discard. */
        uint64_t s = MAX(ALIGN_UP(r->gpa, (uint64_t)GUEST_PAGE_SIZE), from);
        uint64_t e = MIN(ALIGN_DOWN(r->gpa + r->size, (uint64_t)GUEST_PAGE_SIZE), to);
        uint64_t bs = gm->hotplug.block_size, first, last, plugged, unplugged;

        if (s >= e || (r->hotplug && bs == 0))
                return false;
        if (r->hotplug) {
                first = (s - r->gpa) / bs;
                last = (e - 1 - r->gpa) / bs + 1;
                plugged = guest_mem_find_block(gm, first, last, true);
                if (plugged == last)
                        return false;
                unplugged = guest_mem_find_block(gm, plugged, last, false);
                s = MAX(s, r->gpa + plugged * bs);
                e = MIN(e, r->gpa + unplugged * bs);
        }
        *start = s;
        *end = e;
        return true;
}

bool guest_mem_next_ram(const struct guest_mem *gm, uint64_t from, uint64_t to, uint64_t *start,
                        uint64_t *end)
{
        bool found = false;

        /* Regions need not be sorted: the lowest candidate wins. */
        for (unsigned i = 0; i < gm->nr_regions; i++) {
                uint64_t s, e;

                if (region_next_ram(gm, &gm->regions[i], from, to, &s, &e) &&
                    (!found || s < *start)) {
                        *start = s;
                        *end = e;
                        found = true;
                }
        }
        return found;
}

void guest_mem_use_huge_pages(struct guest_mem *gm, bool huge)
{
        /*
         * Huge pages where the host allows them for shmem (shmem_enabled=advise): far fewer
         * faults and TLB misses, as QEMU gets for its anonymous RAM. Discards of 4 KiB pages
         * still work: the kernel splits the huge page. MADV_NOHUGEPAGE keeps them out even
         * with shmem_enabled=always.
         */
        if (gm->base)
                (void)madvise(gm->base, gm->map_size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
}

int guest_mem_discard(struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
        const struct guest_mem_region *r = guest_mem_region_of(gm, gpa);
        uint64_t off;

        if (!r || len == 0 || !IS_ALIGNED(gpa | len, GUEST_PAGE_SIZE) ||
            len > r->size - (gpa - r->gpa))
                return -EINVAL;
        off = r->fd_offset + (gpa - r->gpa);
        if (gm->on_discard && !r->hotplug)
                gm->on_discard(gm->on_discard_opaque, off, len);
        /* Frees the memfd pages; KVM's and our mappings see zeroes on the next touch. */
        if (fallocate(gm->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                      (off_t)len) < 0)
                return -errno;
        return 0;
}
