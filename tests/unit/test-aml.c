/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * AML encodings against known-good bytes. Unless noted, every expected sequence is what iasl
 * 20200925 emits for the ASL in the comment (compiled with -oa where names carry a root
 * prefix, since iasl otherwise strips redundant prefixes).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tidal/macro.h"
#include "vmm/acpi/aml.h"

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static void assert_aml(struct aml *a, const uint8_t *expect, size_t n)
{
        assert_int_equal(aml_error(a), 0);
        if (a->len != n) {
                fprintf(stderr, "length %zu, expected %zu:", a->len, n);
                for (size_t i = 0; i < a->len; i++)
                        fprintf(stderr, " %02x", a->data[i]);
                fprintf(stderr, "\n");
        }
        assert_int_equal(a->len, n);
        assert_memory_equal(a->data, expect, n);
}

/* Independent PkgLength decoder: returns the encoded value, sets *nbytes. */
static size_t pkglength_decode(const uint8_t *p, size_t *nbytes)
{
        size_t n = (p[0] >> 6) + 1;
        size_t v;

        *nbytes = n;
        if (n == 1)
                return p[0] & 0x3f;
        v = p[0] & 0x0f;
        for (size_t i = 1; i < n; i++)
                v |= (size_t)p[i] << (4 + 8 * (i - 1));
        return v;
}

static void test_integers(void **state _unused_)
{
        static const struct {
                uint64_t v;
                uint8_t bytes[9];
                size_t n;
        } cases[] = {
                {0, {0x00}, 1},                                   /* Zero */
                {1, {0x01}, 1},                                   /* One */
                {2, {0x0a, 0x02}, 2},                             /* 0x02 */
                {0xff, {0x0a, 0xff}, 2},                          /* 0xFF */
                {0x100, {0x0b, 0x00, 0x01}, 3},                   /* 0x0100 */
                {0xffff, {0x0b, 0xff, 0xff}, 3},                  /* 0xFFFF */
                {0x10000, {0x0c, 0x00, 0x00, 0x01, 0x00}, 5},     /* 0x00010000 */
                {0xffffffff, {0x0c, 0xff, 0xff, 0xff, 0xff}, 5},  /* 0xFFFFFFFF */
                {0x100000000, {0x0e, 0, 0, 0, 0, 1, 0, 0, 0}, 9}, /* 0x0000000100000000 */
                {0xfffffffffffffffe,
                 {0x0e, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
                 9}, /* 0xFFFFFFFFFFFFFFFE */
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct aml a;

                aml_init(&a);
                aml_integer(&a, cases[i].v);
                assert_aml(&a, cases[i].bytes, cases[i].n);
                aml_release(&a);
        }
}

static void test_name_integer(void **state _unused_)
{
        struct aml a;

        /* Name (INT2, 0x02) */
        aml_init(&a);
        aml_name_integer(&a, "INT2", 2);
        assert_aml(&a, BYTES(0x08, 'I', 'N', 'T', '2', 0x0a, 0x02));
        aml_release(&a);
}

static void test_strings(void **state _unused_)
{
        struct aml a;

        /* Name (STR0, "") Name (STR1, "tidal") */
        aml_init(&a);
        aml_name_string(&a, "STR0", "");
        aml_name_string(&a, "STR1", "tidal");
        assert_aml(&a, BYTES(0x08, 'S', 'T', 'R', '0', 0x0d, 0x00, 0x08, 'S', 'T', 'R', '1', 0x0d,
                             't', 'i', 'd', 'a', 'l', 0x00));
        aml_release(&a);

        aml_init(&a);
        aml_string(&a, "caf\xc3\xa9");
        assert_int_equal(aml_error(&a), -EINVAL);
        aml_release(&a);
}

static void test_eisaid(void **state _unused_)
{
        static const char *const bad[] = {"pnp0A08", "PNP0A0",  "PNP0A080", "PNP0A0G",
                                          "PNP0a08", "P1P0A08", ""};
        struct aml a;

        /* EisaId ("PNP0A08"), EisaId ("PNP0A03"), EisaId ("PNP0501") */
        aml_init(&a);
        aml_eisaid(&a, "PNP0A08");
        aml_eisaid(&a, "PNP0A03");
        aml_eisaid(&a, "PNP0501");
        assert_aml(&a, BYTES(0x0c, 0x41, 0xd0, 0x0a, 0x08, 0x0c, 0x41, 0xd0, 0x0a, 0x03, 0x0c, 0x41,
                             0xd0, 0x05, 0x01));
        aml_release(&a);

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                aml_init(&a);
                aml_eisaid(&a, bad[i]);
                assert_int_equal(aml_error(&a), -EINVAL);
                aml_release(&a);
        }
}

