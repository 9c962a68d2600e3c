/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Checks the tables acpi_build_tables() writes by parsing them independently, at the byte
 * offsets the ACPI 6.3 specification gives.
 *
 * With TIDAL_ACPI_DUMP_DIR set, it first writes every table of a few configurations to
 * <dir>/<sig>-<cpus>.dat, for tests/unit/acpi-iasl.sh to feed to the ACPICA disassembler.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tidal/macro.h"
#include "vmm/acpi/tables.h"
#include "vmm/layout.h"

#define MMIO64_BASE 0x8000000000ULL
#define MMIO64_SIZE 0x8000000000ULL

struct built {
        uint8_t *buf;
        uint64_t size;
        uint64_t gpa;
        uint64_t rsdp_gpa;
};

static uint16_t le16(const uint8_t *p)
{
        return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
        return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16;
}

static uint64_t le64(const uint8_t *p)
{
        return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
        uint8_t s = 0;

        while (n--)
                s += *p++;
        return s;
}

static void build(struct built *b, unsigned nr_cpus, uint64_t mmio64_base, uint64_t mmio64_size)
{
        const struct acpi_config cfg = {
                .nr_cpus = nr_cpus,
                .pci_mmio64_base = mmio64_base,
                .pci_mmio64_size = mmio64_size,
        };

        b->size = LAYOUT_ACPI_SIZE;
        b->gpa = LAYOUT_ACPI_ADDR;
        b->buf = malloc(b->size);
        assert_non_null(b->buf);
        memset(b->buf, 0xa5, b->size); /* garbage the builder must not leave behind */
        assert_int_equal(acpi_build_tables(b->buf, b->size, b->gpa, &cfg, &b->rsdp_gpa), 0);
}

/* The table at gpa, after checking that it lies inside the buffer and sums to zero. */
static const uint8_t *table_at(const struct built *b, uint64_t gpa, const char *sig)
{
        const uint8_t *t;
        uint32_t len;

        assert_true(gpa >= b->gpa && gpa + 36 <= b->gpa + b->size);
        t = b->buf + (gpa - b->gpa);
        len = le32(t + 4);
        assert_true(len >= 36 && gpa + len <= b->gpa + b->size);
        if (memcmp(t, sig, 4) != 0)
                fail_msg("table at 0x%llx is \"%.4s\", expected \"%s\"", (unsigned long long)gpa,
                         (const char *)t, sig);
        assert_int_equal(sum(t, len), 0);
        assert_memory_equal(t + 10, "TIDAL ", 6);
        assert_memory_equal(t + 16, "TIDALVM ", 8);
        return t;
}

static const uint8_t *rsdp(const struct built *b)
{
        const uint8_t *r;

        /* Linux scans for it on 16-byte boundaries; tidal also passes its address. */
        assert_int_equal(b->rsdp_gpa, b->gpa);
        assert_int_equal(b->rsdp_gpa % 16, 0);
        r = b->buf + (b->rsdp_gpa - b->gpa);
        assert_memory_equal(r, "RSD PTR ", 8);
        assert_int_equal(sum(r, 20), 0);
        assert_int_equal(r[15], 2);         /* revision */
        assert_int_equal(le32(r + 20), 36); /* length */
        assert_int_equal(sum(r, 36), 0);
        assert_memory_equal(r + 9, "TIDAL ", 6);
        return r;
}

/* The one table with signature sig the XSDT points to. */
static const uint8_t *xsdt_find(const struct built *b, const char *sig)
{
        const uint8_t *x = table_at(b, le64(rsdp(b) + 24), "XSDT");
        uint32_t n = (le32(x + 4) - 36) / 8;
        const uint8_t *found = NULL;

        assert_int_equal((le32(x + 4) - 36) % 8, 0);
        for (uint32_t i = 0; i < n; i++) {
                uint64_t gpa = le64(x + 36 + 8 * i);
                const uint8_t *t;

                assert_true(gpa >= b->gpa && gpa < b->gpa + b->size);
                t = b->buf + (gpa - b->gpa);
                if (memcmp(t, sig, 4) == 0) {
                        assert_null(found);
                        found = table_at(b, gpa, sig);
                }
        }
        assert_non_null(found);
        return found;
}

static const uint8_t *dsdt(const struct built *b, uint32_t *len)
{
        const uint8_t *f = xsdt_find(b, "FACP");
        const uint8_t *d = table_at(b, le64(f + 140), "DSDT");

        assert_int_equal(le32(f + 40), le64(f + 140)); /* DSDT and X_DSDT agree */
        assert_int_equal(d[8], 2);                     /* 64-bit integers */
        *len = le32(d + 4);
        return d;
}

static void free_built(struct built *b)
{
        free(b->buf);
}

