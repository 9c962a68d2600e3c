/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tidal/macro.h"
#include "vmm/boot/boot.h"
#include "vmm/layout.h"

#define SETUP_HEADER_OFFSET 0x1f1
#define BOOT_FLAG_MAGIC     0xaa55
#define HDRS_MAGIC          0x53726448 /* "HdrS" */
#define LOADER_TYPE_UNKNOWN 0xff
#define HEAP_END_PTR        0xfe00
#define KERNEL_ALIGN        (2ULL << 20)

int bzimage_parse(const uint8_t *data, size_t size, struct bzimage *img, const char **why)
{
        size_t hdr_len;
        unsigned setup_sects;

        memset(img, 0, sizeof(*img));
        if (size < 0x1000) {
                *why = "file too small to be a kernel";
                return -ENOEXEC;
        }
        /* The header ends at 0x202 + the byte at 0x201 (its own length after the jump). */
        hdr_len = MIN(sizeof(img->hdr), (size_t)(0x202 + data[0x201] - SETUP_HEADER_OFFSET));
        memcpy(&img->hdr, data + SETUP_HEADER_OFFSET, hdr_len);
        if (img->hdr.boot_flag != BOOT_FLAG_MAGIC || img->hdr.header != HDRS_MAGIC) {
                *why = "not a Linux bzImage (no boot sector signature or \"HdrS\" header)";
                return -ENOEXEC;
        }
        if (img->hdr.version < BZIMAGE_MIN_PROTOCOL) {
                *why = "boot protocol older than 2.12 (kernel too old for 64-bit entry)";
                return -ENOEXEC;
        }
        if (!(img->hdr.xloadflags & XLF_KERNEL_64)) {
                *why = "kernel has no 64-bit entry point (not an x86-64 kernel?)";
                return -ENOEXEC;
        }
        if (!(img->hdr.loadflags & LOADED_HIGH)) {
                *why = "zImage kernels (loaded low) are not supported";
                return -ENOEXEC;
        }
        setup_sects = img->hdr.setup_sects ? img->hdr.setup_sects : 4;
        img->setup_size = (size_t)(setup_sects + 1) * 512;
        if (img->setup_size >= size) {
                *why = "kernel setup size exceeds the file";
                return -ENOEXEC;
        }
        img->data = data;
        img->size = size;
        img->kernel = data + img->setup_size;
        img->kernel_size = size - img->setup_size;
        return 0;
}

int boot_file_open(const char *path, size_t max_size, struct boot_file *f)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        int r;

        memset(f, 0, sizeof(*f));
        f->fd = -1;
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        if (st.st_size == 0)
                return -ENODATA;
        if ((uint64_t)st.st_size > max_size)
                return -EFBIG;
        f->fd = TAKE_FD(fd);
        f->size = (size_t)st.st_size;
        r = boot_file_map(f);
        if (r < 0)
                boot_file_close(f);
        return r;
}

int boot_file_map(struct boot_file *f)
{
        void *p;

        if (f->data)
                return 0;
        p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
        if (p == MAP_FAILED)
                return -errno;
        f->data = p;
        return 0;
}

void boot_file_unmap(struct boot_file *f)
{
        if (f->data)
                munmap(f->data, f->size);
        f->data = NULL;
}

void boot_file_close(struct boot_file *f)
{
        boot_file_unmap(f);
        if (f->fd >= 0)
                close(f->fd);
        f->fd = -1;
        f->size = 0;
}

/* Where the kernel goes and how far it reaches: the guest's decompressor needs init_size. */
static int plan_kernel(const struct bzimage *img, const struct vmlinux *direct,
                       struct boot_layout *layout, uint64_t *kernel_end, const char **why)
{
        if (!direct) {
                layout->kernel_gpa = LAYOUT_HIGH_MEM_START;
                layout->entry_gpa = layout->kernel_gpa + 0x200; /* startup_64 */
                *kernel_end = layout->kernel_gpa +
                              MAX((uint64_t)img->kernel_size, (uint64_t)img->hdr.init_size);
                return 0;
        }
        /* Where the decompressor would have put it; head_64.S needs 2 MiB alignment. */
        if (direct->phys_start < LAYOUT_HIGH_MEM_START ||
            !IS_ALIGNED(direct->phys_start, KERNEL_ALIGN) || direct->phys_start >= LAYOUT_4GIB) {
                *why = "decompressed kernel has an unusable load address";
                return -ENOEXEC;
        }
        layout->kernel_gpa = direct->phys_start;
        layout->entry_gpa = direct->entry;
        *kernel_end = layout->kernel_gpa + MAX(direct->span, (uint64_t)img->hdr.init_size);
        return 0;
}

