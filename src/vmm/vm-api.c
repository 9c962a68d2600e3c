/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The VMM's answers to control-socket requests (docs/api.md); the server is in src/vmm/api. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tidal/api.h"
#include "tidal/log.h"
#include "tidal/parse.h"
#include "virtio-balloon/balloon.h"
#include "virtio-mem/virtio-mem.h"
#include "vmm/api/server.h"
#include "vmm/dynmem/dynmem.h"
#include "vmm/memctl/client.h"
#include "vmm/vm-internal.h"
#include "vmm/vm-smartpage.h"

static void balloon_counters(const struct balloon_metrics *m, struct api_balloon_counters *c)
{
        *c = (struct api_balloon_counters){
                .inflate_requests = m->inflate_requests,
                .deflate_requests = m->deflate_requests,
                .report_requests = m->report_requests,
                .inflated_bytes = m->inflated_pages * GUEST_PAGE_SIZE,
                .deflated_bytes = m->deflated_pages * GUEST_PAGE_SIZE,
                .reported_bytes = m->reported_pages * GUEST_PAGE_SIZE,
                .discarded_bytes = m->discarded_bytes,
                .discard_calls = m->discard_calls,
                .discard_errors = m->discard_errors,
                .out_of_range_pages = m->out_of_range_pfns,
                .skipped_reports = m->skipped_reports,
                .malformed_requests = m->malformed_events,
                .deferred_bytes = m->deferred_pages * GUEST_PAGE_SIZE,
                .evicted_blocks = m->evicted_blocks,
        };
}

static void balloon_info(struct balloon *b, struct api_balloon_info *info)
{
        struct balloon_state st;

        balloon_get_state(b, &st);
        info->driver = st.needs_reset ? API_DRIVER_NEEDS_RESET
                       : st.driver_ok ? API_DRIVER_RUNNING
                                      : API_DRIVER_NONE;
        info->inflated = st.inflated_bytes;
        info->pending = st.pending_bytes;
        info->stats_count = st.stats_seq;
        balloon_counters(&st.metrics, &info->counters);
        info->target = st.target_bytes;
        info->actual = st.actual_bytes;
        info->stats_period = st.stats_period_s;
        info->have_stats = st.stats_valid;
        info->stats_age_ms = st.stats_age_ns / 1000000;
        info->stats_present = st.stats.present;
        for (unsigned i = 0; i < API_BALLOON_STATS_MAX && i < BALLOON_STAT_NR; i++)
                info->stats[i] = st.stats.val[i];
}

static void vmem_counters(const struct virtio_mem_metrics *m, uint64_t block_size,
                          struct api_vmem_counters *c)
{
        *c = (struct api_vmem_counters){
                .plug_requests = m->plug_requests,
                .unplug_requests = m->unplug_requests,
                .unplug_all_requests = m->unplug_all_requests,
                .state_requests = m->state_requests,
                .nacks = m->nacks,
                .errors = m->errors,
                .busy = m->busy,
                .plugged_bytes = m->plugged_blocks * block_size,
                .unplugged_bytes = m->unplugged_blocks * block_size,
                .discarded_bytes = m->discarded_bytes,
                .discard_errors = m->discard_errors,
                .malformed_requests = m->malformed_events,
                .nudges = m->nudges,
                .unplug_behind_us = m->unplug_behind_ns / 1000,
                .plug_behind_us = m->plug_behind_ns / 1000,
                .request_us = m->request_ns / 1000,
        };
}

static void vmem_info(struct vm *vm, struct api_memory_info *m)
{
        struct virtio_mem_state st;

        m->has_vmem = vm->vmem;
        if (!vm->vmem)
                return;
        virtio_mem_get_state(vm->vmem, &st);
        m->vmem_driver = st.driver == VIRTIO_MEM_DRIVER_RUNNING       ? API_DRIVER_RUNNING
                         : st.driver == VIRTIO_MEM_DRIVER_NEEDS_RESET ? API_DRIVER_NEEDS_RESET
                                                                      : API_DRIVER_NONE;
        m->vmem_region = st.region_size;
        m->vmem_requested = st.requested_size;
        m->vmem_plugged = st.plugged_size;
        vmem_counters(&st.metrics, st.block_size, &m->vmem_counters);
}

