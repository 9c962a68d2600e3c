/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest RAM: one memfd mapped once in the VMM, exposed to KVM as one memslot per region
 * (regions are split around the 32-bit PCI hole). Every guest-physical access made on behalf
 * of the guest goes through guest_mem_ptr(), which refuses anything not wholly inside RAM.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 4
#define GUEST_PAGE_SIZE       4096u

struct guest_mem_region {
        uint64_t gpa;       /* guest-physical start */
        uint64_t size;      /* bytes */
        uint64_t fd_offset; /* offset of this region in the memfd */
        uint8_t *hva;       /* host mapping of the region's first byte */
};

struct guest_mem {
        int memfd;
        uint8_t *base; /* mapping of the whole memfd */
        uint64_t size; /* total RAM bytes (sum of regions) */
        unsigned nr_regions;
        struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
};

/*
 * Lays the regions out without allocating anything (hva stays NULL): [0, min(ram_size,
 * hole_start)) and the rest from 4 GiB up. Lets the boot plan be checked before any resource is
 * taken. 0 or -EINVAL.
 */
int guest_mem_plan(struct guest_mem *gm, uint64_t ram_size, uint64_t hole_start);

/*
 * Creates the memfd (named after the VM) of ram_size bytes, maps it, and lays the regions out:
 * [0, min(ram_size, hole_start)) and, for the rest, from 4 GiB up. hole_start must be below
 * 4 GiB and page aligned. Returns 0 or a negative errno.
 */
int guest_mem_init(struct guest_mem *gm, const char *name, uint64_t ram_size, uint64_t hole_start);
void guest_mem_release(struct guest_mem *gm);

/* Host pointer for [gpa, gpa + len) if it lies wholly inside one RAM region, else NULL. */
void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Region holding gpa, or NULL. */
const struct guest_mem_region *guest_mem_region_of(const struct guest_mem *gm, uint64_t gpa);

/* Highest guest-physical address of RAM plus one. */
uint64_t guest_mem_end(const struct guest_mem *gm);

/*
 * Gives [gpa, gpa + len) back to the host (the memfd pages are freed; the guest reads zeroes
 * afterwards). Must be page aligned and inside one region. Returns 0 or a negative errno.
 */
int guest_mem_discard(struct guest_mem *gm, uint64_t gpa, uint64_t len);