static void test_name_paths(void **state _unused_)
{
        static const struct {
                const char *path;
                uint8_t bytes[24];
                size_t n;
        } cases[] = {
                /* Name (_S5, ...): short segments are padded with '_' */
                {"_S5", {'_', 'S', '5', '_'}, 4},
                {"Z", {'Z', '_', '_', '_'}, 4},
                {"PCI0", {'P', 'C', 'I', '0'}, 4},
                /* Scope (\) */
                {"\\", {0x5c, 0x00}, 2},
                /* NullName (grammar: NamePath := NullName) */
                {"", {0x00}, 1},
                {"^", {0x5e, 0x00}, 2},
                /* Scope (\_SB) */
                {"\\_SB", {0x5c, '_', 'S', 'B', '_'}, 5},
                /* Scope (\_SB.PCI0) */
                {"\\_SB.PCI0", {0x5c, 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'}, 10},
                {"_SB.PCI0", {0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'}, 9},
                /* Scope (\_SB.PCI0.ABCD.EFGH) */
                {"\\_SB.PCI0.ABCD.EFGH",
                 {0x5c, 0x2f, 0x04, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'A', 'B', 'C', 'D', 'E',
                  'F', 'G', 'H'},
                 19},
                /* Scope (\_SB.PCI0.ABCD), three segments */
                {"\\_SB.PCI0.ABCD",
                 {0x5c, 0x2f, 0x03, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'A', 'B', 'C', 'D'},
                 15},
                /* Scope (^COM1), Scope (^^COM1) */
                {"^COM1", {0x5e, 'C', 'O', 'M', '1'}, 5},
                {"^^COM1", {0x5e, 0x5e, 'C', 'O', 'M', '1'}, 6},
                {"^^A.B", {0x5e, 0x5e, 0x2e, 'A', '_', '_', '_', 'B', '_', '_', '_'}, 11},
        };
        static const char *const bad[] = {"_sb", "1ABC", "ABCDE", "A..B", "A.",
                                          ".A",  "\\^A", "^\\A",  "A-B",  "\\\\",
                                          "A B", "\\.A", "^^.A",  "AB.",  "ABCD.EFGHI"};

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct aml a;

                aml_init(&a);
                aml_name_path(&a, cases[i].path);
                assert_aml(&a, cases[i].bytes, cases[i].n);
                aml_release(&a);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct aml a;

                aml_init(&a);
                aml_name_path(&a, bad[i]);
                if (aml_error(&a) != -EINVAL)
                        fail_msg("\"%s\" accepted", bad[i]);
                aml_release(&a);
        }
}

static void test_name_path_segment_limit(void **state _unused_)
{
        char path[256 * 5 + 1];
        struct aml a;
        size_t n = 0;

        /* 255 segments is the most MultiNamePath's SegCount holds. */
        for (unsigned i = 0; i < 255; i++)
                n += (size_t)sprintf(path + n, "%sA%03u", i ? "." : "", i);
        aml_init(&a);
        aml_name_path(&a, path);
        assert_int_equal(aml_error(&a), 0);
        assert_int_equal(a.len, 2 + 255 * 4);
        assert_int_equal(a.data[0], 0x2f);
        assert_int_equal(a.data[1], 255);
        assert_memory_equal(a.data + 2 + 254 * 4, "A254", 4);
        aml_release(&a);

        sprintf(path + n, ".B");
        aml_init(&a);
        aml_name_path(&a, path);
        assert_int_equal(aml_error(&a), -EINVAL);
        aml_release(&a);
}

static void test_package(void **state _unused_)
{
        struct aml_pkg pkg;
        struct aml a;

        /* Name (_S5, Package (0x04) { 0x05, Zero, Zero, Zero }) */
        aml_init(&a);
        aml_name(&a, "_S5");
        pkg = aml_package_begin(&a, 4);
        aml_integer(&a, 5);
        aml_integer(&a, 0);
        aml_integer(&a, 0);
        aml_integer(&a, 0);
        aml_end(&a, pkg);
        assert_aml(&a,
                   BYTES(0x08, '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00));
        aml_release(&a);

        /* Package (0x00) {} */
        aml_init(&a);
        aml_end(&a, aml_package_begin(&a, 0));
        assert_aml(&a, BYTES(0x12, 0x02, 0x00));
        aml_release(&a);
}

static void test_buffer(void **state _unused_)
{
        struct aml_pkg pkg;
        struct aml a;

        /* Buffer (0x03) { 0x01, 0x02, 0x03 } */
        aml_init(&a);
        pkg = aml_buffer_begin(&a);
        aml_append(&a, BYTES(1, 2, 3));
        aml_end(&a, pkg);
        assert_aml(&a, BYTES(0x11, 0x06, 0x0a, 0x03, 0x01, 0x02, 0x03));
        aml_release(&a);

        /* Buffer () { 0x01 } (iasl without -oa: the size becomes One) */
        aml_init(&a);
        pkg = aml_buffer_begin(&a);
        aml_byte(&a, 1);
        aml_end(&a, pkg);
        assert_aml(&a, BYTES(0x11, 0x03, 0x01, 0x01));
        aml_release(&a);

        /* Buffer () {} */
        aml_init(&a);
        aml_end(&a, aml_buffer_begin(&a));
        assert_aml(&a, BYTES(0x11, 0x02, 0x00));
        aml_release(&a);
}

static void test_pkglength_encode(void **state _unused_)
{
        static const struct {
                size_t content;
                int n;
                uint8_t bytes[4];
        } cases[] = {
                {0, 1, {0x01}},
                {62, 1, {0x3f}},                        /* value 63: largest 1-byte */
                {63, 2, {0x41, 0x04}},                  /* value 64 would need 2 bytes: 65 */
                {4093, 2, {0x4f, 0xff}},                /* value 4095: largest 2-byte */
                {4094, 3, {0x81, 0x00, 0x01}},          /* 4096 needs 3 bytes: 4097 */
                {0xffffc, 3, {0x8f, 0xff, 0xff}},       /* value 1 MiB - 1: largest 3-byte */
                {0xffffd, 4, {0xc1, 0x00, 0x00, 0x01}}, /* 1 MiB needs 4 bytes: 1 MiB + 1 */
                {0x100000, 4, {0xc4, 0x00, 0x00, 0x01}},
                {0x0ffffffb, 4, {0xcf, 0xff, 0xff, 0xff}}, /* largest of all */
        };
        uint8_t out[4];

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int n = aml_pkglength_encode(cases[i].content, out);

                assert_int_equal(n, cases[i].n);
                assert_memory_equal(out, cases[i].bytes, (size_t)n);
        }
        assert_int_equal(aml_pkglength_encode(0x0ffffffc, out), -E2BIG);
        assert_int_equal(aml_pkglength_encode(SIZE_MAX, out), -E2BIG);
}

/* Every length up to 2 MiB decodes back to itself plus the prefix, in the fewest bytes. */
static void test_pkglength_roundtrip(void **state _unused_)
{
        for (size_t content = 0; content <= 2 * 1024 * 1024; content++) {
                uint8_t out[4];
                int n = aml_pkglength_encode(content, out);
                size_t nbytes, v;

                assert_true(n >= 1 && n <= 4);
                v = pkglength_decode(out, &nbytes);
                assert_int_equal(nbytes, (size_t)n);
                assert_int_equal(v, content + (size_t)n);
                /* Reserved bits 4-5 of a multi-byte lead byte are zero. */
                if (n > 1)
                        assert_int_equal(out[0] & 0x30, 0);
                /* Minimal: one byte fewer could not have held it. */
                if (n == 2)
                        assert_true(content + 1 > 0x3f);
                if (n == 3)
                        assert_true(content + 2 > 0xfff);
                if (n == 4)
                        assert_true(content + 3 > 0xfffff);
        }
}

/*
 * Buffers around the PkgLength width changes. The 60/61 and 4090/4091 heads are iasl's for
 * Buffer () { 0x00, ... }; the 1 MiB ones follow the same rule (iasl needs minutes for a
 * million-element initializer; test_pkglength_1mib_scope checks that width change against it).
 */
static void test_pkglength_in_buffers(void **state _unused_)
{
        static const struct {
                size_t data;
                uint8_t head[8];
                size_t n;
        } cases[] = {
                {60, {0x11, 0x3f, 0x0a, 0x3c}, 4},
                {61, {0x11, 0x41, 0x04, 0x0a, 0x3d}, 5},
                {4090, {0x11, 0x4f, 0xff, 0x0b, 0xfa, 0x0f}, 6},
                {4091, {0x11, 0x81, 0x00, 0x01, 0x0b, 0xfb, 0x0f}, 7},
                {0xffff7, {0x11, 0x8f, 0xff, 0xff, 0x0c, 0xf7, 0xff, 0x0f}, 8},
                {0xffff8, {0x11, 0xc1, 0x00, 0x00, 0x01, 0x0c, 0xf8, 0xff}, 8},
                {0x100000, {0x11, 0xc9, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x00}, 8},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                uint8_t *zeros = calloc(1, cases[i].data);
                struct aml_pkg pkg;
                struct aml a;
                size_t nbytes;

                assert_non_null(zeros);
                aml_init(&a);
                pkg = aml_buffer_begin(&a);
                aml_append(&a, zeros, cases[i].data);
                aml_end(&a, pkg);
                assert_int_equal(aml_error(&a), 0);
                assert_memory_equal(a.data, cases[i].head, cases[i].n);
                /* PkgLength covers everything after the opcode. */
                assert_int_equal(pkglength_decode(a.data + 1, &nbytes), a.len - 1);
                aml_release(&a);
                free(zeros);
        }
}

/* Name (<name>, Buffer () {"aaa..."}) with n - 1 characters plus the NUL. */
static void emit_string_buffer(struct aml *a, const char *name, size_t n)
{
        struct aml_pkg pkg;
        char *s = malloc(n);

        assert_non_null(s);
        memset(s, 'a', n - 1);
        s[n - 1] = '\0';
        aml_name(a, name);
        pkg = aml_buffer_begin(a);
        aml_append(a, s, n);
        aml_end(a, pkg);
        free(s);
}

/*
 * The 1 MiB boundary inside nested containers, against iasl -oa for
 *   Scope (\_SB) { Name (B000, Buffer () {"<4000 x a>"}) ... Name (B260, ...)
 *                  Name (LAST, Buffer () {"<last - 1 x a>"}) }
 * last = 1424 makes the Scope's PkgLength exactly 1 MiB - 1, last = 1425 needs 4 bytes.
 */
static void test_pkglength_1mib_scope(void **state _unused_)
{
        static const struct {
                size_t last;
                uint8_t head[6];
                size_t n;
                size_t total;
        } cases[] = {
                {1424, {0x10, 0x8f, 0xff, 0xff, 0x5c}, 5, 1048576},
                {1425, {0x10, 0xc1, 0x00, 0x00, 0x01, 0x5c}, 6, 1048578},
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct aml_pkg sb;
                struct aml a;

                aml_init(&a);
                sb = aml_scope_begin(&a, "\\_SB");
                for (unsigned j = 0; j < 261; j++) {
                        char name[5];

                        snprintf(name, sizeof(name), "B%03u", j);
                        emit_string_buffer(&a, name, 4001);
                }
                emit_string_buffer(&a, "LAST", cases[i].last);
                aml_end(&a, sb);
                assert_int_equal(aml_error(&a), 0);
                assert_int_equal(a.len, cases[i].total);
                assert_memory_equal(a.data, cases[i].head, cases[i].n);
                aml_release(&a);
        }
}

/* Name (_CRS, ResourceTemplate () { ... }) of a PCI host bridge. */
static void emit_pci_crs(struct aml *a)
{
        struct aml_pkg rt;

        aml_name(a, "_CRS");
        rt = aml_resource_template_begin(a);
        aml_word_bus_number(a, 0, 0);
        aml_io(a, 0xcf8, 0xcf8, 1, 8);
        aml_word_io(a, 0x0000, 0x0cf7);
        aml_word_io(a, 0x0d00, 0xffff);
        aml_dword_memory(a, AML_MEM_NON_CACHEABLE, 0xc0000000, 0xfebfffff);
        aml_qword_memory(a, AML_MEM_NON_CACHEABLE, 0x8000000000, 0xffffffffff);
        aml_end(a, rt);
}

/*
 * Name (_CRS, ResourceTemplate () {
 *     WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, 0, 0, 0, 1)
 *     IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08)
 *     WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
 *             0, 0x0000, 0x0CF7, 0, 0x0CF8)
 *     WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
 *             0, 0x0D00, 0xFFFF, 0, 0xF300)
 *     DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,
 *                  0, 0xC0000000, 0xFEBFFFFF, 0, 0x3EC00000)
 *     QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,
 *                  0, 0x8000000000, 0xFFFFFFFFFF, 0, 0x8000000000)
 * })
 */
static const uint8_t pci_crs[] = {
        0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 0x46, 0x08, 0x0a, 0x82, 0x88, 0x0d, 0x00, 0x02,
        0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x47, 0x01,
        0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08, 0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00,
        0x00, 0x00, 0xf7, 0x0c, 0x00, 0x00, 0xf8, 0x0c, 0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03,
        0x00, 0x00, 0x00, 0x0d, 0xff, 0xff, 0x00, 0x00, 0x00, 0xf3, 0x87, 0x17, 0x00, 0x00,
        0x0c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xbf, 0xfe,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x3e, 0x8a, 0x2b, 0x00, 0x00, 0x0c, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00,
        0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x79, 0x00,
};

static void test_resource_template_pci(void **state _unused_)
{
        struct aml a;

        aml_init(&a);
        emit_pci_crs(&a);
        assert_aml(&a, pci_crs, sizeof(pci_crs));
        aml_release(&a);
}

static void test_resource_template_empty(void **state _unused_)
{
        struct aml a;

        /* ResourceTemplate () {} */
        aml_init(&a);
        aml_end(&a, aml_resource_template_begin(&a));
        assert_aml(&a, BYTES(0x11, 0x05, 0x0a, 0x02, 0x79, 0x00));
        aml_release(&a);
}

static void test_interrupt(void **state _unused_)
{
        struct aml a;

        /*
         * Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) {9}
         * Interrupt (ResourceConsumer, Edge, ActiveLow, Shared) {0x21}
         */
        aml_init(&a);
        aml_interrupt(&a, 0, 9);
        aml_interrupt(&a, AML_INTERRUPT_EDGE | AML_INTERRUPT_ACTIVE_LOW | AML_INTERRUPT_SHARED,
                      0x21);
        assert_aml(&a, BYTES(0x89, 0x06, 0x00, 0x01, 0x01, 0x09, 0x00, 0x00, 0x00, 0x89, 0x06, 0x00,
                             0x0f, 0x01, 0x21, 0x00, 0x00, 0x00));
        aml_release(&a);

        aml_init(&a);
        aml_interrupt(&a, 1 << 7, 9);
        assert_int_equal(aml_error(&a), -EINVAL);
        aml_release(&a);
}

/*
 * Device (COM1) {
 *     Name (_HID, EisaId ("PNP0501"))
 *     Name (_UID, One)
 *     Name (_CRS, ResourceTemplate () { IO (Decode16, 0x03F8, 0x03F8, 0x00, 0x08) IRQNoFlags () {4}
 * })
 * }
 */
static const uint8_t com1[] = {
        0x5b, 0x82, 0x2b, 0x43, 0x4f, 0x4d, 0x31, 0x08, 0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0,
        0x05, 0x01, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x01, 0x08, 0x5f, 0x43, 0x52, 0x53, 0x11, 0x10,
        0x0a, 0x0d, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08, 0x22, 0x10, 0x00, 0x79, 0x00,
};

static void emit_com1(struct aml *a)
{
        struct aml_pkg dev = aml_device_begin(a, "COM1");
        struct aml_pkg rt;

        aml_name_eisaid(a, "_HID", "PNP0501");
        aml_name_integer(a, "_UID", 1);
        aml_name(a, "_CRS");
        rt = aml_resource_template_begin(a);
        aml_io(a, 0x3f8, 0x3f8, 0, 8);
        aml_irq_no_flags(a, 4);
        aml_end(a, rt);
        aml_end(a, dev);
}

static void test_device(void **state _unused_)
{
        struct aml a;

        aml_init(&a);
        emit_com1(&a);
        assert_aml(&a, com1, sizeof(com1));
        aml_release(&a);
}

/*
 * Scope (\_SB) {
 *     Device (PCI0) {
 *         Name (_HID, EisaId ("PNP0A08"))
 *         Name (_CID, EisaId ("PNP0A03"))
 *         Name (_SEG, Zero)
 *         Name (_UID, Zero)
 *         Name (_BBN, Zero)
 *         Name (_CRS, <as pci_crs>)
 *     }
 *     Device (COM1) { <as com1> }
 * }
 */
static void test_scope_nested(void **state _unused_)
{
        static const uint8_t head[] = {
                0x10, 0x4e, 0x0e, 0x5c, 0x5f, 0x53, 0x42, 0x5f, 0x5b, 0x82, 0x48, 0x0b, 0x50, 0x43,
                0x49, 0x30, 0x08, 0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x0a, 0x08, 0x08, 0x5f,
                0x43, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x0a, 0x03, 0x08, 0x5f, 0x53, 0x45, 0x47, 0x00,
                0x08, 0x5f, 0x55, 0x49, 0x44, 0x00, 0x08, 0x5f, 0x42, 0x42, 0x4e, 0x00,
        };
        struct aml_pkg sb, dev;
        struct aml a;

        aml_init(&a);
        sb = aml_scope_begin(&a, "\\_SB");
        dev = aml_device_begin(&a, "PCI0");
        aml_name_eisaid(&a, "_HID", "PNP0A08");
        aml_name_eisaid(&a, "_CID", "PNP0A03");
        aml_name_integer(&a, "_SEG", 0);
        aml_name_integer(&a, "_UID", 0);
        aml_name_integer(&a, "_BBN", 0);
        emit_pci_crs(&a);
        aml_end(&a, dev);
        emit_com1(&a);
        aml_end(&a, sb);

        assert_int_equal(aml_error(&a), 0);
        assert_int_equal(a.len, sizeof(head) + sizeof(pci_crs) + sizeof(com1));
        assert_memory_equal(a.data, head, sizeof(head));
        assert_memory_equal(a.data + sizeof(head), pci_crs, sizeof(pci_crs));
        assert_memory_equal(a.data + sizeof(head) + sizeof(pci_crs), com1, sizeof(com1));
        aml_release(&a);
}

static void test_method(void **state _unused_)
{
        struct aml_pkg m;
        struct aml a;

        /* Method (MTH0, 0, NotSerialized) { Return (0x2A) } */
        aml_init(&a);
        m = aml_method_begin(&a, "MTH0", 0, false);
        aml_return(&a);
        aml_integer(&a, 0x2a);
        aml_end(&a, m);
        /* Method (MTH1, 2, Serialized) { Return (Arg0) } */
        m = aml_method_begin(&a, "MTH1", 2, true);
        aml_return(&a);
        aml_byte(&a, 0x68); /* Arg0Op */
        aml_end(&a, m);
        assert_aml(&a, BYTES(0x14, 0x09, 'M', 'T', 'H', '0', 0x00, 0xa4, 0x0a, 0x2a, 0x14, 0x08,
                             'M', 'T', 'H', '1', 0x0a, 0xa4, 0x68));
        aml_release(&a);

        aml_init(&a);
        aml_method_begin(&a, "MTH2", 8, false);
        assert_int_equal(aml_error(&a), -EINVAL);
        aml_release(&a);
}

static void test_descriptor_errors(void **state _unused_)
{
        struct aml a;

        aml_init(&a);
        aml_word_io(&a, 0x100, 0xff);
        assert_int_equal(aml_error(&a), -EINVAL);
        aml_release(&a);

        /* 0..0xFFFF has a length of 0x10000, which a Word descriptor cannot hold. */
        aml_init(&a);
        aml_word_io(&a, 0, 0xffff);
        assert_int_equal(aml_error(&a), -EINVAL);
        aml_release(&a);

        aml_init(&a);
        aml_qword_memory(&a, AML_MEM_NON_CACHEABLE, 0, UINT64_MAX);
        assert_int_equal(aml_error(&a), -EINVAL);
        aml_release(&a);

        aml_init(&a);
        aml_irq_no_flags(&a, 16);
        assert_int_equal(aml_error(&a), -EINVAL);
        aml_release(&a);

        aml_init(&a);
        aml_io(&a, 0x3f8, 0x3f0, 0, 8);
        assert_int_equal(aml_error(&a), -EINVAL);
        aml_release(&a);
}

/* The first error sticks: later calls change nothing, and ending is harmless. */
static void test_sticky_error(void **state _unused_)
{
        struct aml_pkg pkg;
        struct aml a;
        size_t len;

        aml_init(&a);
        pkg = aml_scope_begin(&a, "\\_SB");
        aml_name_path(&a, "bad");
        len = a.len;
        aml_integer(&a, 0x1234);
        aml_eisaid(&a, "PNP0501");
        aml_end(&a, pkg);
        assert_int_equal(aml_error(&a), -EINVAL);
        assert_int_equal(a.len, len);
        aml_release(&a);

        /* Closing a container that was never opened here. */
        aml_init(&a);
        aml_end(&a, (struct aml_pkg){.start = 10, .kind = AML_CONTAINER_PKG});
        assert_int_equal(aml_error(&a), -EINVAL);
        aml_release(&a);
}

/*
 * Building the COM1 device into every too-small caller buffer (heap-allocated to the exact size,
 * so the sanitizer sees any overrun) fails with -ENOSPC; the exact size succeeds.
 */
static void test_fixed_buffer_overflow(void **state _unused_)
{
        for (size_t cap = 0; cap <= sizeof(com1); cap++) {
                uint8_t *buf = malloc(cap ? cap : 1);
                struct aml a;

                assert_non_null(buf);
                aml_init_fixed(&a, buf, cap);
                emit_com1(&a);
                assert_true(a.len <= cap);
                if (cap < sizeof(com1)) {
                        assert_int_equal(aml_error(&a), -ENOSPC);
                } else {
                        assert_int_equal(aml_error(&a), 0);
                        assert_memory_equal(buf, com1, sizeof(com1));
                }
                aml_release(&a);
                free(buf);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_integers),
                cmocka_unit_test(test_name_integer),
                cmocka_unit_test(test_strings),
                cmocka_unit_test(test_eisaid),
                cmocka_unit_test(test_name_paths),
                cmocka_unit_test(test_name_path_segment_limit),
                cmocka_unit_test(test_package),
                cmocka_unit_test(test_buffer),
                cmocka_unit_test(test_pkglength_encode),
                cmocka_unit_test(test_pkglength_roundtrip),
                cmocka_unit_test(test_pkglength_in_buffers),
                cmocka_unit_test(test_pkglength_1mib_scope),
                cmocka_unit_test(test_resource_template_pci),
                cmocka_unit_test(test_resource_template_empty),
                cmocka_unit_test(test_interrupt),
                cmocka_unit_test(test_device),
                cmocka_unit_test(test_scope_nested),
                cmocka_unit_test(test_method),
                cmocka_unit_test(test_descriptor_errors),
                cmocka_unit_test(test_sticky_error),
                cmocka_unit_test(test_fixed_buffer_overflow),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
