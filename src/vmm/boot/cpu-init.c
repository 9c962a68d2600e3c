/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <string.h>

#include "vmm/boot/boot.h"
#include "vmm/boot/cpu-init.h"
#include "vmm/layout.h"

#define PTE_PRESENT 0x1ULL
#define PTE_WRITE   0x2ULL
#define PTE_HUGE    0x80ULL /* 2 MiB page in a PD entry */

/*
 * Linux's 64-bit entry wants paging on with the kernel, the zero page and the command line
 * identity-mapped; it builds its own tables right away. Mapping the whole first 4 GiB with
 * 2 MiB pages takes six pages and covers any placement.
 */
static int write_page_tables(struct guest_mem *gm)
{
        uint64_t *pml4 = guest_mem_ptr(gm, LAYOUT_PML4_ADDR, 4096);
        uint64_t *pdpt = guest_mem_ptr(gm, LAYOUT_PDPT_ADDR, 4096);
        uint64_t *pd = guest_mem_ptr(gm, LAYOUT_PD_ADDR, 4 * 4096);

        if (!pml4 || !pdpt || !pd)
                return -ENOSPC;
        memset(pml4, 0, 4096);
        memset(pdpt, 0, 4096);
        pml4[0] = LAYOUT_PDPT_ADDR | PTE_PRESENT | PTE_WRITE;
        for (uint64_t i = 0; i < 4; i++)
                pdpt[i] = (LAYOUT_PD_ADDR + i * 4096) | PTE_PRESENT | PTE_WRITE;
        for (uint64_t i = 0; i < 4 * 512; i++)
                pd[i] = (i << 21) | PTE_PRESENT | PTE_WRITE | PTE_HUGE;
        return 0;
}

static int write_gdt(struct guest_mem *gm)
{
        uint64_t *gdt = guest_mem_ptr(gm, LAYOUT_GDT_ADDR, BOOT_GDT_ENTRIES * sizeof(uint64_t));

        if (!gdt)
                return -ENOSPC;
        gdt[0] = 0;
        gdt[1] = 0;
        gdt[BOOT_CS_SELECTOR / 8] = BOOT_GDT_CODE64;
        gdt[BOOT_DS_SELECTOR / 8] = BOOT_GDT_DATA;
        return 0;
}

/*
 * With hardware-reduced ACPI and no EFI, Linux reboots "through the BIOS": it drops to real mode
 * and jumps to the reset vector. There is no BIOS, so tidal puts three instructions there that
 * write the ACPI reset register, which tidal turns into a reboot:
 *   mov dx, LAYOUT_PORT_ACPI_RESET; mov al, LAYOUT_ACPI_RESET_VALUE; out dx, al; hlt; jmp $-1
 */
static int write_reset_vector(struct guest_mem *gm)
{
        const uint8_t reset_code[] = {
                0xba,
                LAYOUT_PORT_ACPI_RESET & 0xff,
                LAYOUT_PORT_ACPI_RESET >> 8,
                0xb0,
                LAYOUT_ACPI_RESET_VALUE,
                0xee,
                0xf4,
                0xeb,
                0xfd,
        };
        uint8_t *dst = guest_mem_ptr(gm, LAYOUT_RESET_VECTOR, sizeof(reset_code));

        if (!dst)
                return -ENOSPC;
        memcpy(dst, reset_code, sizeof(reset_code));
        return 0;
}

int boot_write_cpu_tables(struct guest_mem *gm)
{
        int r = write_page_tables(gm);

        if (r >= 0)
                r = write_gdt(gm);
        if (r >= 0)
                r = write_reset_vector(gm);
        return r;
}
