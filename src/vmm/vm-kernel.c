/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "tidal/log.h"
#include "tidal/macro.h"
#include "tidal/thread.h"
#include "vmm/boot/kernel-cache.h"
#include "vmm/cli.h"
#include "vmm/vm-kernel.h"
#include "vmm/vm.h"

/* What the background store needs; it owns all of it. */
struct cache_job {
        char *dir;
        char name[KERNEL_CACHE_NAME_MAX];
        int kernel_fd;
        size_t kernel_size;
};

static void cache_job_free(struct cache_job *job)
{
        free(job->dir);
        if (job->kernel_fd >= 0)
                close(job->kernel_fd);
        free(job);
}

static void *store_thread(void *arg)
{
        struct cache_job *job = arg;
        struct boot_file f = {.fd = job->kernel_fd, .size = job->kernel_size};
        const struct sched_param idle = {0};
        const char *why = "";
        struct bzimage img;
        int r;

        /* Decompressing must not take CPU time from the guest that is booting meanwhile. */
        (void)sched_setscheduler(0, SCHED_IDLE, &idle);
        r = boot_file_map(&f);
        if (r >= 0)
                r = bzimage_parse(f.data, f.size, &img, &why);
        if (r >= 0)
                r = kernel_cache_store(job->dir, job->name, &img, &why);
        if (r < 0)
                log_debug("kernel cache: not stored in %s: %s%s%s", job->dir, strerror(-r),
                          why[0] ? ": " : "", why);
        else
                log_debug("kernel cache: stored %s/%s for the next boot", job->dir, job->name);
        boot_file_unmap(&f);
        cache_job_free(job);
        return NULL;
}

static void store_in_background(struct vmm *vmm, const char *name)
{
        struct cache_job *job = calloc(1, sizeof(*job));
        pthread_t thread;

        if (!job)
                return;
        job->kernel_fd = dup(vmm->kernel_file.fd);
        job->kernel_size = vmm->kernel_file.size;
        job->dir = strdup(vmm->kernel_cache_dir);
        memcpy(job->name, name, sizeof(job->name));
        if (job->kernel_fd < 0 || !job->dir || thread_create(&thread, store_thread, job) < 0) {
                cache_job_free(job);
                return;
        }
        pthread_detach(thread);
}

/*
 * The cached kernel, parsed and checked to fit; false (file closed) when it cannot be used. A
 * damaged entry is stored again for the next boot.
 */
static bool cache_entry_usable(struct vmm *vmm, const struct guest_mem *plan, const char *name)
{
        struct boot_layout layout;
        const char *why = NULL;
        struct vmlinux vl;

        if (vmlinux_parse(vmm->vmlinux_file.data, vmm->vmlinux_file.size, &vl, &why) < 0) {
                log_warn("kernel cache: %s/%s is damaged (%s); storing it again",
                         vmm->kernel_cache_dir, name, why);
                boot_file_close(&vmm->vmlinux_file);
                store_in_background(vmm, name);
                return false;
        }
        if (boot_plan(&vmm->kernel, &vl, vmm->initrd.size, plan, &layout, &why) >= 0)
                return true;
        log_debug("kernel cache: %s/%s not used: %s", vmm->kernel_cache_dir, name, why);
        boot_file_close(&vmm->vmlinux_file);
        return false;
}

/* --kernel-cache DIR, "off", or the default (kernel_cache_default_dir). */
static char *cache_dir(const struct vm_config *cfg)
{
        if (!cfg->kernel_cache)
                return kernel_cache_default_dir();
        return strcmp(cfg->kernel_cache, "off") == 0 ? NULL : strdup(cfg->kernel_cache);
}

void vmm_kernel_cache_open(struct vmm *vmm, const struct guest_mem *plan)
{
        char name[KERNEL_CACHE_NAME_MAX];
        int r;

        vmm->kernel_cache_dir = cache_dir(vmm->cfg);
        if (!vmm->kernel_cache_dir)
                return;
        kernel_cache_name(&vmm->kernel, name);
        r = kernel_cache_open(vmm->kernel_cache_dir, name, &vmm->vmlinux_file);
        if (r >= 0) {
                if (cache_entry_usable(vmm, plan, name))
                        boot_file_unmap(&vmm->vmlinux_file);
                return;
        }
        if (r != -ENOENT) {
                log_debug("kernel cache: cannot open %s/%s: %s", vmm->kernel_cache_dir, name,
                          strerror(-r));
                return;
        }
        store_in_background(vmm, name);
}

