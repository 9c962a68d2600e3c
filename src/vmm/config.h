/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the user asked for: the VM's configuration as parsed from the command line. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tidal/memory-settings.h"

#define VM_MIN_MEMORY     (64ULL << 20)
#define VM_MAX_MEMORY     (1ULL << 40) /* 1 TiB, as Hyper-V */
#define VM_MEMORY_ALIGN   (2ULL << 20) /* virtio-mem block size, so hot-plug lines up */
#define VM_CEILING_FACTOR 4            /* default ceiling: 4x maximum, so maximum can grow */
#define VM_MAX_CPUS       255          /* xAPIC IDs in the MADT; 255 is the broadcast ID */
#define VM_NAME_MAX       64

enum serial_mode {
        SERIAL_STDIO,
        SERIAL_FILE,
        SERIAL_NONE,
};

/* Whether a dynamic-memory VM takes its targets from the host daemon, tidald. */
enum memctl_mode {
        MEMCTL_MODE_AUTO,   /* try the default socket; run standalone if nobody listens */
        MEMCTL_MODE_SOCKET, /* --memctl-socket: tidald must answer there */
        MEMCTL_MODE_OFF,    /* --no-memctl: the standalone controller */
};

struct vm_config {
        char name[VM_NAME_MAX + 1];
        const char *kernel_path;
        const char *initrd_path;
        const char *cmdline;
        uint64_t memory;         /* RAM at boot: mem.startup */
        struct mem_settings mem; /* Startup, Minimum, Maximum, Buffer, Weight */
        uint64_t mem_ceiling;    /* dynamic: the most RAM the guest can ever be given */
        unsigned nr_cpus;
        enum serial_mode serial;
        const char *serial_path;
        const char *api_socket; /* NULL: the default path for the name; "none": no socket */
        enum memctl_mode memctl;
        const char *memctl_socket;    /* MEMCTL_MODE_SOCKET: the daemon's socket */
        const char *smart_paging_dir; /* paging files (docs/smart-paging.md); NULL: default */
        const char *kernel_cache;     /* decompressed kernels; NULL: default, "off": none */
        struct {
                bool enabled;
                bool deflate_on_oom;
                bool free_page_reporting;
                uint32_t stats_period_s;
        } balloon;
};
