/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The KVM virtual machine: /dev/kvm, the VM fd, memslots over guest RAM, the in-kernel
 * irqchip and PIT, and the GSI routing table used for MSI routes.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "tidal/guest-mem.h"

#define KVM_MAX_GSI       256
#define KVM_FIRST_MSI_GSI 24 /* 0..23 are the IOAPIC pins */

struct kvm_vm {
        int sys_fd; /* /dev/kvm */
        int vm_fd;
        int vcpu_mmap_size;
        struct kvm_cpuid2 *supported_cpuid;

        /* GSI routing: IOAPIC/PIC defaults plus MSI routes, committed as a whole. */
        pthread_mutex_t routing_lock;
        bool msi_used[KVM_MAX_GSI];
        struct kvm_irq_routing_entry msi_routes[KVM_MAX_GSI];
        bool msi_route_valid[KVM_MAX_GSI];
};

/*
 * Opens /dev/kvm (-ENOENT/-EACCES mean: no KVM here), checks the API version and the
 * capabilities tidal needs, creates the VM with irqchip and PIT. 0 or -errno; on failure
 * *why points at a static description of what was missing.
 */
int kvm_vm_open(struct kvm_vm *vm, const char **why);
void kvm_vm_close(struct kvm_vm *vm);

/* Registers every region of gm as a memslot. */
int kvm_vm_map_memory(struct kvm_vm *vm, const struct guest_mem *gm);
