/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The guest program of kvm-guest.h and the VM around it. Faults come from KVM on the guest's
 * behalf: nested page faults, guest page-table walks with their accessed/dirty updates, string
 * instructions interrupted half-way, which a host thread touching the region cannot produce.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvm-guest.h"
#include "tidal/clock.h"
#include "tidal/macro.h"

#define PAGE       KVM_GUEST_PAGE
#define CODE_GPA   0x10000u
#define STACK_GPA  0x20000u /* one 16 KiB stack per vCPU above it */
#define STACK_SIZE 0x4000u
#define PML4_GPA   0x1000u
#define PDPT_GPA   0x2000u
#define PD_GPA     0x3000u
#define IDT_GPA    0x4000u
#define GDT_GPA    0x5000u
#define PT_GPA     0x100000u /* 4 KiB page tables, when asked for */

/* Guest to host, by port I/O; the values travel in registers. */
#define PORT_BAD      0x510 /* rdi = address, rsi = found, rcx = expected */
#define PORT_PROGRESS 0x511 /* rdi = pass just filled */
#define PORT_DONE     0x512
#define PORT_FAULT    0x513 /* rdi = vector, rsi/r9/rcx = the frame's first words, r8 = cr2 */
#define NR_VECTORS    32
#define VECTOR_STUB   16 /* bytes per vector stub */

#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)

/* The word the guest writes at `addr` in `pass` (the host checks with the same formula). */
#define PATTERN(addr, pass) (((addr)*GOLDEN) ^ ((uint64_t)(pass) << 56))

/*
 * The guest. One function, nothing it calls, no data: its bytes are copied to CODE_GPA and run
 * there. Pass p: fill the share (passes alternate plain stores and `rep stosq` of one value per
 * page), then read it back in a scattered page order (stride), reporting the first wrong word
 * of each page.
 */
#define GUEST_ATTRS                                                                                \
        __attribute__((section("guestcode"), used, noinline, no_stack_protector,                   \
                       no_sanitize_address, no_sanitize_undefined,                                 \
                       optimize("no-tree-loop-distribute-patterns")))
#define GUEST_OUT(port, a, b, c)                                                                   \
        __asm__ volatile("outb %%al, %%dx" ::"a"(0), "d"(port), "D"(a), "S"(b), "c"(c) : "memory")

GUEST_ATTRS static void guest_main(uint64_t start, uint64_t end, uint64_t passes, uint64_t stride)
{
        uint64_t pages = (end - start) / PAGE;

        for (uint64_t pass = 1; pass <= passes; pass++) {
                bool stos = pass % 2 == 0;

                for (uint64_t page = 0; page < pages; page++) {
                        uint64_t base = start + page * PAGE;

                        if (stos) {
                                uint64_t *dst = (uint64_t *)base, n = PAGE / 8;

                                __asm__ volatile("rep stosq"
                                                 : "+D"(dst), "+c"(n)
                                                 : "a"(PATTERN(base, pass))
                                                 : "memory");
                        } else {
                                for (uint64_t a = base; a < base + PAGE; a += 8)
                                        *(volatile uint64_t *)a = PATTERN(a, pass);
                        }
                }
                GUEST_OUT(PORT_PROGRESS, pass, 0, 0);
                for (uint64_t i = 0; i < pages; i++) {
                        uint64_t base = start + (i * stride) % pages * PAGE;

                        for (uint64_t a = base; a < base + PAGE; a += 8) {
                                uint64_t want = PATTERN(stos ? base : a, pass);
                                uint64_t got = *(volatile uint64_t *)a;

                                if (got != want) { /* one report per page */
                                        GUEST_OUT(PORT_BAD, a, got, want);
                                        break;
                                }
                        }
                }
        }
        GUEST_OUT(PORT_DONE, 0, 0, 0);
        for (;;)
                __asm__ volatile("cli; hlt");
}

/* An exception in the guest is reported, not a triple fault: one stub per vector pushes its
 * number, the common part sends the frame out. */
