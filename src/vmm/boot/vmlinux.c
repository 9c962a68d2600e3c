/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "tidal/macro.h"
#include "vmm/boot/vmlinux.h"

/* end = offset + n * size, or false when that overflows or passes limit. */
static bool range_in(uint64_t offset, uint64_t n, uint64_t size, uint64_t limit, uint64_t *end)
{
        uint64_t len;

        if (__builtin_mul_overflow(n, size, &len) || __builtin_add_overflow(offset, len, end))
                return false;
        return *end <= limit;
}

static int parse_ehdr(const uint8_t *data, size_t size, Elf64_Ehdr *eh, const char **why)
{
        uint64_t end;

        if (size < sizeof(*eh)) {
                *why = "too small for an ELF header";
                return -ENOEXEC;
        }
        memcpy(eh, data, sizeof(*eh));
        if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
            eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_machine != EM_X86_64 ||
            eh->e_type != ET_EXEC) {
                *why = "not an x86-64 ELF executable";
                return -ENOEXEC;
        }
        if (eh->e_phentsize != sizeof(Elf64_Phdr) ||
            !range_in(eh->e_phoff, eh->e_phnum, sizeof(Elf64_Phdr), size, &end)) {
                *why = "ELF program headers outside the file";
                return -ENOEXEC;
        }
        if (eh->e_shnum && (eh->e_shentsize != sizeof(Elf64_Shdr) ||
                            !range_in(eh->e_shoff, eh->e_shnum, sizeof(Elf64_Shdr), size, &end))) {
                *why = "ELF section headers outside the file";
                return -ENOEXEC;
        }
        return 0;
}

static int add_segment(struct vmlinux *vl, const Elf64_Phdr *ph, const char **why)
{
        struct vmlinux_segment *prev = vl->nr_segments ? &vl->segments[vl->nr_segments - 1] : NULL;
        uint64_t end;

        if (vl->nr_segments == VMLINUX_MAX_SEGMENTS) {
                *why = "too many ELF segments";
                return -ENOEXEC;
        }
        if (ph->p_filesz > ph->p_memsz ||
            !range_in(ph->p_offset, 1, ph->p_filesz, vl->size, &end) ||
            !range_in(ph->p_paddr, 1, ph->p_memsz, UINT64_MAX, &end)) {
                *why = "an ELF segment lies outside the file";
                return -ENOEXEC;
        }
        /* The decompressor places segments by physical address, in order, without overlap. */
        if (prev && ph->p_paddr < prev->paddr + prev->memsz) {
                *why = "ELF segments overlap or are out of order";
                return -ENOEXEC;
        }
        vl->segments[vl->nr_segments++] = (struct vmlinux_segment){
                .offset = ph->p_offset,
                .paddr = ph->p_paddr,
                .filesz = ph->p_filesz,
                .memsz = ph->p_memsz,
        };
        return 0;
}

static int32_t read_entry(const struct vmlinux *vl, size_t offset)
{
        int32_t v;

        memcpy(&v, vl->data + offset, sizeof(v));
        return v;
}

/* Entries before *pos back to a zero terminator; leaves *pos at the terminator. */
static bool walk_table(const struct vmlinux *vl, size_t start, size_t *pos,
                       struct vmlinux_relocs *table)
{
        size_t end = *pos;

        while (*pos >= start + sizeof(int32_t)) {
                *pos -= sizeof(int32_t);
                if (read_entry(vl, *pos) == 0) {
                        table->offset = *pos + sizeof(int32_t);
                        table->n = (end - table->offset) / sizeof(int32_t);
                        return true;
                }
        }
        return false;
}

/*
 * The tables (arch/x86/tools/relocs.c) follow the ELF directly and are read from the end:
 * 32-bit, then inverse 32-bit (dropped by newer kernels), then 64-bit, each ended by a zero. A
 * layout is accepted only if its last terminator is the first word after the ELF, which tells
 * the three-table layout from the two-table one.
 */
static void find_relocs(struct vmlinux *vl, size_t start)
{
        struct vmlinux_relocs t[3] = {0};
        size_t pos = vl->size;

        if (start >= vl->size || (vl->size - start) % sizeof(int32_t))
                return;
        if (!walk_table(vl, start, &pos, &t[0]) || !walk_table(vl, start, &pos, &t[1]))
                return;
        if (pos == start) {
                vl->rel32 = t[0];
                vl->rel64 = t[1];
                vl->has_relocs = true;
                return;
        }
        if (walk_table(vl, start, &pos, &t[2]) && pos == start) {
                vl->rel32 = t[0];
                vl->rel32_inverse = t[1];
                vl->rel64 = t[2];
                vl->has_relocs = true;
        }
}

