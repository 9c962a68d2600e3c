/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tidal/log.h"
#include "tidal/macro.h"
#include "virtio-mem/virtio-mem.h"
#include "vmm/layout.h"
#include "vmm/virtio/pci-modern.h"
#include "vmm/vm-internal.h"
#include "vmm/vm-virtio-mem.h"

/* Linux hot-adds memory that nothing onlines (no udev in many guests) unless told otherwise. */
/*
 * Online hot-added memory at once, and let the kernel choose the zone (auto-movable): movable,
 * so that it can be unplugged again, as long as movable memory stays within 301 % of the rest;
 * beyond that, normal. All-movable (online_movable) starves the kernel: the memmap of every
 * hot-added block and every page table come from boot memory, and a guest grown to 4x its
 * startup stops adding memory. Normal blocks may not unplug; the balloon covers those.
 */
#define MEMHP_OPTION  "memhp_default_state="
#define MEMHP_DEFAULT MEMHP_OPTION "online memory_hotplug.online_policy=auto-movable"

uint64_t vm_hotplug_region_size(const struct vm_config *cfg)
{
        if (!cfg->mem.dynamic || cfg->mem_ceiling <= cfg->memory)
                return 0;
        return ALIGN_UP(cfg->mem_ceiling - cfg->memory, LAYOUT_HOTPLUG_SIZE_ALIGN);
}

int vm_guest_mem_init(struct vm *vm)
{
        const struct vm_config *cfg = vm->vmm->cfg;
        uint64_t region = vm_hotplug_region_size(cfg);
        int r;

        r = guest_mem_plan(&vm->mem, cfg->memory, LAYOUT_PCI_HOLE_START);
        if (r >= 0 && region)
                r = guest_mem_plan_hotplug(&vm->mem, LAYOUT_HOTPLUG_BASE(guest_mem_end(&vm->mem)),
                                           region, VIRTIO_MEM_BLOCK_SIZE);
        if (r >= 0)
                r = guest_mem_map(&vm->mem, cfg->name);
        if (r < 0)
                return log_errno(r, "cannot allocate %llu MiB of guest RAM%s",
                                 (unsigned long long)(cfg->memory >> 20),
                                 region ? " and its hot-plug region" : "");
        /*
         * A reboot with dynamic memory may be admitted with less than startup, and then smart
         * paging pages boot RAM 4 KiB at a time: what tidal loads must not sit in huge pages.
         * Such a boot asks for them once it is admitted in full (vm.c) or paging has ended.
         */
        guest_mem_use_huge_pages(&vm->mem, vm->vmm->boots == 0 || !vm->vmm->mem.dynamic);
        return 0;
}

/* The guest-physical address width KVM gives the guest (CPUID 0x80000008 EAX[7:0]). */
static unsigned guest_phys_bits(const struct kvm_vm *kvm)
{
        const struct kvm_cpuid2 *c = kvm->supported_cpuid;

        for (unsigned i = 0; c && i < c->nent; i++)
                if (c->entries[i].function == 0x80000008 && (c->entries[i].eax & 0xff))
                        return c->entries[i].eax & 0xff;
        return 36; /* what a CPU without the leaf has */
}

int vm_setup_virtio_mem(struct vm *vm)
{
        const struct guest_mem_region *region = guest_mem_hotplug_region(&vm->mem);
        unsigned bits = guest_phys_bits(&vm->kvm);
        int r;

        if (!region)
                return 0;
        /* A region the guest cannot address would be hot-plug that never works: say so. */
        if (bits < 64 && region->gpa + region->size > UINT64_C(1) << bits) {
                vm->config_error = true;
                return log_error("--memory: a ceiling of %llu MiB puts hot-added memory up to "
                                 "0x%llx, beyond the %u address bits this host gives guests",
                                 (unsigned long long)(vm->vmm->cfg->mem_ceiling >> 20),
                                 (unsigned long long)(region->gpa + region->size), bits),
                       -ERANGE;
        }
        r = virtio_mem_new(NULL, &vm->mem, &vm->vmem);
        if (r < 0)
                return log_errno(r, "cannot create the virtio-mem device");
        r = virtio_pci_create(&vm->pci, &vm->kvm, vm->vmm->loop, &vm->mem,
                              virtio_mem_virtio_dev(vm->vmem), NULL);
        if (r < 0)
                return log_errno(r, "cannot attach virtio-mem to PCI");
        log_debug("virtio-mem: %llu MiB at 0x%llx", (unsigned long long)(region->size >> 20),
                  (unsigned long long)region->gpa);
        return 0;
}

char *vm_guest_cmdline(const struct vm_config *cfg)
{
        char *s = NULL;
        int n;

        if (!vm_hotplug_region_size(cfg) || strstr(cfg->cmdline, MEMHP_OPTION))
                return strdup(cfg->cmdline);
        n = asprintf(&s, "%s%s" MEMHP_DEFAULT, cfg->cmdline, cfg->cmdline[0] ? " " : "");
        return n < 0 ? NULL : s;
}
