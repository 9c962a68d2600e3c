/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Kept apart from kvm.c so unit tests of devices can link their own versions of these. */
#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "tidal/macro.h"
#include "vmm/kvm/irq.h"
#include "vmm/kvm/kvm.h"
#include "vmm/layout.h"

int kvm_irq_line(struct kvm_vm *vm, uint32_t gsi, bool level)
{
        struct kvm_irq_level irq = {.irq = gsi, .level = level};

        if (gsi >= LAYOUT_NR_IOAPIC_PINS)
                return -EINVAL;
        if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
                return -errno;
        return 0;
}

/*
 * KVM_SET_GSI_ROUTING replaces the whole table, so the legacy entries KVM installs when the
 * irqchip is created (PIC + IOAPIC for 0..15, IOAPIC for 16..23, the PIT's IRQ 0 on pin 2) are
 * rebuilt here next to the MSI routes.
 */
static unsigned add_legacy_routes(struct kvm_irq_routing_entry *e)
{
        unsigned n = 0;

        for (uint32_t gsi = 0; gsi < LAYOUT_NR_IOAPIC_PINS; gsi++) {
                if (gsi < 16) {
                        e[n++] = (struct kvm_irq_routing_entry){
                                .gsi = gsi,
                                .type = KVM_IRQ_ROUTING_IRQCHIP,
                                .u.irqchip = {.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
                                                                 : KVM_IRQCHIP_PIC_SLAVE,
                                              .pin = gsi % 8},
                        };
                }
                e[n++] = (struct kvm_irq_routing_entry){
                        .gsi = gsi,
                        .type = KVM_IRQ_ROUTING_IRQCHIP,
                        .u.irqchip = {.irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi == 0 ? 2 : gsi},
                };
        }
        return n;
}

/* Caller holds routing_lock. */
static int commit_routes(struct kvm_vm *vm)
{
        const unsigned max = 16 + LAYOUT_NR_IOAPIC_PINS + KVM_MAX_GSI;
        _cleanup_free_ struct kvm_irq_routing *table =
                calloc(1, sizeof(*table) + max * sizeof(table->entries[0]));
        unsigned n;

        if (!table)
                return -ENOMEM;
        n = add_legacy_routes(table->entries);
        for (uint32_t gsi = KVM_FIRST_MSI_GSI; gsi < KVM_MAX_GSI; gsi++) {
                if (vm->msi_used[gsi] && vm->msi_route_valid[gsi])
                        table->entries[n++] = vm->msi_routes[gsi];
        }
        table->nr = n;
        if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, table) < 0)
                return -errno;
        return 0;
}

int kvm_msi_route_alloc(struct kvm_vm *vm, uint32_t *ret_gsi)
{
        int r = -ENOSPC;

        pthread_mutex_lock(&vm->routing_lock);
        for (uint32_t gsi = KVM_FIRST_MSI_GSI; gsi < KVM_MAX_GSI; gsi++) {
                if (vm->msi_used[gsi])
                        continue;
                vm->msi_used[gsi] = true;
                vm->msi_route_valid[gsi] = false;
                *ret_gsi = gsi;
                r = 0;
                break;
        }
        pthread_mutex_unlock(&vm->routing_lock);
        return r;
}

int kvm_msi_route_set(struct kvm_vm *vm, uint32_t gsi, const struct msi_msg *msg)
{
        int r;

        if (gsi < KVM_FIRST_MSI_GSI || gsi >= KVM_MAX_GSI)
                return -EINVAL;
        pthread_mutex_lock(&vm->routing_lock);
        if (!vm->msi_used[gsi]) {
                pthread_mutex_unlock(&vm->routing_lock);
                return -ENOENT;
        }
        vm->msi_routes[gsi] = (struct kvm_irq_routing_entry){
                .gsi = gsi,
                .type = KVM_IRQ_ROUTING_MSI,
                .u.msi = {.address_lo = (uint32_t)msg->address,
                          .address_hi = (uint32_t)(msg->address >> 32),
                          .data = msg->data},
        };
        vm->msi_route_valid[gsi] = true;
        r = commit_routes(vm);
        pthread_mutex_unlock(&vm->routing_lock);
        return r;
}

void kvm_msi_route_free(struct kvm_vm *vm, uint32_t gsi)
{
        if (gsi < KVM_FIRST_MSI_GSI || gsi >= KVM_MAX_GSI)
                return;
        pthread_mutex_lock(&vm->routing_lock);
        if (vm->msi_used[gsi] && vm->msi_route_valid[gsi]) {
                vm->msi_route_valid[gsi] = false;
                (void)commit_routes(vm);
        }
        vm->msi_used[gsi] = false;
        pthread_mutex_unlock(&vm->routing_lock);
}

int kvm_irqfd(struct kvm_vm *vm, int eventfd, uint32_t gsi, bool assign)
{
        struct kvm_irqfd irqfd = {
                .fd = (uint32_t)eventfd,
                .gsi = gsi,
                .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
        };

        if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
                return -errno;
        return 0;
}

int kvm_ioeventfd(struct kvm_vm *vm, uint64_t addr, uint32_t len, int eventfd, bool mmio,
                  bool assign)
{
        struct kvm_ioeventfd io = {
                .addr = addr,
                .len = len,
                .fd = eventfd,
                .flags = (mmio ? 0 : KVM_IOEVENTFD_FLAG_PIO) |
                         (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
        };

        if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
                return -errno;
        return 0;
}
