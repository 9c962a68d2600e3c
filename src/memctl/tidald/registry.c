/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The registered VMs: unique names, their owner, settings, grant and last report. */
#include <stdlib.h>
#include <string.h>

#include "memctl/tidald/tidald.h"
#include "tidal/macro.h"

struct vm *registry_find(struct daemon *d, const char *name)
{
        for (struct vm *vm = d->vms; vm; vm = vm->next)
                if (strcmp(vm->name, name) == 0)
                        return vm;
        return NULL;
}

/* Appends, so the registry keeps registration order (admissions are served in it). */
struct vm *registry_add(struct daemon *d, struct conn *c, const struct memctl_msg *reg)
{
        struct vm *vm = calloc(1, sizeof(*vm));
        struct vm **tail = &d->vms;

        if (!vm)
                return NULL;
        vm->conn = c;
        memcpy(vm->name, reg->reg.name, sizeof(vm->name));
        memcpy(vm->uuid, reg->reg.uuid, sizeof(vm->uuid));
        vm->uid = conn_uid(c);
        vm->pid = conn_pid(c);
        vm->settings = reg->reg.settings;
        vm->status = MEM_STATUS_OK;
        while (*tail)
                tail = &(*tail)->next;
        *tail = vm;
        d->nr_vms++;
        return vm;
}

void registry_remove(struct daemon *d, struct vm *vm)
{
        for (struct vm **p = &d->vms; *p; p = &(*p)->next)
                if (*p == vm) {
                        *p = vm->next;
                        d->nr_vms--;
                        break;
                }
        free(vm);
}

/* Sum of the grants: memory handed out (an admitting VM's startup is spoken for). */
uint64_t registry_granted(const struct daemon *d)
{
        uint64_t sum = 0;

        for (const struct vm *vm = d->vms; vm; vm = vm->next)
                sum += vm->grant;
        return sum;
}

const char *vm_state_name(enum vm_state state)
{
        switch (state) {
        case VM_ADMITTING:
                return "admitting";
        case VM_RUNNING:
                return "running";
        case VM_RESTARTING:
                return "restarting";
        }
        return "unknown";
}

void vm_send_target(struct vm *vm, uint64_t bytes)
{
        struct memctl_msg m = {.type = MEMCTL_TARGET, .target.bytes = bytes};

        vm->grant = bytes;
        conn_send_msg(vm->conn, &m);
}

static int add(struct json_object *o, const char *key, struct json_object *v)
{
        /* json-c takes a NULL value as null; only the insertion itself can fail. */
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -1;
        }
        return 0;
}

/* The VM as `list` and `set` show it (docs/tidald.md). NULL when out of memory. */
struct json_object *vm_to_json(const struct vm *vm)
{
        struct json_object *o = json_object_new_object();
        const struct mem_settings *s = &vm->settings;

        if (!o)
                return NULL;
        if (add(o, "name", json_object_new_string(vm->name)) < 0 ||
            add(o, "uuid", json_object_new_string(vm->uuid)) < 0 ||
            add(o, "uid", json_object_new_uint64(vm->uid)) < 0 ||
            add(o, "pid", json_object_new_int64(vm->pid)) < 0 ||
            add(o, "state", json_object_new_string(vm_state_name(vm->state))) < 0 ||
            add(o, "startup_bytes", json_object_new_uint64(s->startup)) < 0 ||
            add(o, "minimum_bytes", json_object_new_uint64(s->minimum)) < 0 ||
            add(o, "maximum_bytes", json_object_new_uint64(s->maximum)) < 0 ||
            add(o, "assigned_bytes", json_object_new_uint64(vm->assigned)) < 0 ||
            add(o, "demand_bytes", vm->have_demand ? json_object_new_uint64(vm->demand) : NULL) <
                    0 ||
            add(o, "buffer", json_object_new_uint64(s->buffer)) < 0 ||
            add(o, "weight", json_object_new_uint64(s->weight)) < 0 ||
            add(o, "status", json_object_new_string(mem_status_name(vm->status))) < 0 ||
            add(o, "grant_bytes", json_object_new_uint64(vm->grant)) < 0 ||
            add(o, "balloon_bytes", json_object_new_uint64(vm->balloon)) < 0 ||
            add(o, "vmem_plugged_bytes", json_object_new_uint64(vm->vmem_plugged)) < 0 ||
            add(o, "fresh", json_object_new_boolean(vm->fresh)) < 0 ||
            add(o, "smart_paging", memctl_paging_to_json(&vm->paging)) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}
