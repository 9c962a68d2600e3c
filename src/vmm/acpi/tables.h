/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The ACPI tables tidal gives a guest booted without firmware: RSDP -> XSDT -> FADT (hardware
 * reduced, with sleep control/status and reset registers) -> DSDT (\_S5, \_SB.PCI0, COM1), and
 * the MADT (local APICs, I/O APIC, ISA overrides, LINT1 NMI). See docs/acpi.md.
 */
#pragma once

#include <stdint.h>

/* vCPUs the MADT can describe with xAPIC entries: APIC IDs 0..254 (255 is the broadcast ID). */
#define ACPI_MAX_CPUS 255

/* Room all tables need for ACPI_MAX_CPUS and a 64-bit window, with margin; under 4 KiB. */
#define ACPI_TABLES_MAX_SIZE 0x1000

struct acpi_config {
        unsigned nr_cpus;         /* 1..ACPI_MAX_CPUS; APIC IDs 0..nr_cpus-1 */
        uint64_t pci_mmio64_base; /* 0 = no 64-bit window */
        uint64_t pci_mmio64_size;
};

/*
 * Writes all tables into buf (guest-physical address buf_gpa, buf_size bytes, e.g. the
 * LAYOUT_ACPI_ADDR area), zeroing the rest of it, with the RSDP at buf_gpa, and returns the
 * RSDP's guest-physical address. 0, -EINVAL (bad config, buf_gpa not 16-byte aligned), or
 * -ENOSPC (buf too small).
 */
int acpi_build_tables(void *buf, uint64_t buf_size, uint64_t buf_gpa, const struct acpi_config *cfg,
                      uint64_t *ret_rsdp_gpa);