static void memory_info(struct vmm *vmm, struct api_memory_info *m)
{
        struct dynmem_state st;

        m->settings = vmm->mem;
        m->ceiling = vmm->cfg->mem_ceiling;
        m->assigned = vmm->mem.startup;
        vm_paging_get(vmm->vm, &m->paging);
        if (!vmm->vm || !vmm->vm->dynmem)
                return;
        dynmem_get_state(vmm->vm->dynmem, &st);
        m->target_from_daemon = st.source == DYNMEM_SOURCE_EXTERNAL;
        m->target = st.target;
        m->assigned = st.assigned;
        m->have_demand = st.have_demand;
        m->demand = st.demand;
        m->status = st.status;
        m->stuck = st.vmem_stuck;
        vmem_info(vmm->vm, m);
}

static void memctl_info(struct vmm *vmm, struct api_memctl_info *m)
{
        struct memctl_client_info ci;

        *m = (struct api_memctl_info){0};
        if (!vmm->memctl)
                return;
        memctl_client_get_info(vmm->memctl, &ci);
        *m = (struct api_memctl_info){
                .daemon = true,
                .socket = ci.socket,
                .connected = ci.connected,
                .have_grant = ci.have_grant,
                .grant = ci.grant,
                .reconnects = ci.reconnects,
        };
}

static int api_info(void *opaque, struct api_info *info, char *err, size_t errlen)
{
        struct vmm *vmm = opaque;
        const struct vm_config *cfg = vmm->cfg;
        int req = __atomic_load_n(&vmm->request, __ATOMIC_ACQUIRE);

        info->name = cfg->name;
        info->state = req == VM_REQUEST_RESET  ? API_VM_REBOOTING
                      : req != VM_REQUEST_NONE ? API_VM_STOPPING
                      : vmm->admitting         ? API_VM_STARTING
                                               : API_VM_RUNNING;
        info->boots = vmm->boots;
        info->vcpus = cfg->nr_cpus;
        info->memory = cfg->memory;
        info->kernel = cfg->kernel_path;
        info->initrd = cfg->initrd_path;
        info->cmdline = cfg->cmdline;
        info->kernel_entry = vmm->kernel_direct ? "cache" : "decompressor";
        info->has_balloon = vmm->vm && vmm->vm->balloon;
        if (info->has_balloon)
                balloon_info(vmm->vm->balloon, &info->balloon);
        memory_info(vmm, &info->mem);
        memctl_info(vmm, &info->memctl);
        return 0;
}

static int api_balloon_set(void *opaque, uint64_t bytes, char *err, size_t errlen)
{
        struct vmm *vmm = opaque;
        int r;

        if (!vmm->cfg->balloon.enabled)
                return -ENODEV;
        if (vmm->mem.dynamic) {
                snprintf(err, errlen,
                         "dynamic memory sets the balloon on this VM: change its "
                         "settings with memory-set instead");
                return -EPERM;
        }
        if (bytes > vmm->cfg->memory) {
                snprintf(err, errlen, "balloon target %llu bytes is more than the guest's %llu",
                         (unsigned long long)bytes, (unsigned long long)vmm->cfg->memory);
                return -ERANGE;
        }
        if (vmm->vm && vmm->vm->balloon) {
                r = balloon_set_target(vmm->vm->balloon, bytes);
                if (r < 0)
                        return r;
        }
        /* Kept so the next boot's balloon gets the same target. */
        vmm->balloon_target = bytes;
        log_info("balloon target set to %llu MiB", (unsigned long long)(bytes >> 20));
        return 0;
}