__asm__(".pushsection guestcode, \"ax\"\n"
        ".balign 16\n"
        "guest_vectors:\n"
        ".irp n, "
        "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
        ".balign 16\n"
        "pushq $\\n\n"
        "jmp guest_exception\n"
        ".endr\n"
        "guest_exception:\n"
        "mov (%rsp), %rdi\n"
        "mov 8(%rsp), %rsi\n"
        "mov 16(%rsp), %r9\n"
        "mov 24(%rsp), %rcx\n"
        "mov %cr2, %r8\n"
        "mov $0x513, %dx\n"
        "out %al, %dx\n"
        "1: cli; hlt; jmp 1b\n"
        ".popsection\n");

extern const uint8_t __start_guestcode[], __stop_guestcode[], guest_vectors[];

double kvm_guest_elapsed(const struct kvm_guest *g)
{
        return (double)(monotonic_ns() - g->start_ns) / 1e9;
}

/* The inverse of an odd number modulo 2^64 (Newton's iteration): to name the page a word is of. */
static uint64_t inverse(uint64_t a)
{
        uint64_t x = a;

        for (int i = 0; i < 6; i++)
                x *= 2 - a * x;
        return x;
}

/* Names what a wrong word holds: zeroes, or the pattern of some address and pass. */
static void describe(const struct kvm_guest *g, uint64_t addr, uint64_t got, char *buf, size_t size)
{
        uint64_t inv = inverse(GOLDEN);

        snprintf(buf, size, "%s", got ? "unknown data" : "zeroes");
        for (uint64_t p = 0; got && p <= g->o.passes; p++) {
                uint64_t from = (got ^ (p << 56)) * inv;

                if (from >= g->o.memory || from % 8)
                        continue;
                if (from == addr || from == (addr & ~(uint64_t)(PAGE - 1)))
                        snprintf(buf, size, "its own pattern of pass %" PRIu64 " (a lost write)",
                                 p);
                else
                        snprintf(buf, size,
                                 "the pattern of gpa 0x%" PRIx64 " pass %" PRIu64
                                 " (another page's data)",
                                 from, p);
                return;
        }
}

static void explain(struct kvm_guest *g, uint64_t addr, uint64_t got, uint64_t want)
{
        char what[128];

        describe(g, addr, got, what, sizeof(what));
        pthread_mutex_lock(&g->print_lock);
        printf("BAD gpa 0x%" PRIx64 " (page %" PRIu64 "): found 0x%016" PRIx64
               ", expected 0x%016" PRIx64 ": %s\n",
               addr, addr / PAGE, got, want, what);
        pthread_mutex_unlock(&g->print_lock);
}

static uint64_t guest_addr(const void *host_code)
{
        return CODE_GPA + (uint64_t)((const uint8_t *)host_code - __start_guestcode);
}

/* A GDT (the gates load CS from it) and 64-bit interrupt gates to the vector stubs. */
static void setup_tables(struct kvm_guest *g)
{
        uint64_t *gdt = (uint64_t *)(g->ram + GDT_GPA), *idt = (uint64_t *)(g->ram + IDT_GPA);

        gdt[1] = UINT64_C(0x00af9a000000ffff); /* 64-bit code, selector 8 */
        gdt[2] = UINT64_C(0x00cf92000000ffff); /* data, selector 16 */
        for (unsigned v = 0; v < NR_VECTORS; v++) {
                uint64_t handler = guest_addr(guest_vectors) + v * VECTOR_STUB;

                idt[2 * v] = (handler & 0xffff) | (UINT64_C(8) << 16) | (UINT64_C(0x8e) << 40) |
                             ((handler >> 16 & 0xffff) << 48);
                idt[2 * v + 1] = handler >> 32;
        }
}

