/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdlib.h>
#include <string.h>

#include "vmm/kvm/cpuid.h"

#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT        (1u << 28)
#define CPUID_TOPO_SMT         1u
#define CPUID_TOPO_CORE        2u

/* Bits of APIC ID needed to number n things. */
static unsigned id_bits(unsigned n)
{
        unsigned bits = 0;

        while ((1u << bits) < n)
                bits++;
        return bits;
}

static void fix_leaf1(struct kvm_cpuid_entry2 *e, unsigned apic_id, unsigned nr_cpus)
{
        e->ebx = (e->ebx & 0x0000ffffu) | (apic_id << 24) | ((nr_cpus & 0xffu) << 16);
        e->ecx |= CPUID_1_ECX_HYPERVISOR;
        if (nr_cpus > 1)
                e->edx |= CPUID_1_EDX_HTT;
        else
                e->edx &= ~CPUID_1_EDX_HTT;
}

/* Leaves 0xb and 0x1f: x2APIC topology, one thread per core, nr_cpus cores per package. */
static void fix_topology_leaf(struct kvm_cpuid_entry2 *e, unsigned apic_id, unsigned nr_cpus)
{
        e->edx = apic_id;
        switch (e->index) {
        case 0:
                e->eax = 0;
                e->ebx = 1;
                e->ecx = (CPUID_TOPO_SMT << 8) | 0;
                break;
        case 1:
                e->eax = id_bits(nr_cpus);
                e->ebx = nr_cpus;
                e->ecx = (CPUID_TOPO_CORE << 8) | 1;
                break;
        default:
                e->eax = 0;
                e->ebx = 0;
                e->ecx = e->index;
                break;
        }
}

static void fix_entry(struct kvm_cpuid_entry2 *e, unsigned apic_id, unsigned nr_cpus)
{
        switch (e->function) {
        case 0x1:
                fix_leaf1(e, apic_id, nr_cpus);
                break;
        case 0x4:
                /* Intel: cores per package - 1 in EAX[31:26]. */
                e->eax = (e->eax & 0x03ffffffu) | (((nr_cpus - 1) & 0x3fu) << 26);
                break;
        case 0xb:
        case 0x1f:
                fix_topology_leaf(e, apic_id, nr_cpus);
                break;
        case 0x80000008:
                /* AMD: NC (cores - 1) and the APIC ID size for them. */
                e->ecx = (e->ecx & ~0xf0ffu) | ((nr_cpus - 1) & 0xffu) | (id_bits(nr_cpus) << 12);
                break;
        case 0x8000001e:
                e->eax = apic_id;
                e->ebx = (e->ebx & ~0xffu) | (apic_id & 0xffu); /* core id, 1 thread per core */
                e->ebx &= ~0xff00u;
                e->ecx &= ~0x7ffu; /* node 0, one node per package */
                break;
        default:
                break;
        }
}

struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *supported, unsigned apic_id,
                                  unsigned nr_cpus)
{
        size_t size = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
        struct kvm_cpuid2 *c = malloc(size);

        if (!c)
                return NULL;
        memcpy(c, supported, size);
        for (unsigned i = 0; i < c->nent; i++)
                fix_entry(&c->entries[i], apic_id, nr_cpus);
        return c;
}
