/* SPDX-License-Identifier: GPL-2.0-or-later */
/* One thread per vCPU, running KVM_RUN and dispatching the exits that reach user space. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

struct kvm_vm;
struct bus;

/* Why a vCPU asks the VM to stop. */
enum vcpu_event {
        VCPU_EVENT_RESET,    /* triple fault (the guest's last-resort reboot), or KVM says reset */
        VCPU_EVENT_POWEROFF, /* KVM reports a shutdown system event */
        VCPU_EVENT_FAILED,   /* KVM could not run the guest any further */
};

struct vcpu_env {
        struct kvm_vm *kvm;
        struct bus *pio;
        struct bus *mmio;
        void (*on_event)(void *opaque, unsigned vcpu_id, enum vcpu_event event);
        void *opaque;
};

struct vcpu {
        unsigned id;
        int fd;
        struct kvm_run *run;
        const struct vcpu_env *env;
        pthread_t thread;
        bool thread_started;
        bool stop; /* set by vcpu_stop(), read by the vCPU thread */
};

/* The signal used to kick vCPU threads out of KVM_RUN; its handler must be installed once. */
#define VCPU_KICK_SIGNAL SIGUSR1
int vcpu_install_kick_handler(void);

int vcpu_create(struct vcpu *v, const struct vcpu_env *env, unsigned id, unsigned nr_cpus);
/* Sets the boot processor's registers for the 64-bit Linux entry point. */
int vcpu_setup_boot_cpu(struct vcpu *v, uint64_t entry, uint64_t boot_params);
int vcpu_start(struct vcpu *v);
/*
 * Asks the thread to leave KVM_RUN and exit, without waiting: a thread blocked in a fault the
 * VMM must resolve first (smart paging) can then be released before vcpu_stop() joins it.
 */
void vcpu_request_stop(struct vcpu *v);
/* Makes the thread leave KVM_RUN and exit; then joins it. */
void vcpu_stop(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);
