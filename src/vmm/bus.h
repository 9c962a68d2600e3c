/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Port I/O and MMIO dispatch for exits that reach user space. Devices register address ranges;
 * vCPU threads look them up on every KVM_EXIT_IO / KVM_EXIT_MMIO. Ranges may be added, moved
 * (PCI BAR reprogramming) and removed while vCPUs run.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * offset is relative to the registered base. For reads the handler fills data[0..len); an
 * unclaimed read returns all ones.
 */
typedef void (*bus_io_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
                          bool is_write);

struct bus_range {
        uint64_t base;
        uint64_t len;
        bus_io_fn fn;
        void *opaque;
};

#define BUS_MAX_RANGES 64

struct bus {
        const char *name;
        pthread_rwlock_t lock;
        unsigned nr_ranges;
        struct bus_range ranges[BUS_MAX_RANGES]; /* sorted by base, never overlapping */
};

void bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);

/* -EEXIST if it overlaps a registered range, -ENOSPC when full, -EINVAL for len 0 / wrap. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque);
/* Removes the range registered at base for opaque. -ENOENT if none. */
int bus_unregister(struct bus *bus, uint64_t base, void *opaque);

/*
 * Dispatches an access. Returns 0 if a device handled it, -ENOENT if nothing is mapped there
 * (reads then see 0xff bytes, writes are dropped).
 */
int bus_access(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);
