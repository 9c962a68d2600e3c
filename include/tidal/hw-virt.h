/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Whether this CPU offers hardware virtualization (Intel VMX or AMD SVM) to the host.
 *
 * A /dev/kvm can exist without it: PVM (kvm_pvm, "pagetable-based virtual machine") provides
 * one inside cloud VMs that have no nested virtualization. It runs only guest kernels built
 * for PVM; a stock kernel crawls under it (the bzImage's decompressor did not finish in 150 s)
 * or stops on an instruction its emulator lacks. tidal warns there, and the tests treat such a
 * host as one without KVM and use the nested rig.
 */
#pragma once

#include <cpuid.h>
#include <stdbool.h>

#define CPUID_1_ECX_VMX        (1u << 5)
#define CPUID_80000001_ECX_SVM (1u << 2)

static inline bool cpu_has_hw_virt(void)
{
        unsigned a, b, c, d;

        if (__get_cpuid(1, &a, &b, &c, &d) && (c & CPUID_1_ECX_VMX))
                return true;
        return __get_cpuid(0x80000001, &a, &b, &c, &d) && (c & CPUID_80000001_ECX_SVM);
}