static void check_gas_io8(const uint8_t *g, uint16_t port)
{
        assert_int_equal(g[0], 1); /* system I/O */
        assert_int_equal(g[1], 8); /* bit width */
        assert_int_equal(g[2], 0); /* bit offset */
        assert_int_equal(g[3], 1); /* byte access */
        assert_int_equal(le64(g + 4), port);
}

static void check_fadt(const struct built *b)
{
        const uint8_t *f = xsdt_find(b, "FACP");
        uint32_t flags = le32(f + 112);
        uint16_t boot = le16(f + 109);

        assert_int_equal(le32(f + 4), 276);
        assert_int_equal(f[8], 6);         /* major revision */
        assert_int_equal(f[131], 3);       /* minor revision: ACPI 6.3 */
        assert_true(flags & (1U << 20));   /* HW_REDUCED_ACPI */
        assert_true(flags & (1U << 10));   /* RESET_REG_SUP */
        assert_true(flags & (1U << 4));    /* PWR_BUTTON: no fixed power button */
        assert_true(flags & (1U << 5));    /* SLP_BUTTON: no fixed sleep button */
        assert_false(boot & (1U << 3));    /* MSI must not be disabled */
        assert_int_equal(f[45], 0);        /* preferred PM profile */
        assert_int_equal(le16(f + 46), 9); /* SCI_INT */
        check_gas_io8(f + 116, LAYOUT_PORT_ACPI_RESET);
        assert_int_equal(f[128], LAYOUT_ACPI_RESET_VALUE);
        check_gas_io8(f + 244, LAYOUT_PORT_ACPI_SLEEP_CONTROL);
        check_gas_io8(f + 256, LAYOUT_PORT_ACPI_SLEEP_STATUS);
        /* No FACS, PM1 or GPE blocks in hardware-reduced mode. */
        assert_int_equal(le32(f + 36), 0);
        assert_int_equal(le64(f + 132), 0);
        for (size_t off = 56; off < 88; off += 4)
                assert_int_equal(le32(f + off), 0);
        for (size_t off = 148; off < 244; off++)
                assert_int_equal(f[off], 0);
}

static void check_madt(const struct built *b, unsigned nr_cpus)
{
        const uint8_t *m = xsdt_find(b, "APIC");
        uint32_t len = le32(m + 4);
        unsigned lapics = 0, ioapics = 0, nmis = 0, isos = 0;
        bool iso_pit = false, iso_sci = false;

        assert_int_equal(le32(m + 36), LAYOUT_LAPIC_ADDR);
        for (uint32_t off = 44; off < len;) {
                const uint8_t *e = m + off;

                assert_true(e[1] >= 2 && off + e[1] <= len);
                switch (e[0]) {
                case 0: /* Processor Local APIC */
                        assert_int_equal(e[1], 8);
                        assert_int_equal(e[2], lapics);   /* ACPI processor UID */
                        assert_int_equal(e[3], lapics);   /* APIC ID */
                        assert_int_equal(le32(e + 4), 1); /* enabled */
                        lapics++;
                        break;
                case 1: /* I/O APIC */
                        assert_int_equal(e[1], 12);
                        assert_int_equal(le32(e + 4), LAYOUT_IOAPIC_ADDR);
                        assert_int_equal(le32(e + 8), 0); /* GSI base */
                        ioapics++;
                        break;
                case 2: /* Interrupt Source Override */
                        assert_int_equal(e[1], 10);
                        assert_int_equal(e[2], 0); /* ISA */
                        if (e[3] == 0) {
                                assert_int_equal(le32(e + 4), 2);
                                iso_pit = true;
                        } else if (e[3] == 9) {
                                assert_int_equal(le32(e + 4), 9);
                                assert_int_equal(le16(e + 8), 0xd); /* level, active high */
                                iso_sci = true;
                        }
                        isos++;
                        break;
                case 4: /* Local APIC NMI */
                        assert_int_equal(e[1], 6);
                        assert_int_equal(e[2], 0xff); /* all processors */
                        assert_int_equal(e[5], 1);    /* LINT1 */
                        nmis++;
                        break;
                default:
                        fail_msg("unexpected MADT entry type %u", e[0]);
                }
                off += e[1];
        }
        assert_int_equal(lapics, nr_cpus);
        assert_int_equal(ioapics, 1);
        assert_int_equal(isos, 2);
        assert_true(iso_pit && iso_sci);
        assert_int_equal(nmis, 1);
}

static const uint8_t *find(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
        return memmem(hay, n, needle, m);
}