static int api_stats_period(void *opaque, uint64_t seconds, char *err, size_t errlen)
{
        struct vmm *vmm = opaque;
        int r;

        if (!vmm->cfg->balloon.enabled)
                return -ENODEV;
        if (seconds > BALLOON_STATS_PERIOD_MAX_S)
                return -ERANGE;
        if (seconds == 0 && vmm->mem.dynamic) {
                snprintf(err, errlen,
                         "dynamic memory needs the guest's statistics: the period "
                         "cannot be 0");
                return -EPERM;
        }
        if (vmm->vm && vmm->vm->balloon) {
                r = balloon_set_stats_period(vmm->vm->balloon, (uint32_t)seconds);
                if (r < 0)
                        return r;
        }
        vmm->stats_period_s = (uint32_t)seconds;
        return 0;
}

int vmm_memory_change(struct vmm *vmm, const struct mem_settings *req, unsigned which, char *err,
                      size_t errlen)
{
        struct mem_settings next;
        char a[32], b[32];
        int r;

        r = mem_settings_change(&vmm->mem, req, which, true, &next, err, errlen);
        if (r < 0)
                return r;
        if (next.maximum > vmm->cfg->mem_ceiling) {
                snprintf(err, errlen,
                         "maximum %s is above this VM's ceiling of %s (set with ceiling= at "
                         "start)",
                         format_size(next.maximum, a, sizeof(a)),
                         format_size(vmm->cfg->mem_ceiling, b, sizeof(b)));
                return -ERANGE;
        }
        vmm->mem = next;
        log_info("memory settings: minimum %s, maximum %s, buffer %u%%, weight %u",
                 format_size(next.minimum, a, sizeof(a)), format_size(next.maximum, b, sizeof(b)),
                 next.buffer, next.weight);
        if (vmm->vm && vmm->vm->dynmem)
                dynmem_kick(vmm->vm->dynmem);
        return 0;
}

static int api_memory_set(void *opaque, const struct mem_settings *req, unsigned which, char *err,
                          size_t errlen)
{
        struct vmm *vmm = opaque;
        int r;

        r = vmm_memory_change(vmm, req, which, err, errlen);
        if (r < 0)
                return r;
        /* tidald balances with the settings too: it hears of the change. */
        if (vmm->memctl)
                memctl_client_settings_changed(vmm->memctl);
        return 0;
}

static int api_shutdown(void *opaque, char *err, size_t errlen)
{
        vmm_request(opaque, VM_REQUEST_POWEROFF);
        return 0;
}

static int api_reboot(void *opaque, char *err, size_t errlen)
{
        vmm_request(opaque, VM_REQUEST_RESET);
        return 0;
}

static const struct api_ops vmm_api_ops = {
        .info = api_info,
        .balloon_set = api_balloon_set,
        .stats_period = api_stats_period,
        .memory_set = api_memory_set,
        .shutdown = api_shutdown,
        .reboot = api_reboot,
};

int vmm_api_start(struct vmm *vmm)
{
        const char *path = vmm->cfg->api_socket, *why = NULL;
        char buf[108];
        int r;

        if (path && strcmp(path, "none") == 0)
                return 0;
        if (!path) {
                r = api_socket_default_path(vmm->cfg->name, buf, sizeof(buf));
                if (r < 0)
                        return log_errno(r, "cannot work out a control socket path "
                                            "(use --api-socket PATH or --api-socket none)");
                r = api_socket_make_dir(buf);
                if (r < 0)
                        return log_errno(r, "cannot create the directory for %s", buf);
                path = buf;
        }
        r = api_server_new(vmm->loop, path, &vmm_api_ops, vmm, &vmm->api, &why);
        if (r < 0)
                return log_errno(r, "--api-socket %s: %s", path, why ? why : "cannot serve it");
        log_debug("control socket at %s", api_server_path(vmm->api));
        return 0;
}

void vmm_api_stop(struct vmm *vmm)
{
        api_server_free(vmm->api);
        vmm->api = NULL;
}
