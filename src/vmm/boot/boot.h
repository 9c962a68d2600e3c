/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Booting Linux without firmware: the x86 boot protocol (Documentation/arch/x86/boot.rst),
 * 64-bit entry. Parsing and building are pure functions over buffers so they can be unit-tested;
 * boot_load() puts the result into guest RAM.
 */
#pragma once

#include <asm/bootparam.h>
#include <stddef.h>
#include <stdint.h>

#include "tidal/guest-mem.h"
#include "vmm/boot/vmlinux.h"

#define BZIMAGE_MIN_PROTOCOL 0x020c /* xloadflags and the 64-bit entry point */
#define KERNEL_MAX_SIZE      (512ULL << 20)

struct bzimage {
        const uint8_t *data; /* whole file */
        size_t size;
        struct setup_header hdr;
        size_t setup_size;     /* bytes of real-mode code, including the boot sector */
        const uint8_t *kernel; /* protected-mode part */
        size_t kernel_size;
};

/*
 * Validates a bzImage: boot sector signature, "HdrS", protocol >= 2.12, a 64-bit entry
 * (XLF_KERNEL_64), loadable high. 0, or -EINVAL/-ENOEXEC with *why describing the problem.
 */
int bzimage_parse(const uint8_t *data, size_t size, struct bzimage *img, const char **why);

/* Longest command line the kernel accepts, without the terminating NUL. */
size_t bzimage_cmdline_max(const struct bzimage *img);

/*
 * A kernel or initrd. The file stays open for the life of the VMM (so a reboot boots the same
 * inode even if the path is replaced) but is mapped only while it is being copied into guest
 * RAM, so it does not sit in tidal's RSS while the guest runs.
 */
struct boot_file {
        int fd;
        size_t size;
        uint8_t *data; /* the mapping, or NULL while unmapped */
};
/* Opens and maps a regular, non-empty file of at most max_size bytes. 0 or -errno. */
int boot_file_open(const char *path, size_t max_size, struct boot_file *f);
int boot_file_map(struct boot_file *f);
void boot_file_unmap(struct boot_file *f);
void boot_file_close(struct boot_file *f);

/* The guest-physical RAM map as Linux is told about it (e820). */
#define BOOT_E820_MAX 8
struct e820_map {
        unsigned nr;
        struct boot_e820_entry entries[BOOT_E820_MAX];
};
void e820_build(const struct guest_mem *gm, struct e820_map *map);

struct boot_layout {
        uint64_t kernel_gpa;
        uint64_t initrd_gpa;
        uint64_t entry_gpa; /* 64-bit entry point */
        uint64_t boot_params_gpa;
};

/*
 * Where the kernel and initrd go in RAM of the given size: the bzImage at 1 MiB for its own
 * decompressor, or with direct (its decompressed payload, vmlinux.h) the kernel where the
 * decompressor would have put it. -ENOSPC with *why when they do not fit (memory too small for
 * the kernel's init_size plus the initrd).
 */
int boot_plan(const struct bzimage *img, const struct vmlinux *direct, size_t initrd_size,
              const struct guest_mem *gm, struct boot_layout *layout, const char **why);

/*
 * Fills the zero page: the kernel's setup header, loader type, command line pointer, initrd,
 * e820 map and the ACPI RSDP address.
 */
int boot_params_build(struct boot_params *bp, const struct bzimage *img,
                      const struct boot_layout *layout, size_t initrd_size, uint64_t cmdline_gpa,
                      const struct e820_map *map, uint64_t rsdp_gpa);

struct boot_spec {
        const struct bzimage *kernel;
        const struct vmlinux *direct;   /* NULL: the guest decompresses the bzImage */
        uint64_t virt_offset;           /* direct: the KASLR offset to relocate it by */
        const struct boot_file *initrd; /* data NULL when none */
        const char *cmdline;
        uint64_t rsdp_gpa;
};

/* Copies kernel, initrd, command line, zero page, page tables and GDT into guest RAM. */
int boot_load(struct guest_mem *gm, const struct boot_spec *spec, struct boot_layout *layout,
              const char **why);

/* Identity page tables for the first 4 GiB and the boot GDT, written into guest RAM. */
int boot_write_cpu_tables(struct guest_mem *gm);
