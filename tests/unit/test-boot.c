/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <stdlib.h>

#include "tidal/guest-mem.h"
#include "vmm/boot/boot.h"
#include "vmm/boot/cpu-init.h"
#include "vmm/layout.h"

#define MB          (1ULL << 20)
#define IMAGE_SIZE  (64 * 1024)
#define SETUP_SECTS 3

/* A minimal, well-formed bzImage: header fields as a 6.1 x86-64 kernel has them. */
static uint8_t *make_image(void)
{
        uint8_t *img = calloc(1, IMAGE_SIZE);
        struct setup_header hdr = {
                .setup_sects = SETUP_SECTS,
                .boot_flag = 0xaa55,
                .jump = 0x6aeb,
                .header = 0x53726448,
                .version = 0x020f,
                .loadflags = LOADED_HIGH,
                .kernel_alignment = 0x200000,
                .relocatable_kernel = 1,
                .cmdline_size = 2047,
                .initrd_addr_max = 0x7fffffff,
                .xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
                .init_size = 8 * MB,
                .pref_address = 0x1000000,
        };

        memcpy(img + 0x1f1, &hdr, sizeof(hdr));
        /* Mark the protected-mode part so copies can be checked. */
        for (size_t i = (SETUP_SECTS + 1) * 512; i < IMAGE_SIZE; i++)
                img[i] = (uint8_t)(i * 7);
        return img;
}

static void set_field(uint8_t *img, size_t off, const void *v, size_t len)
{
        memcpy(img + off, v, len);
}

static void parse_good(void **state)
{
        uint8_t *data = make_image();
        struct bzimage img;
        const char *why = NULL;

        assert_int_equal(bzimage_parse(data, IMAGE_SIZE, &img, &why), 0);
        assert_int_equal(img.setup_size, (SETUP_SECTS + 1) * 512);
        assert_ptr_equal(img.kernel, data + img.setup_size);
        assert_int_equal(img.kernel_size, IMAGE_SIZE - img.setup_size);
        assert_int_equal(bzimage_cmdline_max(&img), 2047);
        free(data);
}

static void expect_reject(uint8_t *data, size_t size, const char *needle)
{
        struct bzimage img;
        const char *why = NULL;

        assert_int_equal(bzimage_parse(data, size, &img, &why), -ENOEXEC);
        assert_non_null(why);
        if (!strstr(why, needle))
                fail_msg("'%s' does not mention '%s'", why, needle);
}

static void parse_rejects(void **state)
{
        uint8_t *data = make_image();
        uint16_t u16;
        uint8_t u8;

        expect_reject(data, 100, "too small");
        u16 = 0x1234;
        set_field(data, 0x1fe, &u16, 2);
        expect_reject(data, IMAGE_SIZE, "not a Linux bzImage");
        free(data);

        data = make_image();
        set_field(data, 0x202, "HdrX", 4);
        expect_reject(data, IMAGE_SIZE, "not a Linux bzImage");
        free(data);

        data = make_image();
        u16 = 0x020a;
        set_field(data, 0x206, &u16, 2);
        expect_reject(data, IMAGE_SIZE, "older than 2.12");
        free(data);

        data = make_image();
        u16 = 0;
        set_field(data, 0x236, &u16, 2);
        expect_reject(data, IMAGE_SIZE, "64-bit");
        free(data);

        data = make_image();
        u8 = 0;
        set_field(data, 0x211, &u8, 1);
        expect_reject(data, IMAGE_SIZE, "zImage");
        free(data);

        data = make_image();
        u8 = 200; /* setup claims more than the file holds */
        set_field(data, 0x1f1, &u8, 1);
        expect_reject(data, 0x1000 + 512, "exceeds");
        free(data);
}

static void e820_small_and_split(void **state)
{
        struct guest_mem gm;
        struct e820_map map;

        assert_int_equal(guest_mem_init(&gm, "t", 128 * MB, LAYOUT_PCI_HOLE_START), 0);
        e820_build(&gm, &map);
        assert_int_equal(map.nr, 4);
        assert_int_equal(map.entries[0].addr, 0);
        assert_int_equal(map.entries[0].size, LAYOUT_EBDA_START);
        assert_int_equal(map.entries[0].type, 1);
        assert_int_equal(map.entries[1].type, 2);
        assert_int_equal(map.entries[2].addr, LAYOUT_ACPI_ADDR);
        assert_int_equal(map.entries[2].type, 2);
        assert_int_equal(map.entries[3].addr, LAYOUT_HIGH_MEM_START);
        assert_int_equal(map.entries[3].size, 128 * MB - LAYOUT_HIGH_MEM_START);
        guest_mem_release(&gm);

        assert_int_equal(guest_mem_init(&gm, "t", 96 * MB, 64 * MB), 0);
        e820_build(&gm, &map);
        assert_int_equal(map.nr, 5);
        assert_int_equal(map.entries[3].size, 64 * MB - LAYOUT_HIGH_MEM_START);
        assert_int_equal(map.entries[4].addr, 1ULL << 32);
        assert_int_equal(map.entries[4].size, 32 * MB);
        assert_int_equal(map.entries[4].type, 1);
        guest_mem_release(&gm);
}

