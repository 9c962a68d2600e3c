/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A minimal KVM guest for the paging tests, without Linux in it: vCPUs in 64-bit mode run a
 * small program (kvm-guest.c) that writes a pattern over its share of RAM and reads it back,
 * pass after pass, reporting every page that reads wrong, and any exception, through port I/O.
 * Guest RAM is a memfd mapped once (ram): whatever pages it is what the test is about.
 */
#pragma once

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define KVM_GUEST_PAGE      4096u
#define KVM_GUEST_MAX_VCPUS 8u
#define KVM_GUEST_DATA_GPA  (4u << 20) /* below: tables, code, stacks; above: the pattern */

struct kvm_guest_options {
        uint64_t memory; /* bytes, a 2 MiB multiple, at most 1 GiB */
        unsigned vcpus, passes;
        bool small_pages; /* 4 KiB guest page tables, in guest RAM like the rest */
};

struct kvm_guest_vcpu {
        struct kvm_guest *g;
        unsigned id;
        int fd;
        struct kvm_run *run;
        pthread_t thread;
        uint64_t start, end; /* its share of RAM, guest physical */
        bool done;           /* the guest program finished */
        bool exited;         /* the thread is about to return */
        int error;           /* negative errno of a failed KVM_RUN, or 1 for a bad exit */
};

struct kvm_guest {
        struct kvm_guest_options o;
        int kvm, vm, memfd;
        uint8_t *ram;
        size_t run_size;
        uint64_t stride; /* the read-back's page order: a step prime to the share's pages */
        struct kvm_guest_vcpu vcpus[KVM_GUEST_MAX_VCPUS];
        atomic_uint_fast64_t bad_pages;
        pthread_mutex_t print_lock;
        uint64_t start_ns;
};

/* Opens /dev/kvm; -ENOENT or -EACCES when there is none to use (the caller skips). */
int kvm_guest_open(struct kvm_guest *g, const struct kvm_guest_options *o);
/* The VM, its RAM (page tables, code) and vCPUs, ready to run. */
int kvm_guest_create(struct kvm_guest *g);
/* Starts one thread per vCPU; the clock of kvm_guest_elapsed() starts here. */
int kvm_guest_start(struct kvm_guest *g);
bool kvm_guest_all_exited(struct kvm_guest *g);
/* Joins the vCPU threads (all exited); true if every vCPU finished its program cleanly. */
bool kvm_guest_join(struct kvm_guest *g);
/* Every word as the last pass left it, read from the host; the number of wrong ones. */
uint64_t kvm_guest_check_from_host(struct kvm_guest *g);
double kvm_guest_elapsed(const struct kvm_guest *g);
/* Prints every thread's kernel stack: where a stuck vCPU waits. */
void kvm_guest_dump_threads(void);
