/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Entering an already decompressed kernel directly (docs/tidal.md, "Kernel cache").
 *
 * A bzImage carries the kernel as a compressed payload; booted the usual way, the guest's own
 * decompressor (arch/x86/boot/compressed) inflates it, places the ELF's segments, applies the
 * KASLR relocations and jumps to startup_64. That costs a few hundred milliseconds on hardware
 * and several seconds in the nested rig. tidal can do the same work once, on the host, keep the
 * result (the payload: a stripped vmlinux ELF followed by its relocation tables) in a cache,
 * and on every boot copy the segments into guest RAM, relocate them to a random virtual offset
 * and enter startup_64 with the boot parameters, as the decompressor would have.
 *
 * Everything here is validated as untrusted input: a bad file gets an error, never a write
 * outside the kernel's own range of guest RAM.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tidal/guest-mem.h"

#define VMLINUX_MAX_SEGMENTS 8
/* Where the kernel's virtual addresses start (arch/x86/include/asm/page_64_types.h). */
#define VMLINUX_START_KERNEL_MAP 0xffffffff80000000ULL
/* The most the kernel image may span from there with KASLR (KERNEL_IMAGE_SIZE). */
#define VMLINUX_KASLR_IMAGE_SIZE (1ULL << 30)

struct vmlinux_segment {
        uint64_t offset; /* in the file */
        uint64_t paddr;
        uint64_t filesz;
        uint64_t memsz;
};

/* One of the relocation tables appended to the ELF: n 32-bit entries starting at offset. */
struct vmlinux_relocs {
        size_t offset;
        size_t n;
};

struct vmlinux {
        const uint8_t *data;
        size_t size;
        uint64_t entry;      /* physical address of startup_64 */
        uint64_t phys_start; /* lowest segment address: the kernel's LOAD_PHYSICAL_ADDR */
        uint64_t span;       /* bytes from phys_start to the end of the highest segment */
        unsigned nr_segments;
        struct vmlinux_segment segments[VMLINUX_MAX_SEGMENTS];
        /*
         * The decompressor's relocation tables, read from the end of the file backwards:
         * 32-bit addresses to add the offset to, 32-bit ones to subtract it from (kernels that
         * still emit them), 64-bit ones to add it to. has_relocs false: none found, the kernel
         * can only run at its link address.
         */
        bool has_relocs;
        struct vmlinux_relocs rel32, rel32_inverse, rel64;
};

/*
 * Parses a decompressed payload: an x86-64 ELF executable with at most VMLINUX_MAX_SEGMENTS
 * loadable segments, all inside the file, contiguous in physical memory order, and optionally
 * the relocation tables after the ELF's last byte. 0, or -ENOEXEC with *why.
 */
int vmlinux_parse(const uint8_t *data, size_t size, struct vmlinux *vl, const char **why);

/*
 * A KASLR virtual offset from 64 random bits: a multiple of align such that an image of
 * image_size bytes still ends within VMLINUX_KASLR_IMAGE_SIZE, chosen as the decompressor
 * chooses among its slots. 0 when the kernel has no relocations or no room.
 */
uint64_t vmlinux_kaslr_offset(const struct vmlinux *vl, uint64_t image_size, uint64_t align,
                              uint64_t random);

/*
 * Copies the segments into guest RAM with phys_start at gpa (zeroing each segment's tail past
 * its file bytes) and, for a non-zero virt_offset, applies the relocation tables. 0, or
 * -ENOSPC/-ENOEXEC with *why (a relocation outside the image, RAM too small).
 */
int vmlinux_load(struct guest_mem *gm, const struct vmlinux *vl, uint64_t gpa, uint64_t virt_offset,
                 const char **why);
