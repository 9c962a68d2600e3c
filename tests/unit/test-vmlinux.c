/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The decompressed kernel (vmlinux.c) and the kernel cache (kernel-cache.c): ELF parsing and
 * its rejections, the relocation tables in both layouts, KASLR offsets, loading into guest RAM,
 * and storing a bzImage's xz payload. Debian's real kernel too when TIDAL_TEST_KERNEL is set.
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <lzma.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tidal/guest-mem.h"
#include "vmm/boot/boot.h"
#include "vmm/boot/kernel-cache.h"
#include "vmm/boot/vmlinux.h"
#include "vmm/layout.h"

#define MB        (1ULL << 20)
#define PHYS      0x1000000ULL /* LOAD_PHYSICAL_ADDR */
#define VIRT(off) (VMLINUX_START_KERNEL_MAP + PHYS + (off))
#define NR_PHDRS  3
#define DATA_OFF  0x1000 /* file offset of the first segment */
#define SEG_SIZE  0x2000 /* bytes of file per segment */

/* Offsets in the image of the fields the relocation tables name. */
#define SITE32     0x10
#define SITE32_INV 0x20
#define SITE64     0x30

struct elf_image {
        uint8_t *data;
        size_t size;
};

static void put32(uint8_t *p, uint32_t v)
{
        memcpy(p, &v, 4);
}

static uint32_t get32(const void *p)
{
        uint32_t v;

        memcpy(&v, p, 4);
        return v;
}

static uint64_t get64(const void *p)
{
        uint64_t v;

        memcpy(&v, p, 8);
        return v;
}

/*
 * A kernel-like ELF: text at PHYS, data at PHYS + 2 MiB with a zero tail (memsz > filesz), a
 * percpu-like segment linked at virtual 0, and after it the relocation tables, three (with
 * inverse 32-bit entries) or two, each naming one field.
 */
static struct elf_image make_elf(bool three_tables)
{
        struct elf_image e;
        Elf64_Ehdr eh = {
                .e_type = ET_EXEC,
                .e_machine = EM_X86_64,
                .e_version = EV_CURRENT,
                .e_entry = PHYS,
                .e_phoff = sizeof(Elf64_Ehdr),
                .e_ehsize = sizeof(Elf64_Ehdr),
                .e_phentsize = sizeof(Elf64_Phdr),
                .e_phnum = NR_PHDRS,
        };
        const uint64_t paddr[NR_PHDRS] = {PHYS, PHYS + 2 * MB, PHYS + 3 * MB};
        const uint64_t vaddr[NR_PHDRS] = {VIRT(0), VIRT(2 * MB), 0};
        uint32_t relocs[8];
        size_t n = 0, elf_end = DATA_OFF + NR_PHDRS * SEG_SIZE;

        relocs[n++] = 0; /* terminator of the 64-bit table, read last */
        relocs[n++] = (uint32_t)VIRT(SITE64);
        if (three_tables) {
                relocs[n++] = 0;
                relocs[n++] = (uint32_t)VIRT(SITE32_INV);
        }
        relocs[n++] = 0;
        relocs[n++] = (uint32_t)VIRT(SITE32);
        e.size = elf_end + n * 4;
        e.data = calloc(1, e.size);
        memcpy(eh.e_ident, ELFMAG, SELFMAG);
        eh.e_ident[EI_CLASS] = ELFCLASS64;
        eh.e_ident[EI_DATA] = ELFDATA2LSB;
        memcpy(e.data, &eh, sizeof(eh));
        for (unsigned i = 0; i < NR_PHDRS; i++) {
                Elf64_Phdr ph = {
                        .p_type = PT_LOAD,
                        .p_offset = DATA_OFF + i * SEG_SIZE,
                        .p_vaddr = vaddr[i],
                        .p_paddr = paddr[i],
                        .p_filesz = SEG_SIZE,
                        .p_memsz = i == 1 ? SEG_SIZE + 0x3000 : SEG_SIZE,
                };
                memcpy(e.data + eh.e_phoff + i * sizeof(ph), &ph, sizeof(ph));
                memset(e.data + ph.p_offset, 0x11 * (i + 1), SEG_SIZE);
        }
        put32(e.data + DATA_OFF + SITE32, 0x81000100);
        put32(e.data + DATA_OFF + SITE32_INV, 0x00000500);
        memcpy(e.data + DATA_OFF + SITE64, &(uint64_t){VIRT(0x200)}, 8);
        for (size_t i = 0; i < n; i++)
                put32(e.data + elf_end + i * 4, relocs[i]);
        return e;
}

