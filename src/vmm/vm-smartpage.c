/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "smartpage/smartpage.h"
#include "tidal/event-loop.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "tidal/parse.h"
#include "tidal/thread.h"
#include "vmm/dynmem/dynmem.h"
#include "vmm/vm-internal.h"
#include "vmm/vm-smartpage.h"

/* How often the guest is checked against its grant (the balloon moves about once a second). */
#define CHECK_PERIOD_NS 250000000ULL
#define MIN_LIMIT       (64ULL * SMARTPAGE_PAGE_SIZE) /* the engine's smallest resident limit */

struct vm_paging {
        struct vm *vm;
        struct smartpage *sp;         /* NULL once paging ended */
        struct smartpage_stats final; /* the engine's last statistics, once it is gone */
        uint64_t limit;               /* the resident limit in force */
        struct event_source *error_src, *check_src, *done_src;
        int done_fd; /* eventfd: the worker finished reading back */
        pthread_t worker;
        bool worker_running;
        int finish_result; /* the worker's, read after it signalled done_fd */
        bool failed;
};

static void on_discard(void *opaque, uint64_t fd_offset, uint64_t len)
{
        struct vm_paging *p = opaque;

        /* Boot RAM is registered from memfd offset 0: region offsets are memfd offsets. */
        if (p->sp)
                smartpage_discard(p->sp, fd_offset, len);
}

/* Wrong data is worse than no VM: stop it, exit status 1. */
static void fail(struct vm_paging *p, int error)
{
        if (p->failed)
                return;
        p->failed = true;
        log_error("smart paging failed: %s; stopping the VM rather than run it with memory "
                  "that cannot be read back",
                  strerror(-error));
        vmm_request(p->vm->vmm, VM_REQUEST_FAILED);
}

static void on_engine_error(void *opaque, uint32_t events)
{
        struct vm_paging *p = opaque;
        struct smartpage_stats st;

        /* The eventfd is the engine's and stays readable: one report is enough. */
        event_source_free(p->error_src);
        p->error_src = NULL;
        smartpage_get_stats(p->sp, &st);
        fail(p, st.error < 0 ? st.error : -EIO);
}

static void *finish_worker(void *opaque)
{
        struct vm_paging *p = opaque;
        uint64_t one = 1;

        p->finish_result = smartpage_finish(p->sp);
        if (write(p->done_fd, &one, sizeof(one)) < 0)
                log_warn_errno(-errno, "smart paging: cannot wake the main loop");
        return NULL;
}

