/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <string.h>

#include "tidal/macro.h"
#include "vmm/acpi/aml.h"

/* Opcodes and prefixes, ACPI 6.x section 20.2. */
#define AML_ZERO_OP           0x00
#define AML_ONE_OP            0x01
#define AML_NAME_OP           0x08
#define AML_BYTE_PREFIX       0x0a
#define AML_WORD_PREFIX       0x0b
#define AML_DWORD_PREFIX      0x0c
#define AML_STRING_PREFIX     0x0d
#define AML_QWORD_PREFIX      0x0e
#define AML_SCOPE_OP          0x10
#define AML_BUFFER_OP         0x11
#define AML_PACKAGE_OP        0x12
#define AML_METHOD_OP         0x14
#define AML_DUAL_NAME_PREFIX  0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_EXT_OP_PREFIX     0x5b
#define AML_DEVICE_OP         0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR         0x5c
#define AML_PARENT_PREFIX     0x5e
#define AML_RETURN_OP         0xa4
#define AML_NULL_NAME         0x00

/* Resource descriptor tags, ACPI 6.x section 6.4. */
#define RES_IRQ_NO_FLAGS  0x22 /* small item 0x04, length 2 */
#define RES_IO            0x47 /* small item 0x08, length 7 */
#define RES_END_TAG       0x79 /* small item 0x0f, length 1 */
#define RES_DWORD_ADDRESS 0x87
#define RES_WORD_ADDRESS  0x88
#define RES_EXT_INTERRUPT 0x89
#define RES_QWORD_ADDRESS 0x8a

#define RES_ADDRESS_TYPE_MEMORY 0
#define RES_ADDRESS_TYPE_IO     1
#define RES_ADDRESS_TYPE_BUS    2
/* General flags: ResourceProducer, PosDecode, MinFixed (bit 2), MaxFixed (bit 3). */
#define RES_ADDRESS_FIXED_WINDOW 0x0c
#define RES_IO_ENTIRE_RANGE      0x03
#define RES_MEM_READ_WRITE       0x01
#define RES_IO_DECODE16          0x01
#define RES_INTERRUPT_CONSUMER   0x01

#define NAME_SEG_LEN  4
#define NAME_MAX_SEGS 255

void aml_init(struct aml *a)
{
        *a = (struct aml){};
}

void aml_init_fixed(struct aml *a, void *buf, size_t size)
{
        *a = (struct aml){.data = buf, .cap = size, .fixed = true};
}

void aml_release(struct aml *a)
{
        if (!a->fixed)
                free(a->data);
        *a = (struct aml){};
}

int aml_error(const struct aml *a)
{
        return a->error;
}

static void fail(struct aml *a, int error)
{
        if (a->error == 0)
                a->error = error;
}

/* Makes room for n more bytes; false (with the error recorded) when there is none. */
static bool reserve(struct aml *a, size_t n)
{
        size_t need, cap;
        uint8_t *p;

        if (a->error != 0)
                return false;
        if (__builtin_add_overflow(a->len, n, &need)) {
                fail(a, -E2BIG);
                return false;
        }
        if (need <= a->cap)
                return true;
        if (a->fixed) {
                fail(a, -ENOSPC);
                return false;
        }
        cap = MAX(MAX(a->cap * 2, need), (size_t)256);
        p = realloc(a->data, cap);
        if (!p) {
                fail(a, -ENOMEM);
                return false;
        }
        a->data = p;
        a->cap = cap;
        return true;
}

void aml_append(struct aml *a, const void *data, size_t n)
{
        if (!reserve(a, n))
                return;
        memcpy(a->data + a->len, data, n);
        a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
        aml_append(a, &b, 1);
}

/* Inserts n bytes at offset off, shifting what follows. */
static void insert(struct aml *a, size_t off, const uint8_t *data, size_t n)
{
        if (!reserve(a, n))
                return;
        memmove(a->data + off + n, a->data + off, a->len - off);
        memcpy(a->data + off, data, n);
        a->len += n;
}

static size_t put_le(uint8_t *out, uint64_t v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                out[i] = (uint8_t)(v >> (8 * i));
        return n;
}

