/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tidal/log.h"
#include "tidal/macro.h"
#include "tidal/thread.h"
#include "vmm/boot/cpu-init.h"
#include "vmm/bus.h"
#include "vmm/kvm/cpuid.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/layout.h"

#define MSR_IA32_MISC_ENABLE             0x000001a0
#define MSR_IA32_MISC_ENABLE_FAST_STRING 0x1ULL
#define APIC_LVT_LINT0                   0x350
#define APIC_LVT_LINT1                   0x360
#define APIC_MODE_NMI                    0x4
#define APIC_MODE_EXTINT                 0x7

static void kick_handler(int sig)
{
        /* Only here to interrupt KVM_RUN; immediate_exit covers the race before it. */
}

int vcpu_install_kick_handler(void)
{
        struct sigaction sa = {.sa_handler = kick_handler};

        sigemptyset(&sa.sa_mask);
        if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
                return -errno;
        return 0;
}

static int set_cpuid(struct vcpu *v, unsigned nr_cpus)
{
        _cleanup_free_ struct kvm_cpuid2 *cpuid =
                cpuid_for_vcpu(v->env->kvm->supported_cpuid, v->id, nr_cpus);

        if (!cpuid)
                return -ENOMEM;
        if (ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0)
                return -errno;
        return 0;
}

static int set_msrs(struct vcpu *v)
{
        struct {
                struct kvm_msrs hdr;
                struct kvm_msr_entry entries[1];
        } msrs = {
                .hdr.nmsrs = 1,
                .entries[0] = {.index = MSR_IA32_MISC_ENABLE,
                               .data = MSR_IA32_MISC_ENABLE_FAST_STRING},
        };

        if (ioctl(v->fd, KVM_SET_MSRS, &msrs) < 0)
                return -errno;
        return 0;
}

/* LINT0 as ExtINT and LINT1 as NMI, as firmware leaves them (the MADT says the same). */
static int set_lapic(struct vcpu *v)
{
        struct kvm_lapic_state lapic;
        uint32_t *lint0 = (uint32_t *)&lapic.regs[APIC_LVT_LINT0];
        uint32_t *lint1 = (uint32_t *)&lapic.regs[APIC_LVT_LINT1];

        if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
                return -errno;
        *lint0 = (*lint0 & ~0x700u) | (APIC_MODE_EXTINT << 8);
        *lint1 = (*lint1 & ~0x700u) | (APIC_MODE_NMI << 8);
        if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
                return -errno;
        return 0;
}

static int set_fpu(struct vcpu *v)
{
        struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};

        if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
                return -errno;
        return 0;
}