/* The read-back is over: release the engine, or stop the VM if it failed. */
static void on_finished(void *opaque, uint32_t events)
{
        struct vm_paging *p = opaque;
        uint64_t v;

        if (read(p->done_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_warn_errno(-errno, "smart paging: reading the eventfd");
        if (!p->worker_running)
                return;
        pthread_join(p->worker, NULL);
        p->worker_running = false;
        if (p->finish_result < 0) {
                fail(p, p->finish_result);
                return;
        }
        p->vm->mem.on_discard = NULL;
        smartpage_get_stats(p->sp, &p->final);
        p->final.active = false;
        p->final.file_bytes = 0;
        event_source_free(p->error_src);
        event_source_free(p->check_src);
        p->error_src = p->check_src = NULL;
        smartpage_free(p->sp);
        p->sp = NULL;
        guest_mem_use_huge_pages(&p->vm->mem, true);
        log_info("smart paging: ended after %.1f s, %llu pages in, %llu out (%llu dropped behind "
                 "streams), %llu dropped unread (the balloon's); %llu faults, %llu in streams; "
                 "paging file removed",
                 (double)p->final.active_ms / 1000.0, (unsigned long long)p->final.pages_in,
                 (unsigned long long)p->final.pages_out,
                 (unsigned long long)p->final.dropped_behind,
                 (unsigned long long)p->final.discarded, (unsigned long long)p->final.faults,
                 (unsigned long long)p->final.stream_faults);
}

/* The daemon's target is what the host gives the guest: the resident limit follows it. */
static void follow_target(struct vm_paging *p, uint64_t target)
{
        uint64_t limit = MAX(target, MIN_LIMIT);
        char s[32];
        int r;

        if (limit == p->limit)
                return;
        r = smartpage_set_limit(p->sp, limit);
        if (r < 0) {
                log_warn_errno(r, "smart paging: cannot change the resident limit to %s",
                               format_size(limit, s, sizeof(s)));
                return;
        }
        p->limit = limit;
}

/* Once the guest is within its grant, the pages in the file are read back by a worker. */
static void on_check(void *opaque, uint32_t events)
{
        struct vm_paging *p = opaque;
        struct dynmem_state st;
        int r;

        if (!p->sp || p->worker_running || p->failed || !p->vm->dynmem)
                return;
        dynmem_get_state(p->vm->dynmem, &st);
        follow_target(p, st.target);
        if (st.assigned > st.target)
                return;
        log_info("smart paging: the guest is within its grant, reading the paging file back");
        /* It blocks until every page is in: not on the loop thread, which serves the devices. */
        r = thread_create(&p->worker, finish_worker, p);
        if (r < 0) {
                log_warn_errno(r, "smart paging: cannot start the read-back; trying again");
                return;
        }
        p->worker_running = true;
        event_source_set_period(p->check_src, 0);
}

static int watch(struct vm_paging *p)
{
        struct event_loop *loop = p->vm->vmm->loop;
        int r;

        r = event_loop_add_fd(loop, smartpage_error_fd(p->sp), EPOLLIN, on_engine_error, p,
                              &p->error_src);
        if (r >= 0)
                r = event_loop_add_fd(loop, p->done_fd, EPOLLIN, on_finished, p, &p->done_src);
        if (r >= 0)
                r = event_loop_add_timer(loop, CHECK_PERIOD_NS, on_check, p, &p->check_src);
        return r;
}

static void log_started(struct vm_paging *p, const char *dir, const char *name)
{
        _cleanup_free_ char *path = NULL;
        char a[32], b[32];

        if (smartpage_file_path(dir, name, &path) < 0)
                path = NULL;
        log_info("smart paging: started, %s resident of %s, file %s",
                 format_size(p->limit, a, sizeof(a)), format_size(p->vm->mem.size, b, sizeof(b)),
                 path ? path : "?");
}

static int start_engine(struct vm_paging *p, uint64_t grant)
{
        const struct vm_config *cfg = p->vm->vmm->cfg;
        struct guest_mem *gm = &p->vm->mem;
        struct smartpage_options o = {
                .dir = cfg->smart_paging_dir,
                .name = cfg->name,
                .resident_limit = MAX(grant, MIN_LIMIT),
                .readahead_pages = SMARTPAGE_DEFAULT_READAHEAD,
        };
        int r;

        /* Boot RAM is [0, size) of the memfd, mapped at base; the hot-plug region is not paged. */
        r = smartpage_start(&o, gm->memfd, 0, gm->base, gm->size, &p->sp);
        if (r == -EPERM || r == -EACCES)
                return log_error("smart paging: userfaultfd is not permitted (tidal needs root, "
                                 "CAP_SYS_PTRACE or access to /dev/userfaultfd)"),
                       r;
        if (r < 0)
                return log_errno(r, "smart paging: cannot start");
        p->limit = o.resident_limit;
        log_started(p, cfg->smart_paging_dir, cfg->name);
        return 0;
}

int vm_paging_start(struct vm *vm, uint64_t grant)
{
        struct vm_paging *p;
        int r;

        if (vm->paging)
                return -EBUSY;
        p = calloc(1, sizeof(*p));
        if (!p)
                return log_errno(-ENOMEM, "smart paging: out of memory");
        *p = (struct vm_paging){.vm = vm, .done_fd = -1};
        vm->paging = p;
        p->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->done_fd < 0)
                return log_errno(-errno, "smart paging: cannot create an eventfd");
        r = start_engine(p, grant);
        if (r < 0)
                return r;
        r = watch(p);
        if (r < 0)
                return log_errno(r, "smart paging: cannot watch the engine");
        vm->mem.on_discard = on_discard;
        vm->mem.on_discard_opaque = p;
        return 0;
}

void vm_paging_free(struct vm *vm)
{
        struct vm_paging *p = vm->paging;

        if (!p)
                return;
        /* A read-back ends by itself, or with the engine's error: nothing there waits on us. */
        if (p->worker_running)
                pthread_join(p->worker, NULL);
        vm->mem.on_discard = NULL;
        event_source_free(p->error_src);
        event_source_free(p->check_src);
        event_source_free(p->done_src);
        smartpage_free(p->sp);
        if (p->done_fd >= 0)
                close(p->done_fd);
        free(p);
        vm->paging = NULL;
}

void vm_paging_get(struct vm *vm, struct memctl_paging *ret)
{
        struct vm_paging *p = vm ? vm->paging : NULL;
        struct smartpage_stats st = {0};

        if (p && p->sp)
                smartpage_get_stats(p->sp, &st);
        else if (p)
                st = p->final;
        *ret = (struct memctl_paging){
                .active = st.active,
                .file_bytes = st.file_bytes,
                .pages_in = st.pages_in,
                .pages_out = st.pages_out,
                .active_ms = st.active_ms,
        };
}
