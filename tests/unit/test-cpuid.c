/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <stdlib.h>

#include "vmm/kvm/cpuid.h"

static struct kvm_cpuid2 *table(void)
{
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 6 * sizeof(c->entries[0]));

        c->nent = 6;
        c->entries[0] =
                (struct kvm_cpuid_entry2){.function = 1, .ebx = 0xff0a0800, .ecx = 0x1, .edx = 0x0};
        c->entries[1] = (struct kvm_cpuid_entry2){.function = 0xb, .index = 0};
        c->entries[2] = (struct kvm_cpuid_entry2){.function = 0xb, .index = 1};
        c->entries[3] = (struct kvm_cpuid_entry2){.function = 0x80000008, .ecx = 0xffff};
        c->entries[4] = (struct kvm_cpuid_entry2){.function = 0x8000001e, .ebx = 0x1ff};
        c->entries[5] = (struct kvm_cpuid_entry2){.function = 0x7, .ebx = 0x12345678};
        return c;
}

static void apic_ids_and_counts(void **state)
{
        struct kvm_cpuid2 *sup = table();
        struct kvm_cpuid2 *c = cpuid_for_vcpu(sup, 5, 6);

        assert_non_null(c);
        assert_int_equal(c->entries[0].ebx >> 24, 5);
        assert_int_equal((c->entries[0].ebx >> 16) & 0xff, 6);
        assert_int_equal(c->entries[0].ebx & 0xffff, 0x0800); /* clflush etc. kept */
        assert_true(c->entries[0].ecx & (1u << 31));          /* hypervisor */
        assert_true(c->entries[0].ecx & 1);                   /* other features kept */
        assert_true(c->entries[0].edx & (1u << 28));          /* HTT with >1 logical CPU */
        assert_int_equal(c->entries[1].edx, 5);
        assert_int_equal(c->entries[1].ebx, 1);
        assert_int_equal(c->entries[2].ebx, 6);
        assert_int_equal(c->entries[2].eax, 3); /* 6 CPUs need 3 bits */
        assert_int_equal((c->entries[2].ecx >> 8) & 0xff, 2);
        assert_int_equal(c->entries[3].ecx & 0xff, 5);
        assert_int_equal((c->entries[3].ecx >> 12) & 0xf, 3);
        assert_int_equal(c->entries[4].eax, 5);
        assert_int_equal(c->entries[5].ebx, 0x12345678); /* untouched leaves stay */
        /* The supported table itself is not modified. */
        assert_int_equal(sup->entries[0].ebx, 0xff0a0800);
        free(c);
        free(sup);
}

static void single_cpu(void **state)
{
        struct kvm_cpuid2 *sup = table();
        struct kvm_cpuid2 *c;

        sup->entries[0].edx = 1u << 28;
        c = cpuid_for_vcpu(sup, 0, 1);
        assert_int_equal(c->entries[0].ebx >> 24, 0);
        assert_false(c->entries[0].edx & (1u << 28));
        assert_int_equal(c->entries[2].eax, 0);
        assert_int_equal(c->entries[3].ecx & 0xff, 0);
        free(c);
        free(sup);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(apic_ids_and_counts),
                cmocka_unit_test(single_cpu),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
