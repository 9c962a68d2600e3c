/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Interrupts and notifications through KVM: the in-kernel IOAPIC for legacy lines (the UART),
 * MSI routes + irqfds for virtio MSI-X vectors, ioeventfds for virtqueue notifications.
 * All functions return 0 or a negative errno and may be called from any thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct kvm_vm;

struct msi_msg {
        uint64_t address;
        uint32_t data;
};

/* Sets the level of an IOAPIC input (GSI 0..23). */
int kvm_irq_line(struct kvm_vm *vm, uint32_t gsi, bool level);

/* Reserves a GSI for an MSI route (initially pointing nowhere). */
int kvm_msi_route_alloc(struct kvm_vm *vm, uint32_t *ret_gsi);
/* Points the route at msg and commits the routing table. */
int kvm_msi_route_set(struct kvm_vm *vm, uint32_t gsi, const struct msi_msg *msg);
void kvm_msi_route_free(struct kvm_vm *vm, uint32_t gsi);

/* Binds (assign) or unbinds an eventfd to a GSI: a write to it injects the interrupt. */
int kvm_irqfd(struct kvm_vm *vm, int eventfd, uint32_t gsi, bool assign);

/*
 * Binds (assign) or unbinds an eventfd that KVM signals on a guest write of len bytes (0: any
 * length) at addr, in MMIO space (mmio) or port space, without leaving the kernel.
 */
int kvm_ioeventfd(struct kvm_vm *vm, uint64_t addr, uint32_t len, int eventfd, bool mmio,
                  bool assign);
