/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest RAM: one memfd mapped once in the VMM, exposed to KVM as one memslot per region
 * (regions are split around the 32-bit PCI hole). Every guest-physical access made on behalf
 * of the guest goes through guest_mem_ptr(), which refuses anything not wholly inside RAM.
 *
 * A VM with dynamic memory also has a hot-plug region (virtio-mem): the last region, placed
 * after boot RAM in the memfd and above it in guest-physical space, not in the e820 map. It is
 * made of blocks that are plugged (RAM) or unplugged. Unplugged blocks are mapped PROT_NONE, so
 * neither the VMM nor KVM on the guest's behalf can make the host allocate memory for them, and
 * guest_mem_ptr() refuses them.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 4 /* low RAM, RAM above 4 GiB, the hot-plug region */
#define GUEST_PAGE_SIZE       4096u

struct guest_mem_region {
        uint64_t gpa;       /* guest-physical start */
        uint64_t size;      /* bytes */
        uint64_t fd_offset; /* offset of this region in the memfd */
        uint8_t *hva;       /* host mapping of the region's first byte */
        bool hotplug;       /* the hot-plug region: only its plugged blocks are RAM */
};

/* The hot-plug region's blocks. block_size 0: the VM has none. */
struct guest_mem_hotplug {
        uint64_t block_size;
        uint64_t nr_blocks;
        uint64_t nr_plugged;
        uint64_t *plugged; /* one bit per block; words are read and changed atomically */
        unsigned region;   /* its index in regions[] */
};

struct guest_mem {
        int memfd;
        uint8_t *base;     /* mapping of the whole memfd */
        uint64_t size;     /* boot RAM bytes: the regions other than the hot-plug one */
        uint64_t map_size; /* the memfd and its mapping: boot RAM plus the hot-plug region */
        unsigned nr_regions;
        struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
        struct guest_mem_hotplug hotplug;
        /*
         * While smart paging runs over boot RAM (src/vmm/vm-smartpage.c): told of every discard
         * inside boot RAM (memfd offset, length) before the pages are punched, so that pages in
         * the paging file are dropped instead of read back. NULL otherwise. Set and cleared on
         * the thread that discards (the event loop's).
         */
        void (*on_discard)(void *opaque, uint64_t fd_offset, uint64_t len);
        void *on_discard_opaque;
};

/*
 * Lays the regions out without allocating anything (hva stays NULL): [0, min(ram_size,
 * hole_start)) and the rest from 4 GiB up. Lets the boot plan be checked before any resource is
 * taken. 0 or -EINVAL.
 */
int guest_mem_plan(struct guest_mem *gm, uint64_t ram_size, uint64_t hole_start);

/*
 * Adds the hot-plug region to a plan: [gpa, gpa + size) in blocks of block_size (a power of two,
 * at least a page; gpa and size multiples of it), above every RAM region, after boot RAM in the
 * memfd. All blocks start unplugged. 0 or -EINVAL.
 */
int guest_mem_plan_hotplug(struct guest_mem *gm, uint64_t gpa, uint64_t size, uint64_t block_size);

/*
 * Creates the memfd (named after the VM) for a plan and maps it; unplugged blocks are mapped
 * PROT_NONE. 0 or a negative errno (then nothing is allocated).
 */
int guest_mem_map(struct guest_mem *gm, const char *name);

/*
 * Asks the host for shmem huge pages on the whole mapping (MADV_HUGEPAGE), or keeps them out
 * (MADV_NOHUGEPAGE). guest_mem_map() does neither: RAM that smart paging may take over must be
 * in 4 KiB pages from the start.
 */
void guest_mem_use_huge_pages(struct guest_mem *gm, bool huge);

/*
 * guest_mem_plan() and guest_mem_map(): [0, min(ram_size, hole_start)) and, for the rest, from
 * 4 GiB up. hole_start must be below 4 GiB and page aligned. Returns 0 or a negative errno.
 */
int guest_mem_init(struct guest_mem *gm, const char *name, uint64_t ram_size, uint64_t hole_start);
void guest_mem_release(struct guest_mem *gm);

/*
 * Host pointer for [gpa, gpa + len) if it lies wholly inside one RAM region (in the hot-plug
 * region: inside plugged blocks), else NULL.
 */
void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Region holding gpa (the hot-plug region too, plugged or not), or NULL. */
const struct guest_mem_region *guest_mem_region_of(const struct guest_mem *gm, uint64_t gpa);

/* Highest guest-physical address of boot RAM plus one. */
uint64_t guest_mem_end(const struct guest_mem *gm);

/*
 * The first range of RAM the VMM may use (boot RAM, plugged blocks) inside [from, to): page
 * aligned, inside one region, at most one run of plugged blocks. from and to must be page
 * aligned. true with [*start, *end) set, or false if there is none.
 */
bool guest_mem_next_ram(const struct guest_mem *gm, uint64_t from, uint64_t to, uint64_t *start,
                        uint64_t *end);

/*
 * Gives [gpa, gpa + len) back to the host (the memfd pages are freed; the guest reads zeroes
 * afterwards). Must be page aligned and inside one region. Returns 0 or a negative errno.
 */
int guest_mem_discard(struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* ---- The hot-plug region (guest-mem-hotplug.c). Blocks are counted from its start. ---- */

/* The hot-plug region, or NULL. */
const struct guest_mem_region *guest_mem_hotplug_region(const struct guest_mem *gm);

/* Whether block i is plugged (false past the end). Any thread. */
bool guest_mem_block_plugged(const struct guest_mem *gm, uint64_t i);

/* The first block in [first, end) that is plugged (or unplugged), or end if there is none. */
uint64_t guest_mem_find_block(const struct guest_mem *gm, uint64_t first, uint64_t end,
                              bool plugged);

/*
 * Plugs blocks [first, first + nr), which must all be unplugged: maps them read-write, then
 * marks them plugged. 0, -EINVAL (outside the region, or some block plugged) or -errno from
 * mprotect() (then nothing changed). One thread at a time (the virtio-mem device, locked).
 */
int guest_mem_plug(struct guest_mem *gm, uint64_t first, uint64_t nr);

/*
 * Unplugs blocks [first, first + nr), which must all be plugged: marks them unplugged
 * (guest_mem_ptr() refuses them from then on), then maps them PROT_NONE. 0, -EINVAL or -errno
 * from mprotect() (then nothing changed). Does not discard: the caller does, once per run.
 */
int guest_mem_unplug(struct guest_mem *gm, uint64_t first, uint64_t nr);
