/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The hot-plug (virtio-mem) region of guest memory: its place in the plan and its block bitmap.
 *
 * The bitmap is written by one thread at a time (the virtio-mem device, under its lock, on the
 * event loop) and read by any thread through guest_mem_ptr(), so words are loaded and changed
 * with atomics. The order of the steps keeps one rule: a block the bitmap calls plugged is
 * always mapped read-write, so a pointer guest_mem_ptr() hands out never faults.
 */
#include <errno.h>
#include <sys/mman.h>

#include "tidal/guest-mem.h"
#include "tidal/macro.h"

#define BITS 64u

int guest_mem_plan_hotplug(struct guest_mem *gm, uint64_t gpa, uint64_t size, uint64_t block_size)
{
        uint64_t end;

        if (gm->nr_regions == 0 || gm->nr_regions == GUEST_MEM_MAX_REGIONS || gm->base ||
            gm->hotplug.block_size || block_size < GUEST_PAGE_SIZE ||
            (block_size & (block_size - 1)) || size == 0 || !IS_ALIGNED(gpa | size, block_size) ||
            add_overflows_u64(gpa, size, &end) || add_overflows_u64(gm->map_size, size, &end))
                return -EINVAL;
        /* Above all RAM: the guest finds it only through the device, never in the e820 map. */
        for (unsigned i = 0; i < gm->nr_regions; i++)
                if (gpa < gm->regions[i].gpa + gm->regions[i].size)
                        return -EINVAL;
        gm->hotplug = (struct guest_mem_hotplug){
                .block_size = block_size,
                .nr_blocks = size / block_size,
                .region = gm->nr_regions,
        };
        gm->regions[gm->nr_regions++] = (struct guest_mem_region){
                .gpa = gpa,
                .size = size,
                .fd_offset = gm->map_size,
                .hotplug = true,
        };
        gm->map_size += size;
        return 0;
}

const struct guest_mem_region *guest_mem_hotplug_region(const struct guest_mem *gm)
{
        return gm->hotplug.block_size ? &gm->regions[gm->hotplug.region] : NULL;
}

static uint64_t load_word(const struct guest_mem *gm, uint64_t w)
{
        return __atomic_load_n(&gm->hotplug.plugged[w], __ATOMIC_ACQUIRE);
}

bool guest_mem_block_plugged(const struct guest_mem *gm, uint64_t i)
{
        if (!gm->hotplug.plugged || i >= gm->hotplug.nr_blocks)
                return false;
        return load_word(gm, i / BITS) >> (i % BITS) & 1;
}

uint64_t guest_mem_find_block(const struct guest_mem *gm, uint64_t first, uint64_t end,
                              bool plugged)
{
        end = MIN(end, gm->hotplug.nr_blocks);
        if (!gm->hotplug.plugged)
                return plugged ? end : MIN(first, end);
        /* A word at a time: a 1 TiB region is 8192 words of 2 MiB blocks. */
        for (uint64_t i = first; i < end;) {
                uint64_t word = load_word(gm, i / BITS), bits;

                bits = (plugged ? word : ~word) >> (i % BITS);
                if (bits)
                        return MIN(i + (uint64_t)__builtin_ctzll(bits), end);
                i = ALIGN_DOWN(i, (uint64_t)BITS) + BITS;
        }
        return end;
}

/* Sets or clears the bits of [first, first + nr). */
static void set_bits(struct guest_mem *gm, uint64_t first, uint64_t nr, bool plugged)
{
        for (uint64_t i = first, end = first + nr; i < end;) {
                uint64_t n = MIN(end - i, BITS - i % BITS);
                uint64_t mask = (n == BITS ? ~UINT64_C(0) : ((UINT64_C(1) << n) - 1)) << (i % BITS);
                uint64_t *w = &gm->hotplug.plugged[i / BITS];

                if (plugged)
                        __atomic_fetch_or(w, mask, __ATOMIC_RELEASE);
                else
                        __atomic_fetch_and(w, ~mask, __ATOMIC_RELEASE);
                i += n;
        }
}

/*
 * The host mapping of blocks [first, first + nr) if they all lie in the region and are all in
 * the state `plugged`, else NULL.
 */
static uint8_t *blocks_hva(const struct guest_mem *gm, uint64_t first, uint64_t nr, bool plugged)
{
        const struct guest_mem_region *r = guest_mem_hotplug_region(gm);

        if (!r || !r->hva || !gm->hotplug.plugged || nr == 0 || first >= gm->hotplug.nr_blocks ||
            nr > gm->hotplug.nr_blocks - first ||
            guest_mem_find_block(gm, first, first + nr, !plugged) != first + nr)
                return NULL;
        return r->hva + first * gm->hotplug.block_size;
}

int guest_mem_plug(struct guest_mem *gm, uint64_t first, uint64_t nr)
{
        uint8_t *p = blocks_hva(gm, first, nr, false);
        size_t len = nr * gm->hotplug.block_size;

        if (!p)
                return -EINVAL;
        /* Mapped before it is called plugged: a pointer handed out must never fault. */
        if (mprotect(p, len, PROT_READ | PROT_WRITE) < 0) {
                int r = -errno;

                /* mprotect() may have changed part of the range: put it back, best effort. */
                (void)mprotect(p, len, PROT_NONE);
                return r;
        }
        set_bits(gm, first, nr, true);
        gm->hotplug.nr_plugged += nr;
        return 0;
}

int guest_mem_unplug(struct guest_mem *gm, uint64_t first, uint64_t nr)
{
        uint8_t *p = blocks_hva(gm, first, nr, true);
        size_t len = nr * gm->hotplug.block_size;

        if (!p)
                return -EINVAL;
        /* Refused to devices first, then unmapped: no pointer into it is handed out meanwhile. */
        set_bits(gm, first, nr, false);
        if (mprotect(p, len, PROT_NONE) < 0) {
                int r = -errno;

                /*
                 * Typically ENOMEM: too many mappings (vm.max_map_count). Leave the blocks as
                 * they were, plugged and read-write, best effort; the caller answers BUSY.
                 */
                (void)mprotect(p, len, PROT_READ | PROT_WRITE);
                set_bits(gm, first, nr, true);
                return r;
        }
        gm->hotplug.nr_plugged -= nr;
        return 0;
}
