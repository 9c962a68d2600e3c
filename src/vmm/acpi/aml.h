/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A small builder for ACPI Machine Language (ACPI 6.x, chapter 20 "ACPI Machine Language
 * Specification" and 6.4 "Resource Data Types for ACPI"), enough for tidal's DSDT.
 *
 * Errors are sticky: every emitter is a no-op once one has failed, and aml_error() reports the
 * first failure (-ENOSPC: caller's buffer full, -ENOMEM, -EINVAL: bad name/string/EISA ID or
 * misnested containers, -E2BIG: a container longer than PkgLength can encode). So a whole
 * object tree is emitted without checking each call, and checked once at the end.
 *
 * Containers whose length precedes their contents (Scope, Device, Method, Package, Buffer,
 * ResourceTemplate) are opened with *_begin(), which returns a handle, and closed with
 * aml_end(); the length prefix is inserted then, so they nest freely.
 *
 * Name paths are ASL-style: "\\_SB.PCI0", "^^COM1", "_S5". Segments shorter than four
 * characters are padded with '_' like iasl does; lower case is rejected.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
        uint8_t *data;
        size_t len;
        size_t cap;
        bool fixed; /* caller's buffer, never reallocated */
        int error;  /* first error, 0 while none */
};

/* What aml_end() has to close. */
enum aml_container {
        AML_CONTAINER_PKG,               /* PkgLength only: Scope, Device, Method, Package */
        AML_CONTAINER_BUFFER,            /* PkgLength and BufferSize */
        AML_CONTAINER_RESOURCE_TEMPLATE, /* EndTag, then as a Buffer */
};

struct aml_pkg {
        size_t start; /* offset the PkgLength is inserted at */
        enum aml_container kind;
};

/* Largest value a 4-byte PkgLength holds (28 bits); it counts its own bytes. */
#define AML_PKGLENGTH_MAX 0x0fffffffU

/* Growable, heap-backed builder; release with aml_release(). */
void aml_init(struct aml *a);
/* Builder writing into buf; running out of room is -ENOSPC. */
void aml_init_fixed(struct aml *a, void *buf, size_t size);
void aml_release(struct aml *a);
/* 0, or the first error. */
int aml_error(const struct aml *a);

/*
 * Encodes a PkgLength for `content` bytes following it. Returns the number of bytes written to
 * out (1..4), or -E2BIG.
 */
int aml_pkglength_encode(size_t content, uint8_t out[static 4]);

/* Raw bytes, for anything not covered below. */
void aml_append(struct aml *a, const void *data, size_t n);
void aml_byte(struct aml *a, uint8_t b);

/* NameString: root/parent prefixes, NullName, NameSeg, DualNamePath, MultiNamePath. */
void aml_name_path(struct aml *a, const char *path);
/* The shortest of ZeroOp, OneOp, ByteConst, WordConst, DWordConst, QWordConst. */
void aml_integer(struct aml *a, uint64_t v);
/* String object; characters 0x01..0x7f only. */
void aml_string(struct aml *a, const char *s);
/* EisaId("PNP0A08"): the compressed 32-bit EISA ID as a DWordConst. */
void aml_eisaid(struct aml *a, const char *id);

/* Name (path, <object emitted next>) */
void aml_name(struct aml *a, const char *path);
void aml_name_integer(struct aml *a, const char *path, uint64_t v);
void aml_name_string(struct aml *a, const char *path, const char *s);
void aml_name_eisaid(struct aml *a, const char *path, const char *id);

struct aml_pkg aml_scope_begin(struct aml *a, const char *path);
struct aml_pkg aml_device_begin(struct aml *a, const char *path);
/* nr_args 0..7; serialized methods get SyncLevel 0. */
struct aml_pkg aml_method_begin(struct aml *a, const char *path, unsigned nr_args, bool serialized);
/* Package (nr_elements) { <nr_elements objects emitted next> } */
struct aml_pkg aml_package_begin(struct aml *a, uint8_t nr_elements);
/* Buffer () { <bytes appended next> }; the size is filled in by aml_end(). */
struct aml_pkg aml_buffer_begin(struct aml *a);
/* ResourceTemplate () { <descriptors> }; aml_end() adds the EndTag. */
struct aml_pkg aml_resource_template_begin(struct aml *a);
void aml_end(struct aml *a, struct aml_pkg pkg);

/* Return (<TermArg emitted next>) */
void aml_return(struct aml *a);

/*
 * Resource descriptors, for use inside a ResourceTemplate. The address space descriptors
 * describe fixed windows a bridge produces (ResourceProducer, PosDecode, MinFixed, MaxFixed,
 * granularity and translation 0, length max - min + 1); -EINVAL if max < min.
 */
enum aml_mem_caching {
        AML_MEM_NON_CACHEABLE = 0,
        AML_MEM_CACHEABLE = 1,
        AML_MEM_WRITE_COMBINING = 2,
        AML_MEM_PREFETCHABLE = 3,
};

void aml_word_bus_number(struct aml *a, uint16_t min, uint16_t max);
/* WordIO (..., EntireRange, TypeStatic, DenseTranslation) */
void aml_word_io(struct aml *a, uint16_t min, uint16_t max);
/* DWordMemory/QWordMemory (..., ReadWrite, AddressRangeMemory, TypeStatic) */
void aml_dword_memory(struct aml *a, enum aml_mem_caching caching, uint32_t min, uint32_t max);
void aml_qword_memory(struct aml *a, enum aml_mem_caching caching, uint64_t min, uint64_t max);
/* IO (Decode16, min, max, align, len): a port range the device itself consumes. */
void aml_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
/* IRQNoFlags () {irq}: ISA IRQ 0..15, edge triggered, active high, exclusive. */
void aml_irq_no_flags(struct aml *a, uint8_t irq);

/* Flags of an Extended Interrupt descriptor; 0 is Level, ActiveHigh, Exclusive. */
enum {
        AML_INTERRUPT_EDGE = 1 << 1,
        AML_INTERRUPT_ACTIVE_LOW = 1 << 2,
        AML_INTERRUPT_SHARED = 1 << 3,
        AML_INTERRUPT_WAKE = 1 << 4,
};
/* Interrupt (ResourceConsumer, ...) {gsi} */
void aml_interrupt(struct aml *a, unsigned flags, uint32_t gsi);
