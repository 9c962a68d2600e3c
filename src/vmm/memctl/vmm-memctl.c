/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The VMM's boots and tidald: connecting at start, admission before each boot's vCPUs run. */
#include <errno.h>
#include <string.h>

#include "tidal/event-loop.h"
#include "tidal/log.h"
#include "tidal/memctl-proto.h"
#include "vmm/memctl/client.h"
#include "vmm/vm-internal.h"
#include "vmm/vm-smartpage.h"

static int apply_settings(void *opaque, const struct mem_settings *req, char *err, size_t errlen)
{
        return vmm_memory_change(
                opaque, req, MEM_SET_MINIMUM | MEM_SET_MAXIMUM | MEM_SET_BUFFER | MEM_SET_WEIGHT,
                err, errlen);
}

static void get_paging(void *opaque, struct memctl_paging *ret)
{
        struct vmm *vmm = opaque;

        vm_paging_get(vmm->vm, ret);
}

static const struct memctl_client_ops client_ops = {
        .apply_settings = apply_settings,
        .get_paging = get_paging,
};

static int connect_daemon(struct vmm *vmm)
{
        const struct vm_config *cfg = vmm->cfg;
        bool explicit = cfg->memctl == MEMCTL_MODE_SOCKET;
        const char *path = explicit ? cfg->memctl_socket : MEMCTL_SOCKET_DEFAULT;
        struct memctl_client_config ccfg = {
                .loop = vmm->loop,
                .socket = path,
                .name = cfg->name,
                .settings = &vmm->mem,
                .ops = &client_ops,
                .opaque = vmm,
        };
        int r;

        r = memctl_client_new(&ccfg, &vmm->memctl);
        if (r < 0 && (explicit || r == -ENOMEM))
                return log_errno(r, "--memctl-socket %s: cannot connect to tidald", path);
        if (r < 0) {
                log_info("tidald is not listening at %s (%s): dynamic memory runs standalone", path,
                         strerror(-r));
                return 0;
        }
        log_debug("connected to tidald at %s", path);
        return 0;
}

int vmm_memctl_start(struct vmm *vmm)
{
        const struct vm_config *cfg = vmm->cfg;

        if (!vmm->mem.dynamic) {
                if (cfg->memctl == MEMCTL_MODE_SOCKET)
                        log_info("static memory: not connecting to tidald at %s",
                                 cfg->memctl_socket);
                return 0;
        }
        /*
         * A socket named on the command line must answer before anything else happens (a
         * usage error, like a bad kernel). The default one is tried once the VM is built, so
         * that a machine that cannot run a VM at all says only why.
         */
        return cfg->memctl == MEMCTL_MODE_SOCKET ? connect_daemon(vmm) : 0;
}

void vmm_memctl_stop(struct vmm *vmm)
{
        memctl_client_free(vmm->memctl);
        vmm->memctl = NULL;
}

/* Runs the loop until tidald answers or the VM is asked to stop. */
static int wait_for_daemon(struct vmm *vmm)
{
        int r;

        vmm->admitting = true;
        while (memctl_client_boot_wait(vmm->memctl) == MEMCTL_WAIT_PENDING &&
               __atomic_load_n(&vmm->request, __ATOMIC_ACQUIRE) == VM_REQUEST_NONE) {
                r = event_loop_run(vmm->loop);
                if (r < 0) {
                        vmm->admitting = false;
                        return log_errno(r, "event loop failed");
                }
        }
        vmm->admitting = false;
        return 0;
}

static enum vm_request admission_outcome(struct vmm *vmm, enum memctl_wait wait)
{
        switch (wait) {
        case MEMCTL_WAIT_NONE:
        case MEMCTL_WAIT_ADMITTED:
                return VM_REQUEST_NONE;
        case MEMCTL_WAIT_STARTUP:
                log_warn("tidald cannot be reached: rebooting with startup memory");
                return VM_REQUEST_NONE;
        case MEMCTL_WAIT_REFUSED:
                log_error("%s", memctl_client_refusal(vmm->memctl));
                return VM_REQUEST_REFUSED;
        case MEMCTL_WAIT_TIMEOUT:
                log_error("tidald did not admit this VM within %d s",
                          MEMCTL_ADMIT_TIMEOUT_MS / 1000 + 10);
                return VM_REQUEST_FAILED;
        case MEMCTL_WAIT_PENDING:
                break; /* stopped by a request while waiting */
        }
        return VM_REQUEST_FAILED;
}

/*
 * A reboot admitted with less than its startup memory (docs/memctl-protocol.md, "Restart with
 * a partial grant"): the guest boots with its startup memory, of which smart paging keeps only
 * the grant resident; the grant stays the target, so the balloon brings the guest down to it.
 */
static enum vm_request start_paging_if_partial(struct vmm *vmm, bool reboot)
{
        struct memctl_client_info info;

        memctl_client_get_info(vmm->memctl, &info);
        if (!reboot || !info.have_grant || info.grant >= vmm->mem.startup)
                return VM_REQUEST_NONE;
        return vm_paging_start(vmm->vm, info.grant) < 0 ? VM_REQUEST_FAILED : VM_REQUEST_NONE;
}

enum vm_request vmm_memctl_admit(struct vmm *vmm)
{
        bool reboot = vmm->boots > 0;
        enum memctl_wait wait;
        int req, r = 0;

        if (!vmm->vm || !vmm->vm->dynmem)
                return VM_REQUEST_NONE;
        if (!vmm->memctl_tried && vmm->cfg->memctl == MEMCTL_MODE_AUTO) {
                vmm->memctl_tried = true;
                if (connect_daemon(vmm) < 0)
                        return VM_REQUEST_FAILED;
        }
        if (!vmm->memctl)
                return VM_REQUEST_NONE;
        memctl_client_attach(vmm->memctl, vmm->vm->dynmem);
        if (memctl_client_boot_begin(vmm->memctl, reboot)) {
                log_info("waiting for tidald to admit %s", vmm->cfg->name);
                r = wait_for_daemon(vmm);
        }
        wait = memctl_client_boot_wait(vmm->memctl);
        memctl_client_boot_end(vmm->memctl);
        if (r < 0)
                return VM_REQUEST_FAILED;
        req = __atomic_load_n(&vmm->request, __ATOMIC_ACQUIRE);
        if (req != VM_REQUEST_NONE)
                return (enum vm_request)req;
        req = admission_outcome(vmm, wait);
        if (req == VM_REQUEST_NONE && wait == MEMCTL_WAIT_ADMITTED)
                req = start_paging_if_partial(vmm, reboot);
        return (enum vm_request)req;
}

void vmm_memctl_detach(struct vmm *vmm)
{
        if (vmm->memctl)
                memctl_client_attach(vmm->memctl, NULL);
}
