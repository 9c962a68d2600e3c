/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Dynamic memory settings (docs/dynamic-memory.md), as in Hyper-V: Startup, Minimum, Maximum,
 * Buffer and Weight, their limits and the rules for changing them while the VM runs. Shared by
 * the VMM (command line, control socket) and the host daemon (tidalctl set).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEM_MINIMUM_FLOOR   (32ULL << 20) /* the smallest Minimum */
#define MEM_SETTINGS_MAX    (1ULL << 40)  /* 1 TiB: the largest Startup or Maximum */
#define MEM_BLOCK_SIZE      (2ULL << 20)  /* every amount is a multiple of this (virtio-mem) */
#define MEM_BUFFER_MIN      5u            /* percent */
#define MEM_BUFFER_MAX      2000u
#define MEM_BUFFER_DEFAULT  20u
#define MEM_WEIGHT_MAX      10000u
#define MEM_WEIGHT_DEFAULT  5000u
#define MEM_MINIMUM_DEFAULT (512ULL << 20) /* capped at Startup */

struct mem_settings {
        bool dynamic;     /* false: static memory, the guest has startup and nothing moves */
        uint64_t startup; /* bytes the guest boots with */
        uint64_t minimum; /* never take the guest below this */
        uint64_t maximum; /* never give it more than this */
        unsigned buffer;  /* percent to hold above demand */
        unsigned weight;  /* priority when memory is short, 0..10000 */
};

/* Which settings a change names; the others keep their current value. */
enum {
        MEM_SET_DYNAMIC = 1u << 0,
        MEM_SET_STARTUP = 1u << 1,
        MEM_SET_MINIMUM = 1u << 2,
        MEM_SET_MAXIMUM = 1u << 3,
        MEM_SET_BUFFER = 1u << 4,
        MEM_SET_WEIGHT = 1u << 5,
};

/* Static memory of `startup` bytes with the default buffer and weight. */
void mem_settings_static(struct mem_settings *s, uint64_t startup);

/*
 * Checks the settings on their own: 32 MiB <= minimum <= startup <= maximum <= 1 TiB, all
 * multiples of 2 MiB, buffer 5..2000, weight 0..10000. 0 or -EINVAL with a message in err.
 */
int mem_settings_check(const struct mem_settings *s, char *err, size_t errlen);

/*
 * Applies the settings named in `which` from `req` to `cur`, under the runtime rules when
 * `running`: minimum may be lowered but not raised, maximum raised but not lowered, buffer and
 * weight change freely, startup and dynamic only while the VM is off. On success writes the
 * result to `ret` and returns 0; otherwise -EINVAL (bad value), -EPERM (a runtime rule) with a
 * message naming the rule in err, and `ret` untouched.
 */
int mem_settings_change(const struct mem_settings *cur, const struct mem_settings *req,
                        unsigned which, bool running, struct mem_settings *ret, char *err,
                        size_t errlen);

enum mem_status {
        MEM_STATUS_OK,      /* assigned >= demand * (1 + buffer) */
        MEM_STATUS_LOW,     /* demand <= assigned < demand * (1 + buffer) */
        MEM_STATUS_WARNING, /* assigned < demand */
};

/* demand * (1 + buffer/100), saturating. */
uint64_t mem_with_buffer(uint64_t demand, unsigned buffer);

/* Hyper-V Manager's memory status of a VM. */
enum mem_status mem_status_of(uint64_t assigned, uint64_t demand, unsigned buffer);

/* "OK", "Low", "Warning". */
const char *mem_status_name(enum mem_status status);