static void phdr_set(struct elf_image *e, unsigned i, size_t field, uint64_t v)
{
        memcpy(e->data + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr) + field, &v, 8);
}

static void parse_finds_segments_and_tables(void **state)
{
        struct elf_image e = make_elf(true);
        const char *why = NULL;
        struct vmlinux vl;

        assert_int_equal(vmlinux_parse(e.data, e.size, &vl, &why), 0);
        assert_int_equal(vl.nr_segments, 3);
        assert_int_equal(vl.phys_start, PHYS);
        assert_int_equal(vl.entry, PHYS);
        assert_int_equal(vl.span, 3 * MB + SEG_SIZE);
        assert_true(vl.has_relocs);
        assert_int_equal(vl.rel32.n, 1);
        assert_int_equal(vl.rel32_inverse.n, 1);
        assert_int_equal(vl.rel64.n, 1);
        free(e.data);

        e = make_elf(false);
        assert_int_equal(vmlinux_parse(e.data, e.size, &vl, &why), 0);
        assert_true(vl.has_relocs);
        assert_int_equal(vl.rel32.n, 1);
        assert_int_equal(vl.rel32_inverse.n, 0);
        assert_int_equal(vl.rel64.n, 1);
        free(e.data);
}

/* Tables whose layout does not end exactly at the ELF are not trusted: no relocations. */
static void parse_ignores_unrecognised_tables(void **state)
{
        struct elf_image e = make_elf(true);
        const char *why = NULL;
        struct vmlinux vl;

        put32(e.data + e.size - 4 * 6, 0x1234); /* the first terminator is gone */
        assert_int_equal(vmlinux_parse(e.data, e.size, &vl, &why), 0);
        assert_false(vl.has_relocs);
        /* Not a whole number of entries after the ELF. */
        assert_int_equal(vmlinux_parse(e.data, e.size - 2, &vl, &why), 0);
        assert_false(vl.has_relocs);
        free(e.data);
}

static void expect_rejected(struct elf_image *e, const char *what)
{
        const char *why = NULL;
        struct vmlinux vl;

        assert_int_equal(vmlinux_parse(e->data, e->size, &vl, &why), -ENOEXEC);
        assert_non_null(why);
        assert_non_null(strstr(why, what));
        free(e->data);
}

static void parse_rejects_hostile_files(void **state)
{
        struct elf_image e = make_elf(true);
        const char *why = NULL;
        struct vmlinux vl;

        assert_int_equal(vmlinux_parse(e.data, 10, &vl, &why), -ENOEXEC);
        e.data[EI_CLASS] = ELFCLASS32;
        expect_rejected(&e, "not an x86-64 ELF");

        e = make_elf(true);
        ((Elf64_Ehdr *)e.data)->e_phnum = 0xffff;
        expect_rejected(&e, "program headers outside");

        e = make_elf(true);
        phdr_set(&e, 1, offsetof(Elf64_Phdr, p_offset), e.size);
        expect_rejected(&e, "outside the file");

        e = make_elf(true);
        phdr_set(&e, 1, offsetof(Elf64_Phdr, p_filesz), UINT64_MAX - 8);
        phdr_set(&e, 1, offsetof(Elf64_Phdr, p_memsz), UINT64_MAX - 8);
        expect_rejected(&e, "outside the file");

        e = make_elf(true);
        phdr_set(&e, 1, offsetof(Elf64_Phdr, p_memsz), 1);
        expect_rejected(&e, "outside the file"); /* filesz > memsz */

        e = make_elf(true);
        phdr_set(&e, 2, offsetof(Elf64_Phdr, p_paddr), PHYS + 0x1000);
        expect_rejected(&e, "overlap");

        e = make_elf(true);
        ((Elf64_Ehdr *)e.data)->e_entry = PHYS + 2 * MB;
        expect_rejected(&e, "entry point");
}

