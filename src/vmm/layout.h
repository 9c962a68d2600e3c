/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The guest-physical and port address map tidal gives every guest. One place, so the boot code,
 * the ACPI tables, the e820 map and the devices agree.
 */
#pragma once

/* Low memory used while booting (all inside the first 640 KiB of RAM). */
#define LAYOUT_GDT_ADDR         0x00000500ULL
#define LAYOUT_BOOT_PARAMS_ADDR 0x00007000ULL /* Linux "zero page" */
#define LAYOUT_PML4_ADDR        0x00009000ULL
#define LAYOUT_PDPT_ADDR        0x0000a000ULL
#define LAYOUT_PD_ADDR          0x0000b000ULL /* 4 pages: identity map of the first 4 GiB */
#define LAYOUT_CMDLINE_ADDR     0x00020000ULL
#define LAYOUT_CMDLINE_MAX      0x00010000ULL
#define LAYOUT_BOOT_STACK       0x0008ff00ULL
#define LAYOUT_EBDA_START       0x0009fc00ULL /* usable low RAM ends here */

/* 0xe0000-0xfffff: BIOS area, where Linux looks for the ACPI RSDP. */
#define LAYOUT_ACPI_ADDR 0x000e0000ULL
#define LAYOUT_ACPI_SIZE 0x00020000ULL

/* Where a CPU starts after reset (f000:fff0): Linux jumps here for its "BIOS" reboot. */
#define LAYOUT_RESET_VECTOR 0x000ffff0ULL

#define LAYOUT_HIGH_MEM_START 0x00100000ULL /* 1 MiB: kernel load address */

/* 32-bit PCI hole: RAM stops here and resumes at 4 GiB. */
#define LAYOUT_PCI_HOLE_START   0xc0000000ULL
#define LAYOUT_PCI_MMIO32_START 0xc0000000ULL
#define LAYOUT_PCI_MMIO32_SIZE  0x3ec00000ULL /* up to the IOAPIC */
#define LAYOUT_IOAPIC_ADDR      0xfec00000ULL
#define LAYOUT_LAPIC_ADDR       0xfee00000ULL
#define LAYOUT_4GIB             0x100000000ULL

/*
 * The hot-plug (virtio-mem) region, with dynamic memory: above all RAM and the PCI hole,
 * 1 GiB aligned as QEMU places its device memory, and a whole number of Linux memory blocks
 * (128 MiB on x86), the unit in which Linux adds hot-plugged memory.
 */
#define LAYOUT_HOTPLUG_ALIGN      0x40000000ULL
#define LAYOUT_HOTPLUG_SIZE_ALIGN 0x08000000ULL
#define LAYOUT_HOTPLUG_BASE(ram_end)                                                               \
        ((((ram_end) > LAYOUT_4GIB ? (ram_end) : LAYOUT_4GIB) + LAYOUT_HOTPLUG_ALIGN - 1) &        \
         ~(LAYOUT_HOTPLUG_ALIGN - 1))

/* Port I/O. */
#define LAYOUT_PORT_I8042_DATA         0x60
#define LAYOUT_PORT_I8042_CMD          0x64
#define LAYOUT_PORT_COM1               0x3f8
#define LAYOUT_IRQ_COM1                4
#define LAYOUT_PORT_PCI_CONFIG         0xcf8 /* 0xcf8 address, 0xcfc..0xcff data */
#define LAYOUT_PORT_ACPI_SLEEP_CONTROL 0x600 /* ACPI hardware-reduced sleep control register */
#define LAYOUT_PORT_ACPI_SLEEP_STATUS  0x601
#define LAYOUT_PORT_ACPI_RESET         0x602
#define LAYOUT_ACPI_RESET_VALUE        0x01
/* SLP_TYP tidal publishes in \_S5 (the value written to the sleep control register >> 2). */
#define LAYOUT_ACPI_S5_SLP_TYP 5
#define LAYOUT_NR_IOAPIC_PINS  24
