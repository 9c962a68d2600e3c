/* SPDX-License-Identifier: GPL-2.0-or-later */
/* CPU state at the Linux 64-bit entry point (boot.rst, "64-bit Boot Protocol"). */
#pragma once

#include <stdint.h>

/* __BOOT_CS and __BOOT_DS: flat 4 GiB segments the kernel expects at entry. */
#define BOOT_CS_SELECTOR 0x10
#define BOOT_DS_SELECTOR 0x18
#define BOOT_GDT_ENTRIES 4
#define BOOT_GDT_CODE64  0x00af9b000000ffffULL /* present, DPL0, code, exec/read, L=1, G=1 */
#define BOOT_GDT_DATA    0x00cf93000000ffffULL /* present, DPL0, data, read/write, D/B=1, G=1 */

#define X86_CR0_PE   0x1ULL
#define X86_CR0_ET   0x10ULL
#define X86_CR0_NE   0x20ULL
#define X86_CR0_PG   0x80000000ULL
#define X86_CR4_PAE  0x20ULL
#define X86_EFER_LME 0x100ULL
#define X86_EFER_LMA 0x400ULL