static int setup_ram(struct kvm_guest *g)
{
        struct kvm_userspace_memory_region slot = {
                .slot = 0,
                .guest_phys_addr = 0,
                .memory_size = g->o.memory,
        };
        uint64_t *pml4, *pdpt, *pd;

        g->memfd = memfd_create("smartpage-kvm", MFD_CLOEXEC);
        if (g->memfd < 0 || ftruncate(g->memfd, (off_t)g->o.memory) < 0)
                return -errno;
        g->ram = mmap(NULL, g->o.memory, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0);
        if (g->ram == MAP_FAILED)
                return -errno;
        slot.userspace_addr = (uintptr_t)g->ram;
        if (ioctl(g->vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
                return -errno;
        /* Identity map of RAM: 2 MiB pages, or 4 KiB ones whose tables are paged like the rest. */
        pml4 = (uint64_t *)(g->ram + PML4_GPA);
        pdpt = (uint64_t *)(g->ram + PDPT_GPA);
        pd = (uint64_t *)(g->ram + PD_GPA);
        pml4[0] = PDPT_GPA | 3;
        pdpt[0] = PD_GPA | 3;
        for (uint64_t i = 0; i < g->o.memory / (2 * MiB); i++) {
                if (!g->o.small_pages) {
                        pd[i] = (i * 2 * MiB) | 0x83;
                        continue;
                }
                pd[i] = (PT_GPA + i * PAGE) | 3;
                for (uint64_t k = 0; k < 512; k++)
                        ((uint64_t *)(g->ram + PT_GPA + i * PAGE))[k] =
                                (i * 2 * MiB + k * PAGE) | 3;
        }
        memcpy(g->ram + CODE_GPA, __start_guestcode,
               (size_t)(__stop_guestcode - __start_guestcode));
        setup_tables(g);
        return 0;
}

static int set_cpuid(struct kvm_guest *g, int fd)
{
        _cleanup_free_ struct kvm_cpuid2 *cpuid = NULL;
        unsigned n = 256;

        cpuid = calloc(1, sizeof(*cpuid) + n * sizeof(cpuid->entries[0]));
        if (!cpuid)
                return -ENOMEM;
        cpuid->nent = n;
        if (ioctl(g->kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
                return -errno;
        return ioctl(fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
}

static int setup_vcpu(struct kvm_guest *g, struct kvm_guest_vcpu *v)
{
        struct kvm_segment code = {.limit = 0xffffffff,
                                   .selector = 8,
                                   .type = 11,
                                   .present = 1,
                                   .s = 1,
                                   .l = 1,
                                   .g = 1};
        struct kvm_segment data = {.limit = 0xffffffff,
                                   .selector = 16,
                                   .type = 3,
                                   .present = 1,
                                   .s = 1,
                                   .db = 1,
                                   .g = 1};
        struct kvm_sregs sregs;
        struct kvm_regs regs = {0};
        int r;

        v->fd = ioctl(g->vm, KVM_CREATE_VCPU, v->id);
        if (v->fd < 0)
                return -errno;
        v->run = mmap(NULL, g->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
        if (v->run == MAP_FAILED)
                return -errno;
        r = set_cpuid(g, v->fd);
        if (r < 0)
                return r;
        if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
                return -errno;
        sregs.cs = code;
        sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
        sregs.gdt = (struct kvm_dtable){.base = GDT_GPA, .limit = 3 * 8 - 1};
        sregs.idt = (struct kvm_dtable){.base = IDT_GPA, .limit = NR_VECTORS * 16 - 1};
        sregs.cr3 = PML4_GPA;
        sregs.cr4 = 0x20;       /* PAE */
        sregs.cr0 = 0x80050033; /* PG, AM, WP, NE, ET, MP, PE */
        sregs.efer = 0x500;     /* LMA, LME */
        if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
                return -errno;
        regs.rflags = 2;
        regs.rip = guest_addr((const void *)guest_main);
        regs.rsp = STACK_GPA + (v->id + 1) * STACK_SIZE - 8;
        regs.rdi = v->start;
        regs.rsi = v->end;
        regs.rdx = g->o.passes;
        regs.rcx = g->stride;
        return ioctl(v->fd, KVM_SET_REGS, &regs) < 0 ? -errno : 0;
}

static void report_regs(struct kvm_guest_vcpu *v, const char *why)
{
        struct kvm_regs regs;

        if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
                memset(&regs, 0, sizeof(regs));
        printf("vCPU %u: %s at %.1f s: rip 0x%llx rdi 0x%llx rcx 0x%llx\n", v->id, why,
               kvm_guest_elapsed(v->g), regs.rip, regs.rdi, regs.rcx);
}

/* The guest PTE (4 KiB pages) or PDE that maps `gva`, read from the host. */
static uint64_t guest_pte(const struct kvm_guest *g, uint64_t gva)
{
        uint64_t pde = ((const uint64_t *)(g->ram + PD_GPA))[gva >> 21 & 511];

        if (!g->o.small_pages || (pde & 0x80) || gva >= g->o.memory)
                return pde;
        return ((const uint64_t *)(g->ram + (pde & ~UINT64_C(0xfff))))[gva >> 12 & 511];
}

/* With an error code the frame is: code, rip, cs; without: rip, cs, rflags. */
static void report_exception(struct kvm_guest_vcpu *v, const struct kvm_regs *r)
{
        static const uint32_t with_code = 1u << 8 | 1u << 10 | 1u << 11 | 1u << 12 | 1u << 13 |
                                          1u << 14 | 1u << 17 | 1u << 21 | 1u << 29 | 1u << 30;
        unsigned vector = (unsigned)r->rdi;
        bool code = vector < 32 && (with_code >> vector & 1);
        uint64_t rip = code ? r->r9 : r->rsi;

        printf("vCPU %u: exception %u at %.1f s: error code 0x%llx, rip 0x%" PRIx64
               ", cr2 0x%llx\n",
               v->id, vector, kvm_guest_elapsed(v->g), code ? r->rsi : 0, rip, r->r8);
        if (vector == 14)
                printf("vCPU %u: the entry mapping cr2 reads 0x%" PRIx64 " from the host now\n",
                       v->id, guest_pte(v->g, r->r8));
}

/* One port write from the guest; false when the guest is done. */
static bool on_io(struct kvm_guest_vcpu *v)
{
        struct kvm_guest *g = v->g;
        struct kvm_regs regs;

        if (v->run->io.direction != KVM_EXIT_IO_OUT || ioctl(v->fd, KVM_GET_REGS, &regs) < 0) {
                report_regs(v, "unexpected port access");
                v->error = 1;
                return false;
        }
        switch (v->run->io.port) {
        case PORT_BAD:
                if (atomic_fetch_add(&g->bad_pages, 1) < 20)
                        explain(g, regs.rdi, regs.rsi, regs.rcx);
                return true;
        case PORT_PROGRESS:
                printf("vCPU %u: pass %llu filled at %.1f s\n", v->id, regs.rdi,
                       kvm_guest_elapsed(g));
                return true;
        case PORT_DONE:
                v->done = true;
                return false;
        case PORT_FAULT:
                report_exception(v, &regs);
                v->error = 1;
                return false;
        default:
                report_regs(v, "write to an unknown port");
                v->error = 1;
                return false;
        }
}

static void run_vcpu(struct kvm_guest_vcpu *v)
{
        for (;;) {
                if (ioctl(v->fd, KVM_RUN, 0) < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        v->error = -errno;
                        report_regs(v, strerror(errno));
                        return;
                }
                if (v->run->exit_reason == KVM_EXIT_IO) {
                        if (!on_io(v))
                                return;
                        continue;
                }
                report_regs(v, v->run->exit_reason == KVM_EXIT_SHUTDOWN ? "triple fault"
                                                                        : "unexpected exit");
                printf("vCPU %u: exit reason %u\n", v->id, v->run->exit_reason);
                v->error = 1;
                return;
        }
}

static void *vcpu_thread(void *arg)
{
        struct kvm_guest_vcpu *v = arg;

        run_vcpu(v);
        __atomic_store_n(&v->exited, true, __ATOMIC_RELEASE);
        return NULL;
}

/* After the read-back: every word as the last pass left it, seen from the host. */
uint64_t kvm_guest_check_from_host(struct kvm_guest *g)
{
        uint64_t bad = 0, pass = g->o.passes;

        for (unsigned i = 0; i < g->o.vcpus; i++) {
                const struct kvm_guest_vcpu *v = &g->vcpus[i];

                for (uint64_t a = v->start; a < v->end; a += 8) {
                        uint64_t base = a & ~(uint64_t)(PAGE - 1);
                        uint64_t want = PATTERN(pass % 2 == 0 ? base : a, pass);
                        uint64_t got = *(const uint64_t *)(g->ram + a);

                        if (got != want && bad++ < 20)
                                explain(g, a, got, want);
                }
        }
        return bad;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
        while (b) {
                uint64_t r = a % b;

                a = b;
                b = r;
        }
        return a;
}

/* Prints a file of /proc (a thread's kernel stack, its system call), prefixed. */
static void print_proc_file(const char *path, const char *prefix)
{
        char line[256];
        FILE *f = fopen(path, "re");

        if (!f)
                return;
        while (fgets(line, sizeof(line), f))
                printf("%s%s", prefix, line);
        fclose(f);
}

/* Where every thread waits: the kernel stacks say whether a vCPU waits in a userfault. */
void kvm_guest_dump_threads(void)
{
        DIR *d = opendir("/proc/self/task");
        struct dirent *e;

        while (d && (e = readdir(d))) {
                char path[300], prefix[300];

                if (e->d_name[0] == '.')
                        continue;
                snprintf(prefix, sizeof(prefix), "  task %s ", e->d_name);
                snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
                print_proc_file(path, prefix);
                snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", e->d_name);
                print_proc_file(path, prefix);
                snprintf(path, sizeof(path), "/proc/self/task/%s/stack", e->d_name);
                print_proc_file(path, prefix);
        }
        if (d)
                closedir(d);
}

int kvm_guest_open(struct kvm_guest *g, const struct kvm_guest_options *o)
{
        int size;

        *g = (struct kvm_guest){.o = *o, .kvm = -1, .vm = -1, .memfd = -1};
        pthread_mutex_init(&g->print_lock, NULL);
        g->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (g->kvm < 0)
                return -errno;
        size = ioctl(g->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
        if (size <= 0)
                return size < 0 ? -errno : -EINVAL;
        g->run_size = (size_t)size;
        return 0;
}

int kvm_guest_create(struct kvm_guest *g)
{
        uint64_t share =
                ALIGN_DOWN((g->o.memory - KVM_GUEST_DATA_GPA) / g->o.vcpus, (uint64_t)PAGE);
        int r;

        g->vm = ioctl(g->kvm, KVM_CREATE_VM, 0);
        if (g->vm < 0)
                return -errno;
        (void)ioctl(g->vm, KVM_SET_TSS_ADDR, 0xfffbd000UL); /* Intel only; harmless on AMD */
        r = setup_ram(g);
        if (r < 0)
                return r;
        for (g->stride = 7919; gcd(g->stride, share / PAGE) != 1; g->stride += 2)
                ;
        for (unsigned i = 0; i < g->o.vcpus; i++) {
                struct kvm_guest_vcpu *v = &g->vcpus[i];

                *v = (struct kvm_guest_vcpu){
                        .g = g, .id = i, .start = KVM_GUEST_DATA_GPA + i * share};
                v->end = v->start + share;
                r = setup_vcpu(g, v);
                if (r < 0)
                        return r;
        }
        return 0;
}

int kvm_guest_start(struct kvm_guest *g)
{
        g->start_ns = monotonic_ns();
        for (unsigned i = 0; i < g->o.vcpus; i++) {
                int r = pthread_create(&g->vcpus[i].thread, NULL, vcpu_thread, &g->vcpus[i]);

                if (r != 0)
                        return -r;
        }
        return 0;
}

bool kvm_guest_all_exited(struct kvm_guest *g)
{
        for (unsigned i = 0; i < g->o.vcpus; i++)
                if (!__atomic_load_n(&g->vcpus[i].exited, __ATOMIC_ACQUIRE))
                        return false;
        return true;
}

bool kvm_guest_join(struct kvm_guest *g)
{
        bool ok = true;

        for (unsigned i = 0; i < g->o.vcpus; i++) {
                pthread_join(g->vcpus[i].thread, NULL);
                ok &= g->vcpus[i].done && g->vcpus[i].error == 0;
        }
        return ok;
}
