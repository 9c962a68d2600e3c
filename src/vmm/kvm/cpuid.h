/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <linux/kvm.h>

/*
 * The CPUID table for vCPU apic_id of nr_cpus: what KVM supports, with the APIC IDs and the
 * topology (all vCPUs are cores of one socket, one thread each) filled in and the hypervisor
 * bit set. Pure, for unit tests. Returns a malloc'ed copy or NULL.
 */
struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *supported, unsigned apic_id,
                                  unsigned nr_cpus);