static void kaslr_offsets_stay_in_range(void **state)
{
        struct elf_image e = make_elf(true);
        const uint64_t image = 64 * MB, align = 2 * MB;
        uint64_t max = VMLINUX_KASLR_IMAGE_SIZE - PHYS - image;
        const char *why = NULL;
        struct vmlinux vl;
        bool nonzero = false;

        assert_int_equal(vmlinux_parse(e.data, e.size, &vl, &why), 0);
        assert_int_equal(vmlinux_kaslr_offset(&vl, image, align, 0), 0);
        for (uint64_t r = 1; r < 100000; r = r * 3 + 7) {
                uint64_t off = vmlinux_kaslr_offset(&vl, image, align, r * 0x9e3779b97f4a7c15ULL);

                assert_true(off % align == 0);
                assert_true(off <= max);
                nonzero |= off != 0;
        }
        assert_true(nonzero);
        assert_int_equal(vmlinux_kaslr_offset(&vl, VMLINUX_KASLR_IMAGE_SIZE, align, 12345), 0);
        vl.has_relocs = false;
        assert_int_equal(vmlinux_kaslr_offset(&vl, image, align, 12345), 0);
        free(e.data);
}

static void load_copies_zeroes_and_relocates(void **state)
{
        struct elf_image e = make_elf(true);
        const uint64_t offset = 6 * MB;
        const char *why = NULL;
        struct guest_mem gm;
        struct vmlinux vl;
        uint8_t *base, *tail;

        assert_int_equal(vmlinux_parse(e.data, e.size, &vl, &why), 0);
        assert_int_equal(guest_mem_init(&gm, "t", 64 * MB, LAYOUT_PCI_HOLE_START), 0);
        tail = guest_mem_ptr(&gm, PHYS + 2 * MB + SEG_SIZE, 0x3000);
        memset(tail, 0xee, 0x3000); /* what a previous boot left */
        assert_int_equal(vmlinux_load(&gm, &vl, PHYS, offset, &why), 0);
        base = guest_mem_ptr(&gm, PHYS, vl.span);
        assert_int_equal(base[0x100], 0x11);
        assert_int_equal(base[2 * MB + 5], 0x22);
        assert_int_equal(base[3 * MB + 5], 0x33); /* by physical address, not virtual 0 */
        for (size_t i = 0; i < 0x3000; i++)
                assert_int_equal(tail[i], 0);
        assert_int_equal(get32(base + SITE32), 0x81000100 + offset);
        assert_int_equal(get32(base + SITE32_INV), (uint32_t)(0x500 - offset));
        assert_int_equal(get64(base + SITE64), VIRT(0x200) + offset);
        guest_mem_release(&gm);
        free(e.data);
}