int aml_pkglength_encode(size_t content, uint8_t out[static 4])
{
        if (content > AML_PKGLENGTH_MAX)
                return -E2BIG;
        /* The encoded value includes the PkgLength bytes, so the width depends on itself. */
        for (unsigned n = 1; n <= 4; n++) {
                /* 1 byte: 6 bits; n bytes: 4 bits in the lead byte plus 8 per extra byte. */
                uint64_t max = n == 1 ? 0x3f : (UINT64_C(1) << (4 + 8 * (n - 1))) - 1;
                uint64_t total = (uint64_t)content + n;

                if (total > max)
                        continue;
                if (n == 1) {
                        out[0] = (uint8_t)total;
                        return 1;
                }
                out[0] = (uint8_t)((n - 1) << 6 | (total & 0x0f));
                put_le(out + 1, total >> 4, n - 1);
                return (int)n;
        }
        return -E2BIG;
}

static bool is_lead_name_char(char c)
{
        return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(char c)
{
        return is_lead_name_char(c) || (c >= '0' && c <= '9');
}

/*
 * Checks the segments part of a path ("", "A", "AB.CD", ...) and counts its segments.
 * -EINVAL on an empty or over-long segment or a character AML names cannot hold.
 */
static int name_segs_count(const char *s, size_t *ret_nr)
{
        size_t nr = 0;

        if (*s == '\0') {
                *ret_nr = 0;
                return 0;
        }
        for (;;) {
                size_t n = strcspn(s, ".");

                if (n == 0 || n > NAME_SEG_LEN || !is_lead_name_char(s[0]))
                        return -EINVAL;
                for (size_t i = 1; i < n; i++)
                        if (!is_name_char(s[i]))
                                return -EINVAL;
                if (++nr > NAME_MAX_SEGS)
                        return -EINVAL;
                if (s[n] == '\0')
                        break;
                s += n + 1;
        }
        *ret_nr = nr;
        return 0;
}

void aml_name_path(struct aml *a, const char *path)
{
        const char *s = path;
        size_t nr;

        if (!path) {
                fail(a, -EINVAL);
                return;
        }
        /* A path is absolute or relative to some ancestor, never both. */
        if (*s == '\\') {
                aml_byte(a, AML_ROOT_CHAR);
                s++;
        } else {
                for (; *s == '^'; s++)
                        aml_byte(a, AML_PARENT_PREFIX);
        }

        if (name_segs_count(s, &nr) < 0) {
                fail(a, -EINVAL);
                return;
        }
        if (nr == 0)
                aml_byte(a, AML_NULL_NAME);
        else if (nr == 2)
                aml_byte(a, AML_DUAL_NAME_PREFIX);
        else if (nr > 2) {
                aml_byte(a, AML_MULTI_NAME_PREFIX);
                aml_byte(a, (uint8_t)nr);
        }
        for (size_t i = 0; i < nr; i++) {
                size_t n = strcspn(s, ".");
                char seg[NAME_SEG_LEN] = {'_', '_', '_', '_'};

                memcpy(seg, s, n);
                aml_append(a, seg, sizeof(seg));
                s += n + 1;
        }
}

void aml_integer(struct aml *a, uint64_t v)
{
        uint8_t b[9];
        size_t n;

        if (v <= 1) {
                aml_byte(a, v == 0 ? AML_ZERO_OP : AML_ONE_OP);
                return;
        }
        if (v <= UINT8_MAX) {
                b[0] = AML_BYTE_PREFIX;
                n = 1;
        } else if (v <= UINT16_MAX) {
                b[0] = AML_WORD_PREFIX;
                n = 2;
        } else if (v <= UINT32_MAX) {
                b[0] = AML_DWORD_PREFIX;
                n = 4;
        } else {
                b[0] = AML_QWORD_PREFIX;
                n = 8;
        }
        aml_append(a, b, 1 + put_le(b + 1, v, n));
}

void aml_string(struct aml *a, const char *s)
{
        if (!s) {
                fail(a, -EINVAL);
                return;
        }
        /* AsciiCharList is 0x01-0x7f; the NUL terminates it. */
        for (const char *p = s; *p; p++)
                if ((unsigned char)*p > 0x7f) {
                        fail(a, -EINVAL);
                        return;
                }
        aml_byte(a, AML_STRING_PREFIX);
        aml_append(a, s, strlen(s) + 1);
}

static int hex_digit(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

/*
 * EISA IDs pack three letters as 5-bit values ('A' = 1) and four hex digits into 32 bits, stored
 * big-endian: "PNP0A08" is 0x41d00a08 as bytes 41 d0 0a 08.
 */
void aml_eisaid(struct aml *a, const char *id)
{
        uint32_t v = 0;
        uint8_t b[5] = {AML_DWORD_PREFIX};

        if (!id || strlen(id) != 7) {
                fail(a, -EINVAL);
                return;
        }
        for (unsigned i = 0; i < 3; i++) {
                if (id[i] < 'A' || id[i] > 'Z') {
                        fail(a, -EINVAL);
                        return;
                }
                v = v << 5 | (uint32_t)(id[i] - 'A' + 1);
        }
        for (unsigned i = 3; i < 7; i++) {
                int d = hex_digit(id[i]);

                if (d < 0) {
                        fail(a, -EINVAL);
                        return;
                }
                v = v << 4 | (uint32_t)d;
        }
        /* Bit 31 stays 0: 3 x 5 + 16 = 31 bits. */
        for (unsigned i = 0; i < 4; i++)
                b[1 + i] = (uint8_t)(v >> (24 - 8 * i));
        aml_append(a, b, sizeof(b));
}

void aml_name(struct aml *a, const char *path)
{
        aml_byte(a, AML_NAME_OP);
        aml_name_path(a, path);
}

void aml_name_integer(struct aml *a, const char *path, uint64_t v)
{
        aml_name(a, path);
        aml_integer(a, v);
}

void aml_name_string(struct aml *a, const char *path, const char *s)
{
        aml_name(a, path);
        aml_string(a, s);
}

void aml_name_eisaid(struct aml *a, const char *path, const char *id)
{
        aml_name(a, path);
        aml_eisaid(a, id);
}

static struct aml_pkg pkg_open(struct aml *a, enum aml_container kind)
{
        return (struct aml_pkg){.start = a->len, .kind = kind};
}

struct aml_pkg aml_scope_begin(struct aml *a, const char *path)
{
        struct aml_pkg pkg;

        aml_byte(a, AML_SCOPE_OP);
        pkg = pkg_open(a, AML_CONTAINER_PKG);
        aml_name_path(a, path);
        return pkg;
}

struct aml_pkg aml_device_begin(struct aml *a, const char *path)
{
        struct aml_pkg pkg;

        aml_append(a, (const uint8_t[]){AML_EXT_OP_PREFIX, AML_DEVICE_OP}, 2);
        pkg = pkg_open(a, AML_CONTAINER_PKG);
        aml_name_path(a, path);
        return pkg;
}

struct aml_pkg aml_method_begin(struct aml *a, const char *path, unsigned nr_args, bool serialized)
{
        struct aml_pkg pkg;

        if (nr_args > 7)
                fail(a, -EINVAL);
        aml_byte(a, AML_METHOD_OP);
        pkg = pkg_open(a, AML_CONTAINER_PKG);
        aml_name_path(a, path);
        /* MethodFlags: ArgCount in bits 0-2, SerializeFlag in bit 3, SyncLevel 0. */
        aml_byte(a, (uint8_t)((nr_args & 7) | (serialized ? 1 << 3 : 0)));
        return pkg;
}

struct aml_pkg aml_package_begin(struct aml *a, uint8_t nr_elements)
{
        struct aml_pkg pkg;

        aml_byte(a, AML_PACKAGE_OP);
        pkg = pkg_open(a, AML_CONTAINER_PKG);
        aml_byte(a, nr_elements);
        return pkg;
}

struct aml_pkg aml_buffer_begin(struct aml *a)
{
        aml_byte(a, AML_BUFFER_OP);
        return pkg_open(a, AML_CONTAINER_BUFFER);
}

struct aml_pkg aml_resource_template_begin(struct aml *a)
{
        aml_byte(a, AML_BUFFER_OP);
        return pkg_open(a, AML_CONTAINER_RESOURCE_TEMPLATE);
}

void aml_end(struct aml *a, struct aml_pkg pkg)
{
        uint8_t pl[4];
        int n;

        if (a->error != 0)
                return;
        if (pkg.start > a->len) {
                fail(a, -EINVAL);
                return;
        }
        if (pkg.kind == AML_CONTAINER_RESOURCE_TEMPLATE)
                /* A zero checksum means "treat as valid"; iasl emits the same. */
                aml_append(a, (const uint8_t[]){RES_END_TAG, 0x00}, 2);

        if (pkg.kind != AML_CONTAINER_PKG) {
                /* BufferSize is a TermArg: encode it with a scratch builder, then insert it. */
                uint8_t tmp[9];
                struct aml size;

                aml_init_fixed(&size, tmp, sizeof(tmp));
                aml_integer(&size, a->len - pkg.start);
                insert(a, pkg.start, tmp, size.len);
        }

        n = aml_pkglength_encode(a->len - pkg.start, pl);
        if (n < 0) {
                fail(a, n);
                return;
        }
        insert(a, pkg.start, pl, (size_t)n);
}

void aml_return(struct aml *a)
{
        aml_byte(a, AML_RETURN_OP);
}

/* Word/DWord/QWord Address Space Descriptor of a fixed window (ACPI 6.x 6.4.3.5). */
static void address_space(struct aml *a, uint8_t tag, size_t width, uint8_t type,
                          uint8_t type_flags, uint64_t min, uint64_t max)
{
        uint64_t field_max = width == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * width)) - 1;
        uint8_t b[3 + 3 + 5 * 8];
        size_t n = 0;

        /* _LEN must be max - min + 1 for a MinFixed/MaxFixed window, and fit the field. */
        if (max < min || max - min >= field_max) {
                fail(a, -EINVAL);
                return;
        }
        b[n++] = tag;
        n += put_le(b + n, 3 + 5 * width, 2); /* length after the 3-byte header */
        b[n++] = type;
        b[n++] = RES_ADDRESS_FIXED_WINDOW;
        b[n++] = type_flags;
        n += put_le(b + n, 0, width); /* _GRA */
        n += put_le(b + n, min, width);
        n += put_le(b + n, max, width);
        n += put_le(b + n, 0, width); /* _TRA */
        n += put_le(b + n, max - min + 1, width);
        aml_append(a, b, n);
}

