/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "tidal/hw-virt.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "vmm/kvm/kvm.h"

/* Intel VMX needs these below 4 GiB for real-mode emulation; they sit above the LAPIC. */
#define KVM_TSS_ADDR          0xfffbd000UL
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL

struct required_cap {
        int cap;
        const char *what;
};

static const struct required_cap required_caps[] = {
        {KVM_CAP_IRQCHIP, "in-kernel irqchip"},
        {KVM_CAP_PIT2, "in-kernel PIT"},
        {KVM_CAP_USER_MEMORY, "user memory slots"},
        {KVM_CAP_IRQ_ROUTING, "GSI routing"},
        {KVM_CAP_IRQFD, "irqfd"},
        {KVM_CAP_IOEVENTFD, "ioeventfd"},
        {KVM_CAP_EXT_CPUID, "KVM_GET_SUPPORTED_CPUID"},
        {KVM_CAP_SET_TSS_ADDR, "KVM_SET_TSS_ADDR"},
        {KVM_CAP_MP_STATE, "MP state"},
};

static int check_caps(int sys_fd, const char **why)
{
        for (size_t i = 0; i < ARRAY_SIZE(required_caps); i++) {
                if (ioctl(sys_fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
                        *why = required_caps[i].what;
                        return -EOPNOTSUPP;
                }
        }
        return 0;
}

static int get_supported_cpuid(int sys_fd, struct kvm_cpuid2 **ret)
{
        /* The table size is not known up front: grow until KVM stops saying E2BIG. */
        for (unsigned nent = 64; nent <= 4096; nent *= 2) {
                struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
                if (!c)
                        return -ENOMEM;
                c->nent = nent;
                if (ioctl(sys_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
                        *ret = c;
                        return 0;
                }
                free(c);
                if (errno != E2BIG)
                        return -errno;
        }
        return -E2BIG;
}

static int create_vm(struct kvm_vm *vm, const char **why)
{
        struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
        uint64_t identity = KVM_IDENTITY_MAP_ADDR;

        vm->vm_fd = ioctl(vm->sys_fd, KVM_CREATE_VM, 0);
        if (vm->vm_fd < 0) {
                *why = "KVM_CREATE_VM failed";
                return -errno;
        }
        if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0) {
                *why = "KVM_SET_TSS_ADDR failed";
                return -errno;
        }
        if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0 && errno != EINVAL) {
                *why = "KVM_SET_IDENTITY_MAP_ADDR failed";
                return -errno;
        }
        if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP) < 0) {
                *why = "KVM_CREATE_IRQCHIP failed";
                return -errno;
        }
        if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
                *why = "KVM_CREATE_PIT2 failed";
                return -errno;
        }
        return 0;
}

int kvm_vm_open(struct kvm_vm *vm, const char **why)
{
        int r;

        memset(vm, 0, sizeof(*vm));
        vm->vm_fd = -1;
        pthread_mutex_init(&vm->routing_lock, NULL);
        *why = NULL;

        vm->sys_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (vm->sys_fd < 0) {
                r = -errno;
                *why = "cannot open /dev/kvm";
                goto fail;
        }
        if (ioctl(vm->sys_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
                r = -EOPNOTSUPP;
                *why = "unsupported KVM API version";
                goto fail;
        }
        r = check_caps(vm->sys_fd, why);
        if (r < 0)
                goto fail;
        if (!cpu_has_hw_virt())
                log_warn("this /dev/kvm has no hardware virtualization under it (no VMX/SVM: a "
                         "paravirtual KVM such as PVM); a stock guest kernel will not boot on it "
                         "(use the nested rig, tests/rig/run)");
        vm->vcpu_mmap_size = ioctl(vm->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
        if (vm->vcpu_mmap_size <= 0) {
                r = -errno;
                *why = "KVM_GET_VCPU_MMAP_SIZE failed";
                goto fail;
        }
        r = get_supported_cpuid(vm->sys_fd, &vm->supported_cpuid);
        if (r < 0) {
                *why = "KVM_GET_SUPPORTED_CPUID failed";
                goto fail;
        }
        r = create_vm(vm, why);
        if (r < 0)
                goto fail;
        return 0;
fail:
        kvm_vm_close(vm);
        return r;
}

void kvm_vm_close(struct kvm_vm *vm)
{
        if (vm->vm_fd >= 0)
                close(vm->vm_fd);
        if (vm->sys_fd > 0)
                close(vm->sys_fd);
        free(vm->supported_cpuid);
        pthread_mutex_destroy(&vm->routing_lock);
        vm->vm_fd = vm->sys_fd = -1;
        vm->supported_cpuid = NULL;
}

int kvm_vm_map_memory(struct kvm_vm *vm, const struct guest_mem *gm)
{
        for (unsigned i = 0; i < gm->nr_regions; i++) {
                const struct guest_mem_region *r = &gm->regions[i];
                struct kvm_userspace_memory_region slot = {
                        .slot = i,
                        .guest_phys_addr = r->gpa,
                        .memory_size = r->size,
                        .userspace_addr = (uintptr_t)r->hva,
                };
                if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
                        return -errno;
        }
        return 0;
}