static void check_dsdt(const struct built *b, bool mmio64)
{
        static const uint8_t s5[] = {0x08, '_',  'S',  '5',  '_',
                                     0x12, 0x07, 0x04, 0x0a, LAYOUT_ACPI_S5_SLP_TYP,
                                     0x00, 0x00, 0x00};
        static const uint8_t hid[] = {0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x08};
        static const uint8_t cid[] = {0x08, '_', 'C', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03};
        static const uint8_t com1_hid[] = {0x0c, 0x41, 0xd0, 0x05, 0x01};
        /* DWordMemory 0xC0000000-0xFEBFFFFF: type memory, fixed window, read/write. */
        static const uint8_t mem32[] = {0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0,    0,    0,
                                        0,    0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xbf, 0xfe};
        /* WordIO 0x0D00-0xFFFF */
        static const uint8_t io_high[] = {0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03,
                                          0,    0,    0x00, 0x0d, 0xff, 0xff};
        uint8_t qword[] = {0x8a, 0x2b, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0, 0, 0, 0, 0};
        uint32_t len;
        const uint8_t *d = dsdt(b, &len);

        assert_non_null(find(d, len, s5, sizeof(s5)));
        assert_non_null(find(d, len, "PCI0", 4));
        assert_non_null(find(d, len, hid, sizeof(hid)));
        assert_non_null(find(d, len, cid, sizeof(cid)));
        assert_non_null(find(d, len, "_CRS", 4));
        assert_non_null(find(d, len, mem32, sizeof(mem32)));
        assert_non_null(find(d, len, io_high, sizeof(io_high)));
        assert_non_null(find(d, len, "COM1", 4));
        assert_non_null(find(d, len, com1_hid, sizeof(com1_hid)));
        assert_null(find(d, len, "_ADR", 4)); /* _HID or _ADR, not both */
        assert_int_equal(find(d, len, qword, sizeof(qword)) != NULL, mmio64);
}

static void check_all(unsigned nr_cpus, bool mmio64)
{
        struct built b;

        build(&b, nr_cpus, mmio64 ? MMIO64_BASE : 0, mmio64 ? MMIO64_SIZE : 0);
        rsdp(&b);
        check_fadt(&b);
        check_madt(&b, nr_cpus);
        check_dsdt(&b, mmio64);
        free_built(&b);
}

static void test_1_cpu(void **state _unused_)
{
        check_all(1, false);
        check_all(1, true);
}

static void test_2_cpus(void **state _unused_)
{
        check_all(2, false);
}

static void test_8_cpus(void **state _unused_)
{
        check_all(8, true);
}

static void test_255_cpus(void **state _unused_)
{
        check_all(255, true);
}

/* The end of the last byte any table uses, relative to the buffer. */
static uint64_t tables_end(const struct built *b)
{
        const uint8_t *r = rsdp(b);
        uint64_t xsdt = le64(r + 24);
        const uint8_t *x = b->buf + (xsdt - b->gpa);
        uint64_t end = MAX((uint64_t)36, xsdt - b->gpa + le32(x + 4));
        uint32_t dlen;
        const uint8_t *d = dsdt(b, &dlen);

        end = MAX(end, (uint64_t)(d - b->buf) + dlen);
        for (uint32_t i = 0; i < (le32(x + 4) - 36) / 8; i++) {
                uint64_t off = le64(x + 36 + 8 * i) - b->gpa;

                end = MAX(end, off + le32(b->buf + off + 4));
        }
        return end;
}

/* Every buffer short of what the tables need is -ENOSPC, without writing past its end. */
static void test_too_small(void **state _unused_)
{
        const struct acpi_config cfg = {
                .nr_cpus = 255,
                .pci_mmio64_base = MMIO64_BASE,
                .pci_mmio64_size = MMIO64_SIZE,
        };
        struct built b;
        uint64_t need, rsdp_gpa;

        build(&b, cfg.nr_cpus, cfg.pci_mmio64_base, cfg.pci_mmio64_size);
        need = tables_end(&b);
        assert_true(need <= ACPI_TABLES_MAX_SIZE);

        for (uint64_t size = 0; size <= need; size++) {
                uint8_t *buf = malloc(size ? size : 1);
                int r;

                assert_non_null(buf);
                r = acpi_build_tables(buf, size, LAYOUT_ACPI_ADDR, &cfg, &rsdp_gpa);
                if (size < need)
                        assert_int_equal(r, -ENOSPC);
                else
                        assert_memory_equal(buf, b.buf, need);
                free(buf);
        }
        free_built(&b);
}