static void plan_places_initrd_high(void **state)
{
        uint8_t *data = make_image();
        struct boot_layout layout;
        struct guest_mem gm;
        struct bzimage img;
        const char *why;

        assert_int_equal(bzimage_parse(data, IMAGE_SIZE, &img, &why), 0);
        assert_int_equal(guest_mem_init(&gm, "t", 128 * MB, LAYOUT_PCI_HOLE_START), 0);
        assert_int_equal(boot_plan(&img, NULL, 10 * MB + 123, &gm, &layout, &why), 0);
        assert_int_equal(layout.kernel_gpa, LAYOUT_HIGH_MEM_START);
        assert_int_equal(layout.entry_gpa, LAYOUT_HIGH_MEM_START + 0x200);
        assert_true(layout.initrd_gpa % 4096 == 0);
        assert_true(layout.initrd_gpa + 10 * MB + 123 <= 128 * MB);
        assert_true(layout.initrd_gpa > 128 * MB - 11 * MB);
        assert_true(layout.initrd_gpa >= LAYOUT_HIGH_MEM_START + 8 * MB);

        /* initrd_addr_max caps the placement. */
        img.hdr.initrd_addr_max = 64 * MB - 1;
        assert_int_equal(boot_plan(&img, NULL, 1 * MB, &gm, &layout, &why), 0);
        assert_true(layout.initrd_gpa + 1 * MB <= 64 * MB);

        /* Too big to fit beside the kernel's init_size. */
        img.hdr.initrd_addr_max = 0x7fffffff;
        assert_int_equal(boot_plan(&img, NULL, 120 * MB, &gm, &layout, &why), -ENOSPC);
        img.hdr.init_size = 200 * MB;
        assert_int_equal(boot_plan(&img, NULL, 0, &gm, &layout, &why), -ENOSPC);
        assert_non_null(strstr(why, "too small"));
        guest_mem_release(&gm);
        free(data);
}

static void load_writes_everything(void **state)
{
        uint8_t *data = make_image();
        uint8_t initrd_data[5000];
        struct boot_file initrd = {.data = initrd_data, .size = sizeof(initrd_data)};
        struct boot_layout layout;
        struct boot_params *bp;
        struct guest_mem gm;
        struct bzimage img;
        const char *why;
        uint64_t *pml4, *pdpt, *pd, *gdt;

        memset(initrd_data, 0x42, sizeof(initrd_data));
        assert_int_equal(bzimage_parse(data, IMAGE_SIZE, &img, &why), 0);
        assert_int_equal(guest_mem_init(&gm, "t", 128 * MB, LAYOUT_PCI_HOLE_START), 0);
        struct boot_spec spec = {.kernel = &img,
                                 .initrd = &initrd,
                                 .cmdline = "console=ttyS0",
                                 .rsdp_gpa = LAYOUT_ACPI_ADDR};
        assert_int_equal(boot_load(&gm, &spec, &layout, &why), 0);

        assert_memory_equal(guest_mem_ptr(&gm, layout.kernel_gpa, img.kernel_size), img.kernel,
                            img.kernel_size);
        assert_memory_equal(guest_mem_ptr(&gm, layout.initrd_gpa, sizeof(initrd_data)), initrd_data,
                            sizeof(initrd_data));
        assert_string_equal(guest_mem_ptr(&gm, LAYOUT_CMDLINE_ADDR, 14), "console=ttyS0");

        bp = guest_mem_ptr(&gm, LAYOUT_BOOT_PARAMS_ADDR, sizeof(*bp));
        assert_int_equal(bp->hdr.header, 0x53726448);
        assert_int_equal(bp->hdr.type_of_loader, 0xff);
        assert_true(bp->hdr.loadflags & CAN_USE_HEAP);
        assert_int_equal(bp->hdr.cmd_line_ptr, LAYOUT_CMDLINE_ADDR);
        assert_int_equal(bp->hdr.ramdisk_image, layout.initrd_gpa);
        assert_int_equal(bp->hdr.ramdisk_size, sizeof(initrd_data));
        assert_int_equal(bp->acpi_rsdp_addr, LAYOUT_ACPI_ADDR);
        assert_int_equal(bp->e820_entries, 4);
        assert_int_equal(bp->e820_table[3].addr, LAYOUT_HIGH_MEM_START);

        pml4 = guest_mem_ptr(&gm, LAYOUT_PML4_ADDR, 4096);
        pdpt = guest_mem_ptr(&gm, LAYOUT_PDPT_ADDR, 4096);
        pd = guest_mem_ptr(&gm, LAYOUT_PD_ADDR, 4 * 4096);
        assert_int_equal(pml4[0] & ~0xfffULL, LAYOUT_PDPT_ADDR);
        assert_int_equal(pdpt[3] & ~0xfffULL, LAYOUT_PD_ADDR + 3 * 4096);
        /* The last 2 MiB page maps just below 4 GiB, identity. */
        assert_int_equal(pd[2047] & ~0xfffULL, (1ULL << 32) - 2 * MB);
        assert_true(pd[2047] & 0x80);
        gdt = guest_mem_ptr(&gm, LAYOUT_GDT_ADDR, 32);
        assert_int_equal(gdt[BOOT_CS_SELECTOR / 8], BOOT_GDT_CODE64);
        assert_int_equal(gdt[BOOT_DS_SELECTOR / 8], BOOT_GDT_DATA);
        /* The reset vector writes the ACPI reset register: "mov dx, 0x602; mov al, 1; out". */
        const uint8_t reset_stub[] = {0xba, 0x02, 0x06, 0xb0, 0x01, 0xee};
        assert_memory_equal(guest_mem_ptr(&gm, LAYOUT_RESET_VECTOR, 6), reset_stub, 6);
        guest_mem_release(&gm);
        free(data);
}

