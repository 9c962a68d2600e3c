/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The VMM's process and per-boot state, shared by vm.c and the control-socket glue. */
#pragma once

#include <stdbool.h>
#include <termios.h>

#include "tidal/guest-mem.h"
#include "vmm/boot/boot.h"
#include "vmm/bus.h"
#include "vmm/config.h"
#include "vmm/devices/power.h"
#include "vmm/devices/serial.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/pci/pci.h"

struct api_server;
struct balloon;
struct virtio_mem;
struct dynmem;
struct event_loop;
struct memctl_client;
struct vm_paging;

enum vm_request {
        VM_REQUEST_NONE,
        VM_REQUEST_POWEROFF,
        VM_REQUEST_RESET,
        VM_REQUEST_SIGNAL,
        VM_REQUEST_FAILED,
        VM_REQUEST_REFUSED, /* tidald would not admit the boot: exit EXIT_REFUSED */
};

/* What outlives a guest reboot: configuration, boot files, console, event loop. */
struct vmm {
        const struct vm_config *cfg;
        /* Valid only while the kernel file is mapped (boot_files_map). */
        struct bzimage kernel;
        struct boot_file kernel_file;
        struct boot_file initrd; /* fd -1 when there is none */
        /* The kernel cache (vm-kernel.c): its directory (NULL: off) and this kernel's entry. */
        char *kernel_cache_dir;
        struct boot_file vmlinux_file; /* fd -1 when the kernel is not cached */
        bool kernel_direct;            /* the last boot entered the cached kernel */
        struct event_loop *loop;
        int request_fd; /* eventfd: a vCPU or device asked the VM to stop */
        int request;    /* enum vm_request, first one wins */
        int signal_fd;
        int signal_no;
        int console_in, console_out;
        struct termios saved_tty;
        bool tty_raw;

        /* Control socket, and what it set that must survive a guest reboot. */
        struct api_server *api;
        struct vm *vm; /* the running boot, NULL between boots */
        unsigned boots;
        uint64_t balloon_target;
        uint32_t stats_period_s;
        struct mem_settings mem; /* dynamic memory settings, as changed at runtime */

        /* tidald (src/vmm/memctl): NULL when dynamic memory runs standalone or is off. */
        struct memctl_client *memctl;
        bool memctl_tried; /* the default socket was tried (once per process) */
        bool admitting;    /* a boot waits for tidald before its vCPUs run */
};

/* One boot of the guest. */
struct vm {
        struct vmm *vmm;
        struct guest_mem mem;
        struct kvm_vm kvm;
        bool kvm_open;
        struct bus pio, mmio;
        struct serial serial;
        bool serial_up;
        struct power power;
        struct pci_bus pci;
        bool pci_up;
        struct virtio_dev *rng;
        struct balloon *balloon;
        struct virtio_mem *vmem;  /* NULL without a hot-plug region */
        struct dynmem *dynmem;    /* NULL with static memory */
        struct vm_paging *paging; /* smart paging (vm-smartpage.c), NULL when the boot has none */
        struct vcpu_env vcpu_env;
        struct vcpu *vcpus;
        unsigned nr_vcpus;
        bool config_error; /* the build failed because of what the user asked for */
};

/* Asks the main loop to stop the running boot; the first request wins. Any thread. */
void vmm_request(struct vmm *vmm, enum vm_request req);

/*
 * Changes dynamic memory settings under the runtime rules (from the control socket or from
 * tidald) and kicks dynamic memory. 0, or a negative errno with a message in err.
 */
int vmm_memory_change(struct vmm *vmm, const struct mem_settings *req, unsigned which, char *err,
                      size_t errlen);

/*
 * Connects to tidald as --memctl-socket / --no-memctl say (src/vmm/memctl/vmm-memctl.c).
 * 0, or a negative errno, logged, when an explicit --memctl-socket does not answer.
 */
int vmm_memctl_start(struct vmm *vmm);
void vmm_memctl_stop(struct vmm *vmm);
/*
 * Before a boot's vCPUs run: hands its dynamic memory to tidald and waits for the admission,
 * running the event loop. VM_REQUEST_NONE to go on; otherwise why the boot must stop.
 */
enum vm_request vmm_memctl_admit(struct vmm *vmm);
/* The boot is over: its dynamic memory goes away. */
void vmm_memctl_detach(struct vmm *vmm);

/* Starts the control socket (unless --api-socket none). 0 or -errno, logged. */
int vmm_api_start(struct vmm *vmm);
void vmm_api_stop(struct vmm *vmm);