void aml_word_bus_number(struct aml *a, uint16_t min, uint16_t max)
{
        address_space(a, RES_WORD_ADDRESS, 2, RES_ADDRESS_TYPE_BUS, 0, min, max);
}

void aml_word_io(struct aml *a, uint16_t min, uint16_t max)
{
        address_space(a, RES_WORD_ADDRESS, 2, RES_ADDRESS_TYPE_IO, RES_IO_ENTIRE_RANGE, min, max);
}

static uint8_t mem_flags(enum aml_mem_caching caching)
{
        /* _MEM in bits 1-2, _RW in bit 0; _MTP AddressRangeMemory and _TTP TypeStatic are 0. */
        return (uint8_t)(((unsigned)caching & 3) << 1 | RES_MEM_READ_WRITE);
}

void aml_dword_memory(struct aml *a, enum aml_mem_caching caching, uint32_t min, uint32_t max)
{
        address_space(a, RES_DWORD_ADDRESS, 4, RES_ADDRESS_TYPE_MEMORY, mem_flags(caching), min,
                      max);
}

void aml_qword_memory(struct aml *a, enum aml_mem_caching caching, uint64_t min, uint64_t max)
{
        address_space(a, RES_QWORD_ADDRESS, 8, RES_ADDRESS_TYPE_MEMORY, mem_flags(caching), min,
                      max);
}