static void load_rejects_long_cmdline(void **state)
{
        uint8_t *data = make_image();
        struct boot_layout layout;
        struct guest_mem gm;
        struct bzimage img;
        const char *why;
        char *cmdline = malloc(4096);

        memset(cmdline, 'a', 4095);
        cmdline[4095] = '\0';
        assert_int_equal(bzimage_parse(data, IMAGE_SIZE, &img, &why), 0);
        assert_int_equal(guest_mem_init(&gm, "t", 128 * MB, LAYOUT_PCI_HOLE_START), 0);
        struct boot_spec spec = {.kernel = &img, .cmdline = cmdline};
        assert_int_equal(boot_load(&gm, &spec, &layout, &why), -E2BIG);
        guest_mem_release(&gm);
        free(cmdline);
        free(data);
}

/* The real thing, when the test run has Debian's kernel at hand (tests/run sets it). */
static void file_open_errors(void **state)
{
        struct boot_file f;

        assert_int_equal(boot_file_open("/nonexistent", 1024, &f), -ENOENT);
        assert_int_equal(f.fd, -1);
        assert_int_equal(boot_file_open("/tmp", 1024, &f), -EINVAL);
        assert_int_equal(boot_file_open("/dev/null", 1024, &f), -EINVAL);
        assert_int_equal(boot_file_open("/proc/self/exe", 16, &f), -EFBIG);
        assert_int_equal(boot_file_open("/proc/self/exe", 64 * MB, &f), 0);
        assert_non_null(f.data);
        assert_int_equal(f.data[0], 0x7f); /* ELF */
        boot_file_close(&f);
        assert_null(f.data);
}

static void parse_debian_kernel(void **state)
{
        const char *path = getenv("TIDAL_TEST_KERNEL");
        struct boot_file f;
        struct bzimage img;
        const char *why = NULL;

        if (!path)
                skip();
        assert_int_equal(boot_file_open(path, 512 * MB, &f), 0);
        assert_int_equal(bzimage_parse(f.data, f.size, &img, &why), 0);
        assert_true(img.hdr.version >= 0x020f);
        assert_true(img.hdr.init_size > img.kernel_size);
        boot_file_unmap(&f);
        assert_null(f.data);
        assert_int_equal(boot_file_map(&f), 0);
        assert_int_equal(bzimage_parse(f.data, f.size, &img, &why), 0);
        boot_file_close(&f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(parse_good),
                cmocka_unit_test(parse_rejects),
                cmocka_unit_test(e820_small_and_split),
                cmocka_unit_test(plan_places_initrd_high),
                cmocka_unit_test(load_writes_everything),
                cmocka_unit_test(load_rejects_long_cmdline),
                cmocka_unit_test(file_open_errors),
                cmocka_unit_test(parse_debian_kernel),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