/* The word "nokaslr" on the guest's command line turns KASLR off, as for the decompressor. */
static bool cmdline_has_word(const char *cmdline, const char *word)
{
        size_t len = strlen(word);

        for (const char *p = cmdline; (p = strstr(p, word)); p += len)
                if ((p == cmdline || p[-1] == ' ') && (p[len] == '\0' || p[len] == ' '))
                        return true;
        return false;
}

static uint64_t pick_virt_offset(const struct bzimage *img, const struct vmlinux *vl,
                                 const char *cmdline)
{
        uint64_t align = MAX((uint64_t)img->hdr.kernel_alignment, 2 * MiB);
        uint64_t random;

        if (cmdline_has_word(cmdline, "nokaslr") || (align & (align - 1)) ||
            getrandom(&random, sizeof(random), 0) != sizeof(random))
                return 0;
        return vmlinux_kaslr_offset(vl, MAX(vl->span, (uint64_t)img->hdr.init_size), align, random);
}

void vmm_kernel_prepare(struct vmm *vmm, struct boot_spec *spec, struct vmlinux *vl)
{
        const char *why = NULL;
        int r;

        spec->direct = NULL;
        spec->virt_offset = 0;
        if (vmm->vmlinux_file.fd < 0)
                return;
        r = boot_file_map(&vmm->vmlinux_file);
        if (r >= 0)
                r = vmlinux_parse(vmm->vmlinux_file.data, vmm->vmlinux_file.size, vl, &why);
        if (r < 0) {
                log_warn("kernel cache: cannot use the cached kernel (%s); the guest decompresses",
                         why ? why : strerror(-r));
                return;
        }
        spec->direct = vl;
        spec->virt_offset = pick_virt_offset(spec->kernel, vl, spec->cmdline);
}

void vmm_kernel_unmap(struct vmm *vmm)
{
        boot_file_unmap(&vmm->vmlinux_file);
}

void vmm_kernel_close(struct vmm *vmm)
{
        boot_file_close(&vmm->vmlinux_file);
        free(vmm->kernel_cache_dir);
        vmm->kernel_cache_dir = NULL;
}

/* An entry already there and whole: nothing to decompress again. */
static bool cached_entry_valid(const char *dir, const char *name)
{
        struct boot_file f = {.fd = -1};
        const char *why = NULL;
        struct vmlinux vl;
        bool valid;

        if (kernel_cache_open(dir, name, &f) < 0)
                return false;
        valid = vmlinux_parse(f.data, f.size, &vl, &why) >= 0;
        boot_file_close(&f);
        return valid;
}

int vmm_cache_kernel(const struct vm_config *cfg)
{
        _cleanup_free_ char *dir = cache_dir(cfg);
        struct boot_file f = {.fd = -1};
        char name[KERNEL_CACHE_NAME_MAX];
        const char *why = "";
        struct bzimage img;
        int r;

        if (!dir)
                return log_error("cache-kernel: no cache directory (give --kernel-cache DIR)"),
                       EXIT_USAGE;
        r = boot_file_open(cfg->kernel_path, KERNEL_MAX_SIZE, &f);
        if (r < 0)
                return log_errno(r, "cannot read kernel '%s'", cfg->kernel_path), EXIT_USAGE;
        r = bzimage_parse(f.data, f.size, &img, &why);
        if (r < 0) {
                boot_file_close(&f);
                return log_error("kernel '%s': %s", cfg->kernel_path, why), EXIT_USAGE;
        }
        kernel_cache_name(&img, name);
        r = cached_entry_valid(dir, name) ? 0 : kernel_cache_store(dir, name, &img, &why);
        boot_file_close(&f);
        if (r < 0)
                return log_errno(r, "cache-kernel: cannot store '%s' in %s%s%s", cfg->kernel_path,
                                 dir, why[0] ? ": " : "", why),
                       r == -EOPNOTSUPP || r == -ENOEXEC ? EXIT_USAGE : 1;
        printf("%s/%s\n", dir, name);
        return 0;
}
