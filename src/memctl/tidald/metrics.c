/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Prometheus text exposition (version 0.0.4) of the VMs and the host budget. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "memctl/tidald/tidald.h"
#include "tidal/macro.h"

/* A label value: backslash, double quote and newline escaped as the format requires. */
static void put_label(FILE *f, const char *s)
{
        for (; *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", f);
                else if (*s == '"')
                        fputs("\\\"", f);
                else if (*s == '\n')
                        fputs("\\n", f);
                else
                        fputc(*s, f);
        }
}

struct vm_gauge {
        const char *name, *help;
        uint64_t (*value)(const struct vm *vm);
        const char *type;  /* NULL: gauge */
        bool milliseconds; /* the value is in ms, shown in seconds */
};

static uint64_t assigned_of(const struct vm *vm)
{
        return vm->assigned;
}
static uint64_t demand_of(const struct vm *vm)
{
        return vm->demand;
}
static uint64_t minimum_of(const struct vm *vm)
{
        return vm->settings.minimum;
}
static uint64_t maximum_of(const struct vm *vm)
{
        return vm->settings.maximum;
}
static uint64_t grant_of(const struct vm *vm)
{
        return vm->grant;
}
static uint64_t balloon_of(const struct vm *vm)
{
        return vm->balloon;
}
static uint64_t vmem_of(const struct vm *vm)
{
        return vm->vmem_plugged;
}
static uint64_t weight_of(const struct vm *vm)
{
        return vm->settings.weight;
}
static uint64_t paging_active_of(const struct vm *vm)
{
        return vm->paging.active;
}
static uint64_t paging_file_of(const struct vm *vm)
{
        return vm->paging.file_bytes;
}
static uint64_t paging_in_of(const struct vm *vm)
{
        return vm->paging.pages_in;
}
static uint64_t paging_out_of(const struct vm *vm)
{
        return vm->paging.pages_out;
}
static uint64_t paging_ms_of(const struct vm *vm)
{
        return vm->paging.active_ms;
}

#define GAUGE(n, h, f)                                                                             \
        {                                                                                          \
                .name = (n), .help = (h), .value = (f)                                             \
        }
#define COUNTER(n, h, f)                                                                           \
        {                                                                                          \
                .name = (n), .help = (h), .value = (f), .type = "counter"                          \
        }

static const struct vm_gauge gauges[] = {
        GAUGE("tidal_vm_assigned_bytes", "Memory the guest holds", assigned_of),
        GAUGE("tidal_vm_demand_bytes", "Memory the guest needs (absent until it reports one)",
              demand_of),
        GAUGE("tidal_vm_minimum_bytes", "The VM's minimum memory", minimum_of),
        GAUGE("tidal_vm_maximum_bytes", "The VM's maximum memory", maximum_of),
        GAUGE("tidal_vm_grant_bytes", "The target tidald gave the VM", grant_of),
        GAUGE("tidal_vm_balloon_bytes", "Memory in the VM's balloon", balloon_of),
        GAUGE("tidal_vm_vmem_plugged_bytes", "Memory plugged with virtio-mem", vmem_of),
        GAUGE("tidal_vm_weight", "The VM's memory weight", weight_of),
        GAUGE("tidal_vm_smart_paging_active", "1 while smart paging backs part of the guest",
              paging_active_of),
        GAUGE("tidal_vm_smart_paging_file_bytes", "Size of the smart paging file", paging_file_of),
        COUNTER("tidal_vm_smart_paging_pages_in_total",
                "Pages smart paging read back from its file", paging_in_of),
        COUNTER("tidal_vm_smart_paging_pages_out_total", "Pages smart paging wrote to its file",
                paging_out_of),
        {.name = "tidal_vm_smart_paging_active_seconds",
         .help = "How long smart paging has been active",
         .value = paging_ms_of,
         .milliseconds = true},
};

static void put_vm_gauge(FILE *f, const struct daemon *d, const struct vm_gauge *g)
{
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", g->name, g->help, g->name,
                g->type ? g->type : "gauge");
        for (const struct vm *vm = d->vms; vm; vm = vm->next) {
                unsigned long long v = g->value(vm);

                if (g->value == demand_of && !vm->have_demand)
                        continue;
                fprintf(f, "%s{vm=\"", g->name);
                put_label(f, vm->name);
                if (g->milliseconds)
                        fprintf(f, "\"} %llu.%03llu\n", v / 1000, v % 1000);
                else
                        fprintf(f, "\"} %llu\n", v);
        }
}

/* One series per status, 1 for the VM's current one (the usual enum-as-gauge form). */
static void put_status(FILE *f, const struct daemon *d)
{
        fputs("# HELP tidal_vm_status Memory status of the VM (OK, Low, Warning)\n"
              "# TYPE tidal_vm_status gauge\n",
              f);
        for (const struct vm *vm = d->vms; vm; vm = vm->next)
                for (enum mem_status s = MEM_STATUS_OK; s <= MEM_STATUS_WARNING; s++) {
                        fputs("tidal_vm_status{vm=\"", f);
                        put_label(f, vm->name);
                        fprintf(f, "\",status=\"%s\"} %d\n", mem_status_name(s), vm->status == s);
                }
}

static void put_host(FILE *f, const struct daemon *d)
{
        fprintf(f,
                "# HELP tidal_host_budget_bytes Memory tidald may grant\n"
                "# TYPE tidal_host_budget_bytes gauge\n"
                "tidal_host_budget_bytes %llu\n"
                "# HELP tidal_host_granted_bytes Sum of the grants\n"
                "# TYPE tidal_host_granted_bytes gauge\n"
                "tidal_host_granted_bytes %llu\n"
                "# HELP tidal_host_vms Registered VMs\n"
                "# TYPE tidal_host_vms gauge\n"
                "tidal_host_vms %zu\n",
                (unsigned long long)d->host.budget, (unsigned long long)registry_granted(d),
                d->nr_vms);
}

int metrics_text(struct daemon *d, char **ret)
{
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        if (!f)
                return -ENOMEM;
        put_host(f, d);
        for (size_t i = 0; i < ARRAY_SIZE(gauges); i++)
                put_vm_gauge(f, d, &gauges[i]);
        put_status(f, d);
        if (ferror(f)) {
                fclose(f);
                free(text);
                return -ENOMEM;
        }
        fclose(f);
        *ret = text;
        return 0;
}
