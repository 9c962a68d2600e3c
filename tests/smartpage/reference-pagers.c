/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "reference-pagers.h"

#define PAGE KVM_GUEST_PAGE

struct reference_pager {
        struct kvm_guest *g;
        bool zap;
        int uffd;
        uint8_t *saved; /* evicted pages' contents: the "paging file" */
        uint8_t *alias; /* the memfd mapped a second time, not registered */
        bool *out;      /* per page: evicted */
        uint64_t pages, rng;
        atomic_uint_fast64_t moved;
        atomic_bool stop;
        pthread_t thread;
};

static uint64_t next_random(struct reference_pager *p)
{
        p->rng ^= p->rng << 13, p->rng ^= p->rng >> 7, p->rng ^= p->rng << 17;
        return p->rng;
}

static uint8_t *ram_page(const struct reference_pager *p, uint64_t page)
{
        return p->g->ram + page * PAGE;
}

static int resolve(struct reference_pager *p, const struct uffd_msg *msg)
{
        uint64_t page = (msg->arg.pagefault.address - (uintptr_t)p->g->ram) / PAGE;
        uintptr_t dst = (uintptr_t)ram_page(p, page);
        int r;

        if (p->out[page]) {
                struct uffdio_copy c = {
                        .dst = dst, .src = (uintptr_t)(p->saved + page * PAGE), .len = PAGE};

                r = ioctl(p->uffd, UFFDIO_COPY, &c);
                p->out[page] = false;
                atomic_fetch_add(&p->moved, 1);
        } else if (msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) {
                struct uffdio_continue c = {.range = {.start = dst, .len = PAGE}};

                r = ioctl(p->uffd, UFFDIO_CONTINUE, &c);
        } else {
                struct uffdio_zeropage z = {.range = {.start = dst, .len = PAGE}};

                r = ioctl(p->uffd, UFFDIO_ZEROPAGE, &z);
        }
        if (r < 0 && errno == EEXIST) { /* another vCPU's fault on it came first */
                struct uffdio_range w = {.start = dst, .len = PAGE};

                r = ioctl(p->uffd, UFFDIO_WAKE, &w);
        }
        return r < 0 ? -errno : 0;
}

/* Zapped first: from then on an access waits for this thread, which saves and punches. */
static void evict(struct reference_pager *p, uint64_t page)
{
        madvise(ram_page(p, page), PAGE, MADV_DONTNEED);
        memcpy(p->saved + page * PAGE, p->alias + page * PAGE, PAGE);
        fallocate(p->g->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(page * PAGE),
                  PAGE);
        p->out[page] = true;
        atomic_fetch_add(&p->moved, 1);
}

static void *simple_thread(void *arg)
{
        struct reference_pager *p = arg;

        while (!atomic_load(&p->stop)) {
                struct uffd_msg msg;
                uint64_t x, page;

                while (read(p->uffd, &msg, sizeof(msg)) == sizeof(msg))
                        if (msg.event == UFFD_EVENT_PAGEFAULT && resolve(p, &msg) < 0)
                                printf("simple pager: cannot resolve a fault: %m\n");
                x = next_random(p);
                page = x % p->pages;
                if (p->out[page])
                        continue;
                if (p->zap && (x & 0x300)) /* three times in four: unmap only, keep */
                        madvise(ram_page(p, page), PAGE, MADV_DONTNEED);
                else
                        evict(p, page);
        }
        return NULL;
}

static void *punch_thread(void *arg)
{
        struct reference_pager *p = arg;
        uint64_t low = KVM_GUEST_DATA_GPA / PAGE;

        while (!atomic_load(&p->stop)) {
                uint64_t x = next_random(p);

                if ((x & 6) == 0) /* low memory (tables, code, stacks): unmapped, kept */
                        madvise(ram_page(p, (x >> 8) % low), PAGE, MADV_DONTNEED);
                else if (x & 1)
                        fallocate(p->g->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                  (off_t)((low + x % (p->pages - low)) * PAGE), PAGE);
                else
                        madvise(ram_page(p, low + x % (p->pages - low)), PAGE, MADV_DONTNEED);
                atomic_fetch_add(&p->moved, 1);
        }
        return NULL;
}

static struct reference_pager *new_pager(struct kvm_guest *g)
{
        struct reference_pager *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        p->g = g;
        p->uffd = -1;
        p->pages = g->o.memory / PAGE;
        p->rng = UINT64_C(88172645463325252);
        return p;
}

static int open_uffd(struct reference_pager *p)
{
        struct uffdio_api api = {.api = UFFD_API,
                                 .features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM};
        struct uffdio_register reg = {
                .range = {.start = (uintptr_t)p->g->ram, .len = p->g->o.memory},
                .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR,
        };

        p->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
        if (p->uffd < 0 || ioctl(p->uffd, UFFDIO_API, &api) < 0 ||
            ioctl(p->uffd, UFFDIO_REGISTER, &reg) < 0)
                return -errno;
        return 0;
}

int reference_pager_start_simple(struct kvm_guest *g, bool zap, struct reference_pager **ret)
{
        struct reference_pager *p = new_pager(g);
        int r;

        if (!p)
                return -ENOMEM;
        p->zap = zap;
        p->saved = mmap(NULL, g->o.memory, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        p->alias = mmap(NULL, g->o.memory, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd, 0);
        p->out = calloc(p->pages, sizeof(*p->out));
        r = p->saved == MAP_FAILED || p->alias == MAP_FAILED || !p->out ? -ENOMEM : open_uffd(p);
        if (r == 0)
                r = -pthread_create(&p->thread, NULL, simple_thread, p);
        if (r < 0)
                return r; /* a test process: it exits */
        *ret = p;
        return 0;
}

int reference_pager_start_punch(struct kvm_guest *g, struct reference_pager **ret)
{
        struct reference_pager *p = new_pager(g);
        int r;

        if (!p)
                return -ENOMEM;
        r = -pthread_create(&p->thread, NULL, punch_thread, p);
        if (r < 0)
                return r;
        *ret = p;
        return 0;
}

uint64_t reference_pager_progress(const struct reference_pager *p)
{
        return atomic_load(&p->moved);
}

void reference_pager_stop(struct reference_pager *p)
{
        atomic_store(&p->stop, true);
        pthread_join(p->thread, NULL);
        printf("reference pager: %llu pages moved\n", (unsigned long long)atomic_load(&p->moved));
        if (p->uffd >= 0)
                close(p->uffd);
        if (p->saved && p->saved != MAP_FAILED)
                munmap(p->saved, p->g->o.memory);
        if (p->alias && p->alias != MAP_FAILED)
                munmap(p->alias, p->g->o.memory);
        free(p->out);
        free(p);
}