static void load_refuses_relocations_outside_the_image(void **state)
{
        struct elf_image e = make_elf(true);
        const char *why = NULL;
        struct guest_mem gm;
        struct vmlinux vl;

        /* The 64-bit site moved past the image's end, where an 8-byte write would spill. */
        put32(e.data + e.size - 4 * 5, (uint32_t)VIRT(3 * MB + SEG_SIZE - 4));
        assert_int_equal(vmlinux_parse(e.data, e.size, &vl, &why), 0);
        assert_int_equal(guest_mem_init(&gm, "t", 64 * MB, LAYOUT_PCI_HOLE_START), 0);
        assert_int_equal(vmlinux_load(&gm, &vl, PHYS, 2 * MB, &why), -ENOEXEC);
        assert_non_null(strstr(why, "outside the kernel"));
        /* Below the image start. */
        put32(e.data + e.size - 4 * 5, (uint32_t)VIRT(0) - 8);
        assert_int_equal(vmlinux_parse(e.data, e.size, &vl, &why), 0);
        assert_int_equal(vmlinux_load(&gm, &vl, PHYS, 2 * MB, &why), -ENOEXEC);
        /* RAM too small for the image. */
        guest_mem_release(&gm);
        assert_int_equal(guest_mem_init(&gm, "t", 18 * MB, LAYOUT_PCI_HOLE_START), 0);
        assert_int_equal(vmlinux_load(&gm, &vl, PHYS, 0, &why), -ENOSPC);
        guest_mem_release(&gm);
        /* An offset asked for where there are no tables. */
        vl.has_relocs = false;
        assert_int_equal(guest_mem_init(&gm, "t", 64 * MB, LAYOUT_PCI_HOLE_START), 0);
        assert_int_equal(vmlinux_load(&gm, &vl, PHYS, 2 * MB, &why), -ENOEXEC);
        guest_mem_release(&gm);
        free(e.data);
}

/* A bzImage whose payload is the given bytes, xz-compressed the way Linux does it. */
static uint8_t *make_bzimage(const uint8_t *payload, size_t len, size_t *size, bool compress)
{
        const size_t setup = 5 * 512, max = len + len / 2 + 4096;
        uint8_t *img = calloc(1, setup + max + 4);
        struct setup_header hdr = {
                .setup_sects = 4,
                .boot_flag = 0xaa55,
                .header = 0x53726448,
                .version = 0x020f,
                .loadflags = LOADED_HIGH,
                .kernel_alignment = 0x200000,
                .xloadflags = XLF_KERNEL_64,
                .init_size = 8 * MB,
                .pref_address = PHYS,
        };
        size_t out = 0;

        if (compress) {
                assert_int_equal(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, payload, len,
                                                         img + setup, &out, max),
                                 LZMA_OK);
        } else {
                memcpy(img + setup, payload, len);
                out = len;
        }
        put32(img + setup + out, (uint32_t)len); /* as the kernel appends the size */
        hdr.payload_offset = 0;
        hdr.payload_length = (uint32_t)out + 4;
        memcpy(img + 0x1f1, &hdr, sizeof(hdr));
        img[0x201] = 0x6a; /* header length byte, as bzImage has it */
        *size = 0x1000 > setup + out + 4 ? 0x1000 : setup + out + 4;
        return img;
}

static char *make_tmpdir(void)
{
        char *dir = strdup("/tmp/tidal-test-kcache.XXXXXX");

        assert_non_null(mkdtemp(dir));
        return dir;
}

static void remove_dir(char *dir, const char *name)
{
        char path[256];

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        unlink(path);
        rmdir(dir);
        free(dir);
}