static void test_invalid(void **state _unused_)
{
        static const struct acpi_config bad[] = {
                {.nr_cpus = 0},
                {.nr_cpus = ACPI_MAX_CPUS + 1},
                {.nr_cpus = 1, .pci_mmio64_base = 0, .pci_mmio64_size = MMIO64_SIZE},
                {.nr_cpus = 1, .pci_mmio64_base = MMIO64_BASE, .pci_mmio64_size = 0},
                {.nr_cpus = 1, .pci_mmio64_base = UINT64_MAX - 10, .pci_mmio64_size = 12},
        };
        const struct acpi_config good = {.nr_cpus = 1};
        static uint8_t buf[LAYOUT_ACPI_SIZE];
        uint64_t rsdp_gpa;

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                assert_int_equal(
                        acpi_build_tables(buf, sizeof(buf), LAYOUT_ACPI_ADDR, &bad[i], &rsdp_gpa),
                        -EINVAL);
        /* Not 16-byte aligned. */
        assert_int_equal(
                acpi_build_tables(buf, sizeof(buf), LAYOUT_ACPI_ADDR + 8, &good, &rsdp_gpa),
                -EINVAL);
        /* Wraps around the address space. */
        assert_int_equal(acpi_build_tables(buf, sizeof(buf), UINT64_MAX - 15, &good, &rsdp_gpa),
                         -EINVAL);
        /* A window ending exactly at the top of the address space is fine. */
        assert_int_equal(acpi_build_tables(buf, sizeof(buf), LAYOUT_ACPI_ADDR,
                                           &(struct acpi_config){.nr_cpus = 1,
                                                                 .pci_mmio64_base = UINT64_MAX - 15,
                                                                 .pci_mmio64_size = 16},
                                           &rsdp_gpa),
                         0);
}

/* Tables above 4 GiB: the 32-bit DSDT pointer is left 0, X_DSDT carries the address. */
static void test_above_4g(void **state _unused_)
{
        const struct acpi_config cfg = {.nr_cpus = 2};
        static uint8_t buf[8192];
        uint64_t rsdp_gpa, gpa = 0x100000000ULL;
        struct built b = {.buf = buf, .size = sizeof(buf), .gpa = gpa};
        const uint8_t *f;

        assert_int_equal(acpi_build_tables(buf, sizeof(buf), gpa, &cfg, &rsdp_gpa), 0);
        b.rsdp_gpa = rsdp_gpa;
        f = xsdt_find(&b, "FACP");
        assert_int_equal(le32(f + 40), 0);
        table_at(&b, le64(f + 140), "DSDT");
}

static int write_file(const char *dir, const char *name, unsigned cpus, const void *p, size_t n)
{
        char path[4096];
        FILE *f;
        int r = 0;

        snprintf(path, sizeof(path), "%s/%s-%u.dat", dir, name, cpus);
        f = fopen(path, "we");
        if (!f)
                return -errno;
        if (fwrite(p, 1, n, f) != n)
                r = -EIO;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        return r;
}

/* Writes rsdp-N.dat and facp/apic/dsdt/xsdt-N.dat for acpi-iasl.sh. */
static int dump(const char *dir, unsigned nr_cpus, bool mmio64)
{
        struct built b;
        const uint8_t *r, *x, *f, *d;
        uint32_t n;
        int ret;

        build(&b, nr_cpus, mmio64 ? MMIO64_BASE : 0, mmio64 ? MMIO64_SIZE : 0);
        r = rsdp(&b);
        x = table_at(&b, le64(r + 24), "XSDT");
        f = xsdt_find(&b, "FACP");
        d = dsdt(&b, &n);
        ret = write_file(dir, "rsdp", nr_cpus, r, 36);
        if (ret == 0)
                ret = write_file(dir, "xsdt", nr_cpus, x, le32(x + 4));
        if (ret == 0)
                ret = write_file(dir, "facp", nr_cpus, f, le32(f + 4));
        if (ret == 0)
                ret = write_file(dir, "dsdt", nr_cpus, d, n);
        if (ret == 0) {
                const uint8_t *m = xsdt_find(&b, "APIC");

                ret = write_file(dir, "apic", nr_cpus, m, le32(m + 4));
        }
        free_built(&b);
        return ret;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_1_cpu),     cmocka_unit_test(test_2_cpus),
                cmocka_unit_test(test_8_cpus),    cmocka_unit_test(test_255_cpus),
                cmocka_unit_test(test_too_small), cmocka_unit_test(test_invalid),
                cmocka_unit_test(test_above_4g),
        };
        const char *dir = getenv("TIDAL_ACPI_DUMP_DIR");

        if (dir) {
                int r = dump(dir, 1, false);

                if (r == 0)
                        r = dump(dir, 8, true);
                if (r == 0)
                        r = dump(dir, 255, true);
                if (r < 0) {
                        fprintf(stderr, "writing tables to %s: %s\n", dir, strerror(-r));
                        return EXIT_FAILURE;
                }
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