int vmlinux_parse(const uint8_t *data, size_t size, struct vmlinux *vl, const char **why)
{
        uint64_t elf_end = 0, end, first_end;
        Elf64_Ehdr eh;
        int r;

        memset(vl, 0, sizeof(*vl));
        vl->data = data;
        vl->size = size;
        r = parse_ehdr(data, size, &eh, why);
        if (r < 0)
                return r;
        range_in(eh.e_phoff, eh.e_phnum, sizeof(Elf64_Phdr), size, &elf_end);
        if (eh.e_shnum && range_in(eh.e_shoff, eh.e_shnum, sizeof(Elf64_Shdr), size, &end))
                elf_end = MAX(elf_end, end);
        for (unsigned i = 0; i < eh.e_phnum; i++) {
                Elf64_Phdr ph;

                memcpy(&ph, data + eh.e_phoff + i * sizeof(ph), sizeof(ph));
                if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
                        continue;
                r = add_segment(vl, &ph, why);
                if (r < 0)
                        return r;
                elf_end = MAX(elf_end, ph.p_offset + ph.p_filesz);
        }
        if (vl->nr_segments == 0) {
                *why = "no loadable ELF segment";
                return -ENOEXEC;
        }
        vl->phys_start = vl->segments[0].paddr;
        vl->span = vl->segments[vl->nr_segments - 1].paddr +
                   vl->segments[vl->nr_segments - 1].memsz - vl->phys_start;
        first_end = vl->phys_start + vl->segments[0].memsz;
        if (eh.e_entry < vl->phys_start || eh.e_entry >= first_end) {
                *why = "ELF entry point outside the first segment";
                return -ENOEXEC;
        }
        vl->entry = eh.e_entry;
        find_relocs(vl, elf_end);
        return 0;
}

uint64_t vmlinux_kaslr_offset(const struct vmlinux *vl, uint64_t image_size, uint64_t align,
                              uint64_t random)
{
        uint64_t slots;

        if (!vl->has_relocs || align == 0 || vl->phys_start + image_size > VMLINUX_KASLR_IMAGE_SIZE)
                return 0;
        slots = (VMLINUX_KASLR_IMAGE_SIZE - vl->phys_start - image_size) / align + 1;
        return (random % slots) * align;
}

/*
 * Applies one table: each entry is the sign-extended kernel virtual address of a 4- or 8-byte
 * field, which must lie inside the loaded image; the field gets sign * offset added.
 */
static int apply_table(struct guest_mem *gm, const struct vmlinux *vl, uint64_t gpa,
                       const struct vmlinux_relocs *table, unsigned width, int sign,
                       uint64_t offset)
{
        uint64_t image_va = VMLINUX_START_KERNEL_MAP + vl->phys_start;

        for (size_t i = 0; i < table->n; i++) {
                uint64_t va = (uint64_t)(int64_t)read_entry(vl, table->offset + i * 4);
                uint64_t at = va - image_va;
                uint8_t *field;

                if (va < image_va || at > vl->span || vl->span - at < width)
                        return -ENOEXEC;
                field = guest_mem_ptr(gm, gpa + at, width);
                if (!field)
                        return -ENOSPC;
                if (width == 4) {
                        uint32_t v;

                        memcpy(&v, field, 4);
                        v += (uint32_t)(sign * (int64_t)offset);
                        memcpy(field, &v, 4);
                } else {
                        uint64_t v;

                        memcpy(&v, field, 8);
                        v += offset;
                        memcpy(field, &v, 8);
                }
        }
        return 0;
}

static int relocate(struct guest_mem *gm, const struct vmlinux *vl, uint64_t gpa, uint64_t offset)
{
        int r;

        r = apply_table(gm, vl, gpa, &vl->rel32, 4, 1, offset);
        if (r >= 0)
                r = apply_table(gm, vl, gpa, &vl->rel32_inverse, 4, -1, offset);
        if (r >= 0)
                r = apply_table(gm, vl, gpa, &vl->rel64, 8, 1, offset);
        return r;
}

int vmlinux_load(struct guest_mem *gm, const struct vmlinux *vl, uint64_t gpa, uint64_t virt_offset,
                 const char **why)
{
        int r;

        for (unsigned i = 0; i < vl->nr_segments; i++) {
                const struct vmlinux_segment *s = &vl->segments[i];
                uint8_t *dst = guest_mem_ptr(gm, gpa + (s->paddr - vl->phys_start), s->memsz);

                if (!dst) {
                        *why = "memory too small for the kernel";
                        return -ENOSPC;
                }
                memcpy(dst, vl->data + s->offset, s->filesz);
                memset(dst + s->filesz, 0, s->memsz - s->filesz);
        }
        if (virt_offset == 0)
                return 0;
        if (!vl->has_relocs) {
                *why = "kernel has no relocation tables";
                return -ENOEXEC;
        }
        r = relocate(gm, vl, gpa, virt_offset);
        if (r < 0)
                *why = r == -ENOSPC ? "memory too small for the kernel"
                                    : "a kernel relocation points outside the kernel";
        return r;
}
