/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "smartpage/smartpage.h"
#include "tidal/event-loop.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "virtio-balloon/balloon.h"
#include "virtio-mem/virtio-mem.h"
#include "vmm/acpi/tables.h"
#include "vmm/boot/boot.h"
#include "vmm/bus.h"
#include "vmm/cli.h"
#include "vmm/devices/power.h"
#include "vmm/devices/serial.h"
#include "vmm/dynmem/dynmem.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/layout.h"
#include "vmm/pci/pci.h"
#include "vmm/virtio/pci-modern.h"
#include "vmm/virtio/rng.h"
#include "vmm/vm-internal.h"
#include "vmm/vm-kernel.h"
#include "vmm/vm-smartpage.h"
#include "vmm/vm-virtio-mem.h"
#include "vmm/vm.h"

#define INITRD_MAX_SIZE (2ULL << 30)

void vmm_request(struct vmm *vmm, enum vm_request req)
{
        int none = VM_REQUEST_NONE;
        uint64_t one = 1;

        if (!__atomic_compare_exchange_n(&vmm->request, &none, req, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
                return;
        log_debug("stop requested (%d)", req);
        if (write(vmm->request_fd, &one, sizeof(one)) < 0)
                log_warn_errno(-errno, "cannot wake the main loop");
}

static void on_request_fd(void *opaque, uint32_t events)
{
        struct vmm *vmm = opaque;
        uint64_t v;

        if (read(vmm->request_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_warn_errno(-errno, "reading the request eventfd");
        event_loop_quit(vmm->loop);
}

static void on_signal(void *opaque, uint32_t events)
{
        struct vmm *vmm = opaque;
        struct signalfd_siginfo si;

        if (read(vmm->signal_fd, &si, sizeof(si)) != sizeof(si))
                return;
        vmm->signal_no = (int)si.ssi_signo;
        vmm_request(vmm, VM_REQUEST_SIGNAL);
}

static void on_vcpu_event(void *opaque, unsigned vcpu_id, enum vcpu_event event)
{
        struct vm *vm = opaque;

        switch (event) {
        case VCPU_EVENT_RESET:
                vmm_request(vm->vmm, VM_REQUEST_RESET);
                break;
        case VCPU_EVENT_POWEROFF:
                vmm_request(vm->vmm, VM_REQUEST_POWEROFF);
                break;
        default:
                vmm_request(vm->vmm, VM_REQUEST_FAILED);
                break;
        }
}

static void on_power_event(void *opaque, enum power_event event)
{
        struct vm *vm = opaque;

        vmm_request(vm->vmm,
                    event == POWER_EVENT_POWEROFF ? VM_REQUEST_POWEROFF : VM_REQUEST_RESET);
}

static int setup_legacy_devices(struct vm *vm)
{
        struct vmm *vmm = vm->vmm;
        int r;

        power_init(&vm->power, on_power_event, vm);
        r = bus_register(&vm->pio, LAYOUT_PORT_ACPI_SLEEP_CONTROL, 3, power_acpi_io, &vm->power);
        if (r >= 0)
                r = bus_register(&vm->pio, LAYOUT_PORT_I8042_DATA,
                                 LAYOUT_PORT_I8042_CMD - LAYOUT_PORT_I8042_DATA + 1, power_i8042_io,
                                 &vm->power);
        if (r < 0)
                return log_errno(r, "cannot register the power-management ports");

        r = serial_init(&vm->serial, &vm->kvm, LAYOUT_IRQ_COM1, vmm->loop, vmm->console_in,
                        vmm->console_out);
        if (r < 0)
                return log_errno(r, "cannot set up the serial console");
        vm->serial_up = true;
        r = bus_register(&vm->pio, LAYOUT_PORT_COM1, 8, serial_io, &vm->serial);
        if (r < 0)
                return log_errno(r, "cannot register the serial port");
        return 0;
}

/* The balloon's target and stats period are the VMM's: a rebuilt device gets them back. */
static int setup_balloon(struct vm *vm)
{
        const struct vm_config *cfg = vm->vmm->cfg;
        struct balloon_options opts = {
                .deflate_on_oom = cfg->balloon.deflate_on_oom,
                .free_page_reporting = cfg->balloon.free_page_reporting,
                .stats_period_s = vm->vmm->stats_period_s,
        };
        int r;

        if (!cfg->balloon.enabled)
                return 0;
        r = balloon_new(&opts, &vm->mem, &vm->balloon);
        if (r < 0)
                return log_errno(r, "cannot create the virtio-balloon device");
        r = balloon_set_target(vm->balloon, vm->vmm->balloon_target);
        if (r < 0)
                return log_errno(r, "cannot restore the balloon target");
        r = virtio_pci_create(&vm->pci, &vm->kvm, vm->vmm->loop, &vm->mem,
                              balloon_virtio_dev(vm->balloon), NULL);
        if (r < 0)
                return log_errno(r, "cannot attach virtio-balloon to PCI");
        return 0;
}

static int setup_pci(struct vm *vm)
{
        int r;

        r = pci_bus_init(&vm->pci, &vm->pio, &vm->mmio);
        if (r < 0)
                return log_errno(r, "cannot set up the PCI host bridge");
        vm->pci_up = true;
        r = virtio_rng_new(&vm->rng);
        if (r < 0)
                return log_errno(r, "cannot create the virtio-rng device");
        r = virtio_pci_create(&vm->pci, &vm->kvm, vm->vmm->loop, &vm->mem, vm->rng, NULL);
        if (r < 0)
                return log_errno(r, "cannot attach virtio-rng to PCI");
        r = setup_balloon(vm);
        if (r < 0)
                return r;
        return vm_setup_virtio_mem(vm);
}

/* Every boot starts at Startup; the settings, as changed at runtime, live in the vmm. */
static int setup_dynmem(struct vm *vm)
{
        int r;

        if (!vm->vmm->mem.dynamic)
                return 0;
        r = dynmem_new(vm->vmm->loop, &vm->vmm->mem, vm->balloon, vm->vmem,
                       vm_hotplug_region_size(vm->vmm->cfg), &vm->dynmem);
        if (r < 0)
                return log_errno(r, "cannot start the dynamic memory controller");
        return 0;
}

static void boot_files_unmap(struct vmm *vmm)
{
        boot_file_unmap(&vmm->kernel_file);
        boot_file_unmap(&vmm->initrd);
}

/* Maps the boot files again (for a boot after the first) and re-checks the kernel. */
static int boot_files_map(struct vmm *vmm)
{
        const char *why = NULL;
        int r;

        r = boot_file_map(&vmm->kernel_file);
        if (r >= 0 && vmm->initrd.fd >= 0)
                r = boot_file_map(&vmm->initrd);
        if (r < 0)
                return log_errno(r, "cannot map the kernel or initrd");
        r = bzimage_parse(vmm->kernel_file.data, vmm->kernel_file.size, &vmm->kernel, &why);
        if (r < 0)
                return log_error("kernel '%s' changed and is no longer valid: %s",
                                 vmm->cfg->kernel_path, why),
                       r;
        return 0;
}

static int load_guest(struct vm *vm)
{
        const struct vm_config *cfg = vm->vmm->cfg;
        _cleanup_free_ char *cmdline = vm_guest_cmdline(cfg);
        struct acpi_config acpi = {.nr_cpus = cfg->nr_cpus};
        struct boot_spec spec = {
                .kernel = &vm->vmm->kernel,
                .initrd = &vm->vmm->initrd,
                .cmdline = cmdline,
        };
        struct boot_layout layout;
        const char *why = NULL;
        struct vmlinux vmlinux;
        void *acpi_area;
        int r;

        if (!cmdline)
                return log_errno(-ENOMEM, "cannot build the kernel command line");
        acpi_area = guest_mem_ptr(&vm->mem, LAYOUT_ACPI_ADDR, LAYOUT_ACPI_SIZE);
        if (!acpi_area)
                return log_errno(-ENOSPC, "no RAM for the ACPI tables");
        r = acpi_build_tables(acpi_area, LAYOUT_ACPI_SIZE, LAYOUT_ACPI_ADDR, &acpi, &spec.rsdp_gpa);
        if (r < 0)
                return log_errno(r, "cannot build the ACPI tables");
        r = boot_files_map(vm->vmm);
        if (r < 0)
                return r;
        vmm_kernel_prepare(vm->vmm, &spec, &vmlinux);
        r = boot_load(&vm->mem, &spec, &layout, &why);
        if (r == -ENOEXEC && spec.direct) {
                log_warn("kernel cache: cannot enter the cached kernel (%s); the guest "
                         "decompresses",
                         why);
                spec.direct = NULL;
                r = boot_load(&vm->mem, &spec, &layout, &why);
        }
        vm->vmm->kernel_direct = spec.direct != NULL;
        vmm_kernel_unmap(vm->vmm);
        boot_files_unmap(vm->vmm);
        if (r < 0) {
                vm->config_error = r == -ENOSPC || r == -E2BIG;
                return log_errno(r, "cannot load the kernel: %s", why);
        }
        r = vcpu_setup_boot_cpu(&vm->vcpus[0], layout.entry_gpa, layout.boot_params_gpa);
        if (r < 0)
                return log_errno(r, "cannot set the boot CPU's registers");
        return 0;
}

static int create_vcpus(struct vm *vm)
{
        unsigned n = vm->vmm->cfg->nr_cpus;
        int r;

        vm->vcpu_env = (struct vcpu_env){
                .kvm = &vm->kvm,
                .pio = &vm->pio,
                .mmio = &vm->mmio,
                .on_event = on_vcpu_event,
                .opaque = vm,
        };
        vm->vcpus = calloc(n, sizeof(*vm->vcpus));
        if (!vm->vcpus)
                return log_errno(-ENOMEM, "cannot allocate vCPUs");
        for (unsigned i = 0; i < n; i++) {
                r = vcpu_create(&vm->vcpus[i], &vm->vcpu_env, i, n);
                vm->nr_vcpus = i + 1; /* even a half-made vCPU must be destroyed */
                if (r < 0)
                        return log_errno(r, "cannot create vCPU %u", i);
        }
        return 0;
}

static int open_kvm(struct vm *vm)
{
        const char *why;
        int max_vcpus, r;

        r = kvm_vm_open(&vm->kvm, &why);
        if (r == -ENOENT)
                return log_error("/dev/kvm does not exist: this machine offers no KVM (no "
                                 "hardware virtualization, or the kvm module is not loaded). "
                                 "On such a machine run tidal inside the nested rig: "
                                 "tests/rig/run -- tidal run ... (see docs/testing.md)"),
                       -ENOENT;
        if (r < 0)
                return log_errno(r, "cannot use KVM: %s", why);
        vm->kvm_open = true;
        max_vcpus = ioctl(vm->kvm.sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
        if (max_vcpus > 0 && vm->vmm->cfg->nr_cpus > (unsigned)max_vcpus) {
                vm->config_error = true;
                return log_error("--cpus %u: KVM on this host allows at most %d vCPUs",
                                 vm->vmm->cfg->nr_cpus, max_vcpus),
                       -E2BIG;
        }
        return 0;
}

/* Guest RAM is shmem: without shmem huge pages every guest fault is a 4 KiB one. Say so once. */
static void hint_shmem_huge_pages(void)
{
        static const char path[] = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";
        char buf[128] = "";
        FILE *f = fopen(path, "re");

        if (!f)
                return;
        if (fgets(buf, sizeof(buf), f) && strstr(buf, "[never]"))
                log_info("guest RAM will use 4 KiB pages: set %s to 'advise' for huge pages "
                         "(faster boots and guests, see docs/tidal.md)",
                         path);
        fclose(f);
}

static int vm_build(struct vm *vm)
{
        int r;

        bus_init(&vm->pio, "pio");
        bus_init(&vm->mmio, "mmio");
        r = vm_guest_mem_init(vm);
        if (r < 0)
                return r;
        r = open_kvm(vm);
        if (r < 0)
                return r;
        /* After the KVM check: a VMM that cannot run at all should say only why. */
        if (vm->vmm->boots == 0)
                hint_shmem_huge_pages();
        r = kvm_vm_map_memory(&vm->kvm, &vm->mem);
        if (r < 0)
                return log_errno(r, "cannot map guest RAM into KVM");
        r = setup_legacy_devices(vm);
        if (r < 0)
                return r;
        r = setup_pci(vm);
        if (r < 0)
                return r;
        r = setup_dynmem(vm);
        if (r < 0)
                return r;
        r = create_vcpus(vm);
        if (r < 0)
                return r;
        return load_guest(vm);
}

static void vm_teardown(struct vm *vm)
{
        log_debug("tearing the VM down");
        for (unsigned i = 0; i < vm->nr_vcpus; i++)
                vcpu_request_stop(&vm->vcpus[i]);
        /* Before the joins: a vCPU may wait in a fault only the paging engine resolves. */
        vm_paging_free(vm);
        for (unsigned i = 0; i < vm->nr_vcpus; i++)
                vcpu_stop(&vm->vcpus[i]);
        log_debug("vCPUs stopped");
        dynmem_free(vm->dynmem);
        if (vm->pci_up)
                pci_bus_destroy(&vm->pci);
        /* The transport is gone with the bus; the device itself is ours. */
        if (vm->rng)
                virtio_rng_free(vm->rng);
        balloon_free(vm->balloon);
        virtio_mem_free(vm->vmem);
        if (vm->serial_up)
                serial_destroy(&vm->serial);
        for (unsigned i = 0; i < vm->nr_vcpus; i++)
                vcpu_destroy(&vm->vcpus[i]);
        free(vm->vcpus);
        if (vm->kvm_open)
                kvm_vm_close(&vm->kvm);
        guest_mem_release(&vm->mem);
        bus_destroy(&vm->pio);
        bus_destroy(&vm->mmio);
}

/* Boots the guest once and runs it until something asks it to stop. */
static enum vm_request vm_run_once(struct vmm *vmm, bool *config_error)
{
        struct vm vm = {.vmm = vmm};
        enum vm_request req = VM_REQUEST_FAILED;
        int r;

        vmm->request = VM_REQUEST_NONE;
        r = vm_build(&vm);
        *config_error = vm.config_error;
        if (r < 0)
                goto out;
        vmm->vm = &vm;
        /* tidald must find the memory before the guest runs (and a guest reboot asks again). */
        req = vmm_memctl_admit(vmm);
        if (req != VM_REQUEST_NONE)
                goto out;
        if (!vm.paging)
                guest_mem_use_huge_pages(&vm.mem, true); /* for a boot that held them back */
        req = VM_REQUEST_FAILED;
        for (unsigned i = 0; i < vm.nr_vcpus; i++) {
                r = vcpu_start(&vm.vcpus[i]);
                if (r < 0) {
                        log_errno(r, "cannot start vCPU %u", i);
                        goto out;
                }
        }
        vmm->boots++;
        r = event_loop_run(vmm->loop);
        if (r < 0)
                log_errno(r, "event loop failed");
        else
                req = (enum vm_request)__atomic_load_n(&vmm->request, __ATOMIC_ACQUIRE);
out:
        vmm->vm = NULL;
        vmm_memctl_detach(vmm);
        vm_teardown(&vm);
        return req;
}

/* Memory too small for this kernel and initrd is a configuration error: say so before starting. */
static int check_boot_fits(struct vmm *vmm)
{
        struct boot_layout layout;
        struct guest_mem plan;
        const char *why = NULL;
        int r;

        r = guest_mem_plan(&plan, vmm->cfg->memory, LAYOUT_PCI_HOLE_START);
        if (r < 0)
                return log_errno(r, "--memory: cannot lay out guest RAM");
        r = boot_plan(&vmm->kernel, NULL, vmm->initrd.size, &plan, &layout, &why);
        if (r < 0)
                return log_error("--memory %llu MiB: %s",
                                 (unsigned long long)(vmm->cfg->memory >> 20), why),
                       r;
        vmm_kernel_cache_open(vmm, &plan);
        return 0;
}

static int load_boot_files(struct vmm *vmm)
{
        const struct vm_config *cfg = vmm->cfg;
        _cleanup_free_ char *cmdline = vm_guest_cmdline(cfg);
        const char *why = NULL;
        int r;

        if (!cmdline)
                return log_errno(-ENOMEM, "cannot build the kernel command line");
        r = boot_file_open(cfg->kernel_path, KERNEL_MAX_SIZE, &vmm->kernel_file);
        if (r < 0)
                return log_errno(r, "cannot read kernel '%s'", cfg->kernel_path);
        r = bzimage_parse(vmm->kernel_file.data, vmm->kernel_file.size, &vmm->kernel, &why);
        if (r < 0)
                return log_error("kernel '%s': %s", cfg->kernel_path, why), r;
        if (strlen(cmdline) > bzimage_cmdline_max(&vmm->kernel))
                return log_error("--cmdline: %zu bytes%s, this kernel accepts at most %zu",
                                 strlen(cmdline),
                                 strcmp(cmdline, cfg->cmdline) ? " with memhp_default_state=" : "",
                                 bzimage_cmdline_max(&vmm->kernel)),
                       -E2BIG;
        if (cfg->initrd_path) {
                r = boot_file_open(cfg->initrd_path, INITRD_MAX_SIZE, &vmm->initrd);
                if (r < 0)
                        return log_errno(r, "cannot read initrd '%s'", cfg->initrd_path);
        }
        r = check_boot_fits(vmm);
        boot_files_unmap(vmm);
        return r;
}

/* Raw mode on an interactive console so the guest sees every key; Ctrl-C still stops tidal. */
static void console_tty_raw(struct vmm *vmm)
{
        struct termios t;

        if (!isatty(vmm->console_in) || tcgetattr(vmm->console_in, &vmm->saved_tty) < 0)
                return;
        t = vmm->saved_tty;
        t.c_lflag &= ~(tcflag_t)(ICANON | ECHO | IEXTEN);
        t.c_iflag &= ~(tcflag_t)(ICRNL | IXON);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        if (tcsetattr(vmm->console_in, TCSANOW, &t) == 0)
                vmm->tty_raw = true;
}

static int open_console(struct vmm *vmm)
{
        const struct vm_config *cfg = vmm->cfg;

        vmm->console_in = -1;
        vmm->console_out = -1;
        switch (cfg->serial) {
        case SERIAL_STDIO:
                vmm->console_in = STDIN_FILENO;
                vmm->console_out = STDOUT_FILENO;
                console_tty_raw(vmm);
                return 0;
        case SERIAL_FILE:
                vmm->console_out = open(cfg->serial_path,
                                        O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
                if (vmm->console_out < 0)
                        return log_errno(-errno, "--serial: cannot open '%s'", cfg->serial_path);
                return 0;
        case SERIAL_NONE:
                vmm->console_out = open("/dev/null", O_WRONLY | O_CLOEXEC);
                return vmm->console_out < 0 ? -errno : 0;
        }
        return -EINVAL;
}

static int setup_events(struct vmm *vmm)
{
        sigset_t mask;
        int r;

        r = event_loop_new(&vmm->loop);
        if (r < 0)
                return log_errno(r, "cannot create the event loop");
        vmm->request_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vmm->request_fd < 0)
                return log_errno(-errno, "cannot create an eventfd");
        r = event_loop_add_fd(vmm->loop, vmm->request_fd, EPOLLIN, on_request_fd, vmm, NULL);
        if (r < 0)
                return log_errno(r, "cannot watch the request eventfd");

        /* Blocked in every thread (vCPU threads inherit the mask) and read through signalfd. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        vmm->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (vmm->signal_fd < 0)
                return log_errno(-errno, "cannot create a signalfd");
        r = event_loop_add_fd(vmm->loop, vmm->signal_fd, EPOLLIN, on_signal, vmm, NULL);
        if (r < 0)
                return log_errno(r, "cannot watch signals");
        r = vcpu_install_kick_handler();
        if (r < 0)
                return log_errno(r, "cannot install the vCPU kick handler");
        return vmm_api_start(vmm);
}

static void vmm_release(struct vmm *vmm)
{
        vmm_memctl_stop(vmm);
        vmm_api_stop(vmm);
        if (vmm->tty_raw)
                tcsetattr(vmm->console_in, TCSANOW, &vmm->saved_tty);
        if (vmm->console_out > STDERR_FILENO)
                close(vmm->console_out);
        if (vmm->signal_fd >= 0)
                close(vmm->signal_fd);
        if (vmm->request_fd >= 0)
                close(vmm->request_fd);
        event_loop_free(vmm->loop);
        boot_file_close(&vmm->kernel_file);
        boot_file_close(&vmm->initrd);
        vmm_kernel_close(vmm);
}

static int run_until_stopped(struct vmm *vmm)
{
        for (unsigned boot = 1;; boot++) {
                bool config_error = false;
                enum vm_request req = vm_run_once(vmm, &config_error);

                switch (req) {
                case VM_REQUEST_POWEROFF:
                        log_info("guest powered off");
                        return 0;
                case VM_REQUEST_SIGNAL:
                        log_info("stopped by signal %d (%s)", vmm->signal_no,
                                 strsignal(vmm->signal_no));
                        return 0;
                case VM_REQUEST_RESET:
                        log_info("guest rebooted; starting boot %u", boot + 1);
                        continue;
                case VM_REQUEST_REFUSED:
                        return EXIT_REFUSED;
                default:
                        /* Too many vCPUs for KVM, too little RAM for the kernel: usage errors. */
                        return config_error ? EXIT_USAGE : 1;
                }
        }
}

/* A tidal killed while paging left its file: this VM's next start removes it. */
static void remove_stale_paging_file(const struct vm_config *cfg)
{
        int r = smartpage_remove_stale(cfg->smart_paging_dir, cfg->name);

        if (r < 0)
                log_warn_errno(
                        r, "smart paging: cannot remove a stale paging file of %s in %s", cfg->name,
                        cfg->smart_paging_dir ? cfg->smart_paging_dir : SMARTPAGE_DEFAULT_DIR);
}

int vmm_run(const struct vm_config *cfg)
{
        struct vmm vmm = {
                .cfg = cfg,
                .stats_period_s = cfg->balloon.stats_period_s,
                .mem = cfg->mem,
                .kernel_file.fd = -1,
                .initrd.fd = -1,
                .vmlinux_file.fd = -1,
                .request_fd = -1,
                .signal_fd = -1,
                .console_in = -1,
                .console_out = -1,
        };
        int status;

        if (load_boot_files(&vmm) < 0) {
                vmm_release(&vmm);
                return EXIT_USAGE;
        }
        if (open_console(&vmm) < 0) {
                vmm_release(&vmm);
                return EXIT_USAGE;
        }
        if (setup_events(&vmm) < 0) {
                vmm_release(&vmm);
                return 1;
        }
        /* Before KVM: a daemon that was asked for and is not there is a configuration error. */
        if (vmm_memctl_start(&vmm) < 0) {
                vmm_release(&vmm);
                return EXIT_USAGE;
        }
        remove_stale_paging_file(cfg);
        status = run_until_stopped(&vmm);
        vmm_release(&vmm);
        return status;
}