int vcpu_create(struct vcpu *v, const struct vcpu_env *env, unsigned id, unsigned nr_cpus)
{
        int r;

        memset(v, 0, sizeof(*v));
        v->id = id;
        v->env = env;
        v->fd = ioctl(env->kvm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
        if (v->fd < 0) {
                v->fd = -1;
                return -errno;
        }
        v->run = mmap(NULL, (size_t)env->kvm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                      v->fd, 0);
        if (v->run == MAP_FAILED) {
                v->run = NULL;
                return -errno;
        }
        r = set_cpuid(v, nr_cpus);
        if (r >= 0)
                r = set_msrs(v);
        if (r >= 0)
                r = set_lapic(v);
        if (r >= 0)
                r = set_fpu(v);
        return r;
}

static void flat_segment(struct kvm_segment *s, uint16_t selector, uint8_t type, bool code)
{
        *s = (struct kvm_segment){
                .base = 0,
                .limit = 0xffffffff,
                .selector = selector,
                .type = type,
                .present = 1,
                .s = 1,
                .l = code,
                .db = !code,
                .g = 1,
        };
}

int vcpu_setup_boot_cpu(struct vcpu *v, uint64_t entry, uint64_t boot_params)
{
        struct kvm_sregs sregs;
        struct kvm_regs regs = {
                .rflags = 0x2,
                .rip = entry,
                .rsi = boot_params,
                .rsp = LAYOUT_BOOT_STACK,
                .rbp = LAYOUT_BOOT_STACK,
        };

        if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
                return -errno;
        flat_segment(&sregs.cs, BOOT_CS_SELECTOR, 0xb, true);
        flat_segment(&sregs.ds, BOOT_DS_SELECTOR, 0x3, false);
        sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
        /* VMX insists on a usable TR even if the kernel never looks at it. */
        sregs.tr = (struct kvm_segment){.limit = 0xffff, .type = 0xb, .present = 1};
        sregs.gdt.base = LAYOUT_GDT_ADDR;
        sregs.gdt.limit = BOOT_GDT_ENTRIES * 8 - 1;
        sregs.idt.base = 0;
        sregs.idt.limit = 0;
        sregs.cr3 = LAYOUT_PML4_ADDR;
        sregs.cr4 = X86_CR4_PAE;
        sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
        sregs.efer = X86_EFER_LME | X86_EFER_LMA;
        if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
                return -errno;
        if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
                return -errno;
        return 0;
}

static void handle_io(struct vcpu *v)
{
        struct kvm_run *run = v->run;
        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

        for (uint32_t i = 0; i < run->io.count; i++) {
                bus_access(v->env->pio, run->io.port, data, run->io.size, is_write);
                data += run->io.size;
        }
}

static void handle_mmio(struct vcpu *v)
{
        struct kvm_run *run = v->run;

        if (run->mmio.len > sizeof(run->mmio.data))
                return;
        bus_access(v->env->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
                   run->mmio.is_write);
}

static bool handle_system_event(struct vcpu *v)
{
        switch (v->run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
                v->env->on_event(v->env->opaque, v->id, VCPU_EVENT_POWEROFF);
                break;
        case KVM_SYSTEM_EVENT_RESET:
                v->env->on_event(v->env->opaque, v->id, VCPU_EVENT_RESET);
                break;
        default:
                log_error("vCPU %u: guest crashed (KVM system event %u)", v->id,
                          v->run->system_event.type);
                v->env->on_event(v->env->opaque, v->id, VCPU_EVENT_FAILED);
                break;
        }
        return false;
}

/*
 * A triple fault resets a PC, and the VM is reset like one; but a guest that did not ask for a
 * reset has usually crashed, so it is said, with where.
 */
static void log_triple_fault(struct vcpu *v)
{
        struct kvm_regs regs = {0};
        struct kvm_sregs sregs = {0};

        (void)ioctl(v->fd, KVM_GET_REGS, &regs);
        (void)ioctl(v->fd, KVM_GET_SREGS, &sregs);
        log_warn("vCPU %u: triple fault at rip 0x%llx (rsp 0x%llx, cr3 0x%llx): resetting the VM "
                 "as a PC would",
                 v->id, (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
                 (unsigned long long)sregs.cr3);
}

/* Returns false when the vCPU must stop. */
static bool handle_exit(struct vcpu *v)
{
        struct kvm_run *run = v->run;

        switch (run->exit_reason) {
        case KVM_EXIT_IO:
                handle_io(v);
                return true;
        case KVM_EXIT_MMIO:
                handle_mmio(v);
                return true;
        case KVM_EXIT_HLT:
        case KVM_EXIT_INTR:
                return true;
        case KVM_EXIT_SHUTDOWN:
                log_triple_fault(v);
                v->env->on_event(v->env->opaque, v->id, VCPU_EVENT_RESET);
                return false;
        case KVM_EXIT_SYSTEM_EVENT:
                return handle_system_event(v);
        case KVM_EXIT_FAIL_ENTRY:
                log_error("vCPU %u: KVM could not enter the guest (hardware reason 0x%llx)", v->id,
                          (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
                break;
        case KVM_EXIT_INTERNAL_ERROR:
                log_error("vCPU %u: KVM internal error, suberror %u", v->id,
                          run->internal.suberror);
                /* KVM's own details (for emulation failures: the instruction bytes, the GPA). */
                for (uint32_t i = 0; i < MIN(run->internal.ndata, 16u); i++)
                        log_debug("vCPU %u: internal error data[%u] = 0x%llx", v->id, i,
                                  (unsigned long long)run->internal.data[i]);
                break;
        default:
                log_error("vCPU %u: unexpected KVM exit reason %u", v->id, run->exit_reason);
                break;
        }
        v->env->on_event(v->env->opaque, v->id, VCPU_EVENT_FAILED);
        return false;
}

#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39 /* Linux 6.8 headers */
#endif

/*
 * KVM_RUN fails with EFAULT when the guest touches guest-physical memory KVM cannot back,
 * above all an unplugged virtio-mem block (mapped PROT_NONE by tidal so that the host never
 * allocates it). That is the guest breaking the virtio-mem contract, not a tidal failure: say so
 * and stop the guest like a crashed one. Newer host kernels may also say where
 * (KVM_EXIT_MEMORY_FAULT).
 */
static void run_failed(struct vcpu *v, int err)
{
        struct kvm_regs regs = {0};
        uint64_t fault[3]; /* run->memory_fault: flags, gpa, size */

        if (err != EFAULT) {
                log_errno(-err, "vCPU %u: KVM_RUN failed", v->id);
                return;
        }
        (void)ioctl(v->fd, KVM_GET_REGS, &regs);
        memcpy(fault, &v->run->mmio, sizeof(fault));
        if (v->run->exit_reason == KVM_EXIT_MEMORY_FAULT)
                log_error("vCPU %u: the guest accessed 0x%llx, memory it does not have (an "
                          "unplugged virtio-mem block?), at rip 0x%llx: stopping it",
                          v->id, (unsigned long long)fault[1], (unsigned long long)regs.rip);
        else
                log_error("vCPU %u: the guest accessed memory it does not have (an unplugged "
                          "virtio-mem block?) at rip 0x%llx: stopping it",
                          v->id, (unsigned long long)regs.rip);
}

static void *vcpu_thread(void *arg)
{
        struct vcpu *v = arg;
        sigset_t kick;

        sigemptyset(&kick);
        sigaddset(&kick, VCPU_KICK_SIGNAL);
        pthread_sigmask(SIG_UNBLOCK, &kick, NULL);

        while (!__atomic_load_n(&v->stop, __ATOMIC_ACQUIRE)) {
                if (ioctl(v->fd, KVM_RUN, 0) < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        run_failed(v, errno);
                        v->env->on_event(v->env->opaque, v->id, VCPU_EVENT_FAILED);
                        break;
                }
                if (!handle_exit(v))
                        break;
        }
        return NULL;
}

int vcpu_start(struct vcpu *v)
{
        int r = thread_create(&v->thread, vcpu_thread, v);

        if (r < 0)
                return r;
        v->thread_started = true;
        return 0;
}

/* Where the guest was when it stopped: the first thing to know about a hung guest. */
static void vcpu_log_state(struct vcpu *v)
{
        struct kvm_regs regs;
        struct kvm_sregs sregs;
        struct kvm_mp_state mp = {.mp_state = UINT32_MAX};

        if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0) {
                log_debug("vCPU %u: cannot read registers: %m", v->id);
                return;
        }
        (void)ioctl(v->fd, KVM_GET_MP_STATE, &mp);
        log_debug("vCPU %u stopped at rip=0x%llx rsp=0x%llx rbp=0x%llx cs=0x%x cr0=0x%llx "
                  "cr3=0x%llx cr4=0x%llx efer=0x%llx rflags=0x%llx mp_state=%u",
                  v->id, (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
                  (unsigned long long)regs.rbp, sregs.cs.selector, (unsigned long long)sregs.cr0,
                  (unsigned long long)sregs.cr3, (unsigned long long)sregs.cr4,
                  (unsigned long long)sregs.efer, (unsigned long long)regs.rflags, mp.mp_state);
}

void vcpu_request_stop(struct vcpu *v)
{
        if (!v->thread_started)
                return;
        __atomic_store_n(&v->stop, true, __ATOMIC_RELEASE);
        /* immediate_exit makes a KVM_RUN that is about to start return at once. */
        __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
        pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_stop(struct vcpu *v)
{
        if (!v->thread_started)
                return;
        vcpu_request_stop(v);
        pthread_join(v->thread, NULL);
        v->thread_started = false;
        if (log_get_level() >= LOG_LEVEL_DEBUG)
                vcpu_log_state(v);
}

void vcpu_destroy(struct vcpu *v)
{
        vcpu_stop(v);
        if (v->run)
                munmap(v->run, (size_t)v->env->kvm->vcpu_mmap_size);
        if (v->fd >= 0)
                close(v->fd);
        v->run = NULL;
        v->fd = -1;
}
