/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The host budget (docs/tidald.md): MemTotal minus a reserve, or --host-memory; each round it
 * also shrinks to what the host really has left, so memory used by processes other than the
 * VMs is respected:
 *
 *   non_vm    = MemTotal - MemAvailable - sum(RSS of the VM processes)
 *   effective = min(budget, MemTotal - reserve - non_vm)
 *
 * The VMs' own memory is in their RSS, so it does not count against them twice.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "memctl/tidald/tidald.h"
#include "tidal/log.h"
#include "tidal/macro.h"

#define RESERVE_MIN     GiB
#define RESERVE_PERCENT 5

/* Reads "Key:   N kB" lines: every key in keys[] must be found. */
static int read_kb_fields(const char *path, const char *const *keys, uint64_t *values, size_t n)
{
        FILE *f = fopen(path, "re");
        char line[256];
        size_t found = 0;

        if (!f)
                return -errno;
        while (found < n && fgets(line, sizeof(line), f)) {
                for (size_t i = 0; i < n; i++) {
                        size_t len = strlen(keys[i]);
                        unsigned long long kb;

                        if (strncmp(line, keys[i], len) == 0 && line[len] == ':' &&
                            sscanf(line + len + 1, "%llu", &kb) == 1 && kb < (UINT64_MAX >> 10)) {
                                values[i] = (uint64_t)kb << 10;
                                found++;
                        }
                }
        }
        fclose(f);
        return found == n ? 0 : -ENODATA;
}

static int read_meminfo(struct host *h)
{
        static const char *const keys[] = {"MemTotal", "MemAvailable"};
        uint64_t v[2];
        int r;

        r = read_kb_fields("/proc/meminfo", keys, v, 2);
        if (r < 0)
                return r;
        h->total = v[0];
        h->available = MIN(v[1], v[0]);
        return 0;
}

static uint64_t rss_of(pid_t pid)
{
        static const char *const keys[] = {"VmRSS"};
        char path[64];
        uint64_t rss = 0;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        if (pid <= 0 || read_kb_fields(path, keys, &rss, 1) < 0)
                return 0;
        return rss;
}

static uint64_t reserve_of(const struct host *h)
{
        return h->reserve ? h->reserve : MAX(RESERVE_MIN, h->total / 100 * RESERVE_PERCENT);
}

static uint64_t configured_budget(const struct host *h)
{
        uint64_t reserve = reserve_of(h);

        if (h->fixed_memory)
                return h->fixed_memory;
        return h->total > reserve ? h->total - reserve : 0;
}

int host_init(struct host *h)
{
        int r = read_meminfo(h);

        if (r < 0)
                return log_errno(r, "cannot read MemTotal and MemAvailable from /proc/meminfo");
        h->budget = ALIGN_DOWN(configured_budget(h), MEM_BLOCK_SIZE);
        return 0;
}

void host_update(struct daemon *d)
{
        struct host *h = &d->host;
        uint64_t vm_rss = 0, used, non_vm, room, reserve = reserve_of(h);

        if (read_meminfo(h) < 0)
                return; /* keep the last budget */
        for (struct vm *vm = d->vms; vm; vm = vm->next) {
                vm->rss = rss_of(vm->pid);
                vm_rss += vm->rss;
        }
        used = h->total - h->available;
        non_vm = used > vm_rss ? used - vm_rss : 0;
        room = h->total > reserve + non_vm ? h->total - reserve - non_vm : 0;
        h->budget = ALIGN_DOWN(MIN(configured_budget(h), room), MEM_BLOCK_SIZE);
}