void aml_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
        uint8_t b[8] = {RES_IO, RES_IO_DECODE16};

        if (max < min) {
                fail(a, -EINVAL);
                return;
        }
        put_le(b + 2, min, 2);
        put_le(b + 4, max, 2);
        b[6] = align;
        b[7] = len;
        aml_append(a, b, sizeof(b));
}

void aml_irq_no_flags(struct aml *a, uint8_t irq)
{
        uint8_t b[3] = {RES_IRQ_NO_FLAGS};

        if (irq > 15) {
                fail(a, -EINVAL);
                return;
        }
        put_le(b + 1, 1U << irq, 2);
        aml_append(a, b, sizeof(b));
}

void aml_interrupt(struct aml *a, unsigned flags, uint32_t gsi)
{
        const unsigned valid = AML_INTERRUPT_EDGE | AML_INTERRUPT_ACTIVE_LOW |
                               AML_INTERRUPT_SHARED | AML_INTERRUPT_WAKE;
        uint8_t b[9] = {RES_EXT_INTERRUPT};

        if (flags & ~valid) {
                fail(a, -EINVAL);
                return;
        }
        put_le(b + 1, 6, 2); /* flags, count and one 32-bit interrupt number */
        b[3] = (uint8_t)(RES_INTERRUPT_CONSUMER | flags);
        b[4] = 1;
        put_le(b + 5, gsi, 4);
        aml_append(a, b, sizeof(b));
}