int boot_plan(const struct bzimage *img, const struct vmlinux *direct, size_t initrd_size,
              const struct guest_mem *gm, struct boot_layout *layout, const char **why)
{
        const struct guest_mem_region *low = guest_mem_region_of(gm, 0);
        uint64_t low_end, kernel_end, initrd_max;
        int r;

        if (!low) {
                *why = "no RAM at guest-physical address 0";
                return -EINVAL;
        }
        low_end = low->gpa + low->size;
        layout->boot_params_gpa = LAYOUT_BOOT_PARAMS_ADDR;
        r = plan_kernel(img, direct, layout, &kernel_end, why);
        if (r < 0)
                return r;
        if (kernel_end > low_end) {
                *why = "memory too small for the kernel to decompress";
                return -ENOSPC;
        }
        layout->initrd_gpa = 0;
        if (initrd_size == 0)
                return 0;
        initrd_max = MIN(low_end, (uint64_t)img->hdr.initrd_addr_max + 1);
        if (initrd_size > initrd_max || ALIGN_DOWN(initrd_max - initrd_size, GUEST_PAGE_SIZE) <
                                                ALIGN_UP(kernel_end, GUEST_PAGE_SIZE)) {
                *why = "memory too small for the kernel and the initrd";
                return -ENOSPC;
        }
        /* As high as allowed, so the kernel's own early allocations below stay free. */
        layout->initrd_gpa = ALIGN_DOWN(initrd_max - initrd_size, GUEST_PAGE_SIZE);
        return 0;
}

int boot_params_build(struct boot_params *bp, const struct bzimage *img,
                      const struct boot_layout *layout, size_t initrd_size, uint64_t cmdline_gpa,
                      const struct e820_map *map, uint64_t rsdp_gpa)
{
        if (map->nr > E820_MAX_ENTRIES_ZEROPAGE)
                return -EINVAL;
        memset(bp, 0, sizeof(*bp));
        bp->hdr = img->hdr;
        bp->hdr.type_of_loader = LOADER_TYPE_UNKNOWN;
        bp->hdr.loadflags |= CAN_USE_HEAP;
        bp->hdr.heap_end_ptr = HEAP_END_PTR;
        bp->hdr.cmd_line_ptr = (uint32_t)cmdline_gpa;
        bp->ext_cmd_line_ptr = (uint32_t)(cmdline_gpa >> 32);
        bp->hdr.code32_start = (uint32_t)layout->kernel_gpa;
        if (initrd_size) {
                bp->hdr.ramdisk_image = (uint32_t)layout->initrd_gpa;
                bp->ext_ramdisk_image = (uint32_t)(layout->initrd_gpa >> 32);
                bp->hdr.ramdisk_size = (uint32_t)initrd_size;
                bp->ext_ramdisk_size = (uint32_t)((uint64_t)initrd_size >> 32);
        }
        bp->acpi_rsdp_addr = rsdp_gpa;
        bp->e820_entries = (uint8_t)map->nr;
        memcpy(bp->e820_table, map->entries, map->nr * sizeof(map->entries[0]));
        return 0;
}

size_t bzimage_cmdline_max(const struct bzimage *img)
{
        size_t max = img->hdr.cmdline_size ? img->hdr.cmdline_size : 255;
        return MIN(max, (size_t)LAYOUT_CMDLINE_MAX - 1);
}

/* The bzImage for the guest's decompressor, or the decompressed kernel placed and relocated. */
static int load_kernel(struct guest_mem *gm, const struct boot_spec *spec,
                       const struct boot_layout *layout, const char **why)
{
        void *dst;

        if (spec->direct)
                return vmlinux_load(gm, spec->direct, layout->kernel_gpa, spec->virt_offset, why);
        dst = guest_mem_ptr(gm, layout->kernel_gpa, spec->kernel->kernel_size);
        if (!dst) {
                *why = "boot area outside RAM";
                return -ENOSPC;
        }
        memcpy(dst, spec->kernel->kernel, spec->kernel->kernel_size);
        return 0;
}

int boot_load(struct guest_mem *gm, const struct boot_spec *spec, struct boot_layout *layout,
              const char **why)
{
        size_t initrd_size = spec->initrd && spec->initrd->data ? spec->initrd->size : 0;
        size_t cmdline_len = strlen(spec->cmdline);
        struct boot_params *bp;
        struct e820_map map;
        void *dst;
        int r;

        if (cmdline_len > bzimage_cmdline_max(spec->kernel)) {
                *why = "kernel command line too long";
                return -E2BIG;
        }
        r = boot_plan(spec->kernel, spec->direct, initrd_size, gm, layout, why);
        if (r < 0)
                return r;
        r = load_kernel(gm, spec, layout, why);
        if (r < 0)
                return r;
        bp = guest_mem_ptr(gm, layout->boot_params_gpa, sizeof(*bp));
        if (!bp) {
                *why = "boot area outside RAM";
                return -ENOSPC;
        }
        if (initrd_size) {
                dst = guest_mem_ptr(gm, layout->initrd_gpa, initrd_size);
                if (!dst) {
                        *why = "initrd outside RAM";
                        return -ENOSPC;
                }
                memcpy(dst, spec->initrd->data, initrd_size);
        }
        dst = guest_mem_ptr(gm, LAYOUT_CMDLINE_ADDR, cmdline_len + 1);
        if (!dst) {
                *why = "command line area outside RAM";
                return -ENOSPC;
        }
        memcpy(dst, spec->cmdline, cmdline_len + 1);

        e820_build(gm, &map);
        r = boot_params_build(bp, spec->kernel, layout, initrd_size, LAYOUT_CMDLINE_ADDR, &map,
                              spec->rsdp_gpa);
        if (r < 0) {
                *why = "cannot build the boot parameters";
                return r;
        }
        /* As the decompressor tells the kernel it moved it (and so to randomize its regions). */
        if (spec->direct && spec->virt_offset)
                bp->hdr.loadflags |= KASLR_FLAG;
        r = boot_write_cpu_tables(gm);
        if (r < 0)
                *why = "cannot write the boot page tables";
        return r;
}