static int count_entries(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;

        while ((de = readdir(d)))
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

static void cache_stores_and_opens(void **state)
{
        struct elf_image e = make_elf(true);
        char name[KERNEL_CACHE_NAME_MAX], name2[KERNEL_CACHE_NAME_MAX];
        char *dir = make_tmpdir();
        const char *why = NULL;
        struct boot_file f;
        struct bzimage img;
        size_t size;
        uint8_t *bz = make_bzimage(e.data, e.size, &size, true);

        assert_int_equal(bzimage_parse(bz, size, &img, &why), 0);
        kernel_cache_name(&img, name);
        assert_int_equal(strlen(name), 32 + strlen(".vmlinux"));
        assert_int_equal(kernel_cache_open(dir, name, &f), -ENOENT);
        assert_int_equal(kernel_cache_store(dir, name, &img, &why), 0);
        assert_int_equal(kernel_cache_open(dir, name, &f), 0);
        assert_int_equal(f.size, e.size);
        assert_memory_equal(f.data, e.data, e.size);
        boot_file_close(&f);
        /* Stored twice (two tidals at once): the second replaces it with the same bytes. */
        assert_int_equal(kernel_cache_store(dir, name, &img, &why), 0);
        /* A damaged entry is replaced whole, and no temporary name is left. */
        {
                char path[256];
                FILE *junk;

                snprintf(path, sizeof(path), "%s/%s", dir, name);
                junk = fopen(path, "w");
                fputs("not a kernel", junk);
                fclose(junk);
                assert_int_equal(kernel_cache_store(dir, name, &img, &why), 0);
                assert_int_equal(kernel_cache_open(dir, name, &f), 0);
                assert_int_equal(f.size, e.size);
                assert_memory_equal(f.data, e.data, e.size);
                boot_file_close(&f);
                assert_int_equal(count_entries(dir), 1);
        }
        /* Another kernel, another name. */
        bz[img.setup_size + 100] ^= 1;
        kernel_cache_name(&img, name2);
        assert_string_not_equal(name, name2);
        remove_dir(dir, name);
        free(bz);
        free(e.data);
}

/* Nothing is left behind for a payload that cannot be used. */
static void expect_store_fails(uint8_t *bz, size_t size, int error)
{
        char name[KERNEL_CACHE_NAME_MAX];
        char *dir = make_tmpdir();
        const char *why = NULL;
        struct bzimage img;

        if (bzimage_parse(bz, size, &img, &why) < 0)
                fail_msg("bzimage_parse: %s", why);
        kernel_cache_name(&img, name);
        assert_int_equal(kernel_cache_store(dir, name, &img, &why), error);
        assert_non_null(why);
        assert_int_equal(rmdir(dir), 0); /* empty */
        free(dir);
        free(bz);
}

static void cache_refuses_bad_payloads(void **state)
{
        struct elf_image e = make_elf(true);
        uint8_t junk[4096];
        uint8_t *bz;
        size_t size;

        memset(junk, 0x5a, sizeof(junk));
        /* Not xz. */
        bz = make_bzimage(e.data, e.size, &size, false);
        expect_store_fails(bz, size, -EOPNOTSUPP);
        /* xz, but not a kernel. */
        bz = make_bzimage(junk, sizeof(junk), &size, true);
        expect_store_fails(bz, size, -ENOEXEC);
        /* Corrupt xz data. */
        bz = make_bzimage(e.data, e.size, &size, true);
        memset(bz + 5 * 512 + 40, 0xff, 64);
        expect_store_fails(bz, size, -ENOEXEC);
        /* A payload the header places outside the file. */
        bz = make_bzimage(e.data, e.size, &size, true);
        put32(bz + offsetof(struct setup_header, payload_length) + 0x1f1, 0x7fffffff);
        expect_store_fails(bz, size, -ENOEXEC);
        free(e.data);
}

static void default_dir_follows_the_environment(void **state)
{
        char *dir;

        setenv("TIDAL_KERNEL_CACHE", "/x/kc", 1);
        dir = kernel_cache_default_dir();
        assert_string_equal(dir, "/x/kc");
        free(dir);
        setenv("TIDAL_KERNEL_CACHE", "off", 1);
        assert_null(kernel_cache_default_dir());
        unsetenv("TIDAL_KERNEL_CACHE");
        setenv("XDG_CACHE_HOME", "/c", 1);
        dir = kernel_cache_default_dir();
        assert_string_equal(dir, "/c/tidal/kernels");
        free(dir);
        unsetenv("XDG_CACHE_HOME");
        setenv("HOME", "/h", 1);
        dir = kernel_cache_default_dir();
        assert_string_equal(dir, "/h/.cache/tidal/kernels");
        free(dir);
        unsetenv("HOME");
        assert_null(kernel_cache_default_dir());
}

/* Debian's kernel: three tables, entry at its load address, relocated fields move. */
static void debian_kernel_round_trip(void **state)
{
        const char *path = getenv("TIDAL_TEST_KERNEL");
        char name[KERNEL_CACHE_NAME_MAX];
        struct boot_file kernel, cached;
        struct boot_layout layout;
        struct guest_mem gm;
        struct vmlinux vl;
        struct bzimage img;
        const char *why = NULL;
        char *dir;
        uint64_t site, before, after;

        if (!path)
                skip();
        dir = make_tmpdir();
        assert_int_equal(boot_file_open(path, KERNEL_MAX_SIZE, &kernel), 0);
        assert_int_equal(bzimage_parse(kernel.data, kernel.size, &img, &why), 0);
        kernel_cache_name(&img, name);
        assert_int_equal(kernel_cache_store(dir, name, &img, &why), 0);
        assert_int_equal(kernel_cache_open(dir, name, &cached), 0);
        assert_int_equal(vmlinux_parse(cached.data, cached.size, &vl, &why), 0);
        assert_int_equal(vl.phys_start, img.hdr.pref_address);
        assert_int_equal(vl.entry, vl.phys_start);
        assert_true(vl.has_relocs);
        assert_true(vl.rel32.n > 1000 && vl.rel64.n > 1000);

        assert_int_equal(guest_mem_init(&gm, "t", 256 * MB, LAYOUT_PCI_HOLE_START), 0);
        assert_int_equal(boot_plan(&img, &vl, 0, &gm, &layout, &why), 0);
        assert_int_equal(layout.kernel_gpa, vl.phys_start);
        assert_int_equal(vmlinux_load(&gm, &vl, layout.kernel_gpa, 0, &why), 0);
        site = (uint64_t)(int64_t)(int32_t)get32(cached.data + vl.rel64.offset) -
               (VMLINUX_START_KERNEL_MAP + vl.phys_start);
        before = get64(guest_mem_ptr(&gm, layout.kernel_gpa + site, 8));
        assert_int_equal(vmlinux_load(&gm, &vl, layout.kernel_gpa, 64 * MB, &why), 0);
        after = get64(guest_mem_ptr(&gm, layout.kernel_gpa + site, 8));
        assert_int_equal(after - before, 64 * MB);

        /* Through boot_load: entered at startup_64, and told that it was moved. */
        struct boot_spec spec = {
                .kernel = &img, .direct = &vl, .virt_offset = 2 * MB, .cmdline = "console=ttyS0"};
        struct boot_params *bp = guest_mem_ptr(&gm, LAYOUT_BOOT_PARAMS_ADDR, sizeof(*bp));

        assert_int_equal(boot_load(&gm, &spec, &layout, &why), 0);
        assert_int_equal(layout.entry_gpa, vl.entry);
        assert_true(bp->hdr.loadflags & KASLR_FLAG);
        spec.virt_offset = 0;
        assert_int_equal(boot_load(&gm, &spec, &layout, &why), 0);
        assert_false(bp->hdr.loadflags & KASLR_FLAG);

        guest_mem_release(&gm);
        boot_file_close(&cached);
        boot_file_close(&kernel);
        remove_dir(dir, name);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(parse_finds_segments_and_tables),
                cmocka_unit_test(parse_ignores_unrecognised_tables),
                cmocka_unit_test(parse_rejects_hostile_files),
                cmocka_unit_test(kaslr_offsets_stay_in_range),
                cmocka_unit_test(load_copies_zeroes_and_relocates),
                cmocka_unit_test(load_refuses_relocations_outside_the_image),
                cmocka_unit_test(cache_stores_and_opens),
                cmocka_unit_test(cache_refuses_bad_payloads),
                cmocka_unit_test(default_dir_follows_the_environment),
                cmocka_unit_test(debian_kernel_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
