/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <asm/bootparam.h>

#include "tidal/macro.h"
#include "vmm/boot/boot.h"
#include "vmm/layout.h"

#define E820_TYPE_RAM      1
#define E820_TYPE_RESERVED 2

static void e820_add(struct e820_map *map, uint64_t addr, uint64_t size, uint32_t type)
{
        if (size == 0 || map->nr == BOOT_E820_MAX)
                return;
        map->entries[map->nr++] =
                (struct boot_e820_entry){.addr = addr, .size = size, .type = type};
}

/*
 * RAM below 640 KiB, the EBDA and BIOS area (where the ACPI tables live) reserved, RAM from
 * 1 MiB to the PCI hole and from 4 GiB on. The 640 KiB-1 MiB part of the first memslot is
 * still backed by RAM; the guest simply does not use it as such. The hot-plug region is left
 * out: the guest learns of it from the virtio-mem device, and it starts unplugged.
 */
void e820_build(const struct guest_mem *gm, struct e820_map *map)
{
        map->nr = 0;
        for (unsigned i = 0; i < gm->nr_regions; i++) {
                const struct guest_mem_region *r = &gm->regions[i];
                uint64_t end = r->gpa + r->size;

                if (r->hotplug)
                        continue;
                if (r->gpa != 0) {
                        e820_add(map, r->gpa, r->size, E820_TYPE_RAM);
                        continue;
                }
                e820_add(map, 0, MIN(end, LAYOUT_EBDA_START), E820_TYPE_RAM);
                if (end <= LAYOUT_HIGH_MEM_START)
                        continue;
                e820_add(map, LAYOUT_EBDA_START, 0xa0000 - LAYOUT_EBDA_START, E820_TYPE_RESERVED);
                e820_add(map, LAYOUT_ACPI_ADDR, LAYOUT_HIGH_MEM_START - LAYOUT_ACPI_ADDR,
                         E820_TYPE_RESERVED);
                e820_add(map, LAYOUT_HIGH_MEM_START, end - LAYOUT_HIGH_MEM_START, E820_TYPE_RAM);
        }
}
