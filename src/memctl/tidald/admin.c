/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Administrator requests (tidalctl): "list", "set" and "metrics", each answered by one line
 * with "ok". A malformed request is a protocol violation (the connection closes); a refused
 * one (unknown VM, not the owner, a runtime rule) is not.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "memctl/tidald/balance.h"
#include "memctl/tidald/tidald.h"
#include "tidal/json.h"
#include "tidal/log.h"
#include "tidal/macro.h"

static void send_json(struct conn *c, struct json_object *o)
{
        const char *text = json_object_to_json_string_ext(
                o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        size_t len;

        if (!text)
                return;
        len = strlen(text);
        if (len > MEMCTL_REPLY_MAX) {
                /* More than tidalctl reads: say so rather than send what it cannot take. */
                static const char too_long[] = "{\"ok\":false,\"error\":\"the reply is longer "
                                               "than 16 MiB\"}\n";

                conn_send(c, too_long, sizeof(too_long) - 1);
                return;
        }
        conn_send(c, text, len);
        conn_send(c, "\n", 1);
}

/* Answers {"ok":false,"error":...}; returns -EINVAL so protocol violations can hang up. */
static int _printf_(2, 3) send_error(struct conn *c, const char *fmt, ...)
{
        _cleanup_json_ struct json_object *o = json_object_new_object();
        char msg[300];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (o) {
                json_object_object_add(o, "ok", json_object_new_boolean(false));
                json_object_object_add(o, "error", json_object_new_string(msg));
                send_json(c, o);
        }
        return -EINVAL;
}

/* {"ok":true, key: value}, value taken over. */
static int send_ok(struct conn *c, const char *key, struct json_object *value)
{
        _cleanup_json_ struct json_object *o = json_object_new_object();

        if (!o || !value) {
                json_object_put(value);
                send_error(c, "out of memory");
                return 0;
        }
        json_object_object_add(o, "ok", json_object_new_boolean(true));
        json_object_object_add(o, key, value);
        send_json(c, o);
        return 0;
}

static struct json_object *host_to_json(struct daemon *d)
{
        struct json_object *o = json_object_new_object();
        uint64_t granted = registry_granted(d), reserved = 0;

        if (!o)
                return NULL;
        for (struct vm *vm = d->vms; vm; vm = vm->next)
                reserved += MAX(vm->grant, vm_held(vm));
        json_object_object_add(o, "budget_bytes", json_object_new_uint64(d->host.budget));
        json_object_object_add(o, "granted_bytes", json_object_new_uint64(granted));
        json_object_object_add(o, "reserved_bytes", json_object_new_uint64(reserved));
        json_object_object_add(
                o, "free_bytes",
                json_object_new_uint64(d->host.budget > reserved ? d->host.budget - reserved : 0));
        json_object_object_add(o, "host_total_bytes", json_object_new_uint64(d->host.total));
        json_object_object_add(o, "host_available_bytes",
                               json_object_new_uint64(d->host.available));
        return o;
}

static int cmd_list(struct daemon *d, struct conn *c)
{
        _cleanup_json_ struct json_object *o = json_object_new_object();
        struct json_object *vms = json_object_new_array();

        if (!o || !vms) {
                json_object_put(vms);
                return send_error(c, "out of memory"), 0;
        }
        json_object_object_add(o, "ok", json_object_new_boolean(true));
        json_object_object_add(o, "host", host_to_json(d));
        json_object_object_add(o, "vms", vms);
        for (struct vm *vm = d->vms; vm; vm = vm->next)
                json_object_array_add(vms, vm_to_json(vm));
        send_json(c, o);
        return 0;
}

static int cmd_metrics(struct daemon *d, struct conn *c)
{
        _cleanup_free_ char *text = NULL;

        if (metrics_text(d, &text) < 0)
                return send_error(c, "out of memory"), 0;
        return send_ok(c, "text", json_object_new_string(text));
}

static const struct {
        const char *key;
        unsigned bit;
} set_members[] = {
        {MEMCTL_KEY_MINIMUM, MEM_SET_MINIMUM},
        {MEMCTL_KEY_MAXIMUM, MEM_SET_MAXIMUM},
        {MEMCTL_KEY_BUFFER, MEM_SET_BUFFER},
        {MEMCTL_KEY_WEIGHT, MEM_SET_WEIGHT},
};

/* The settings a "set" names, into req and which. -EINVAL with a message on a bad member. */
static int parse_set(struct json_object *root, struct mem_settings *req, unsigned *which, char *err,
                     size_t errlen)
{
        json_object_object_foreach(root, key, val)
        {
                size_t i;

                if (strcmp(key, "cmd") == 0 || strcmp(key, MEMCTL_KEY_NAME) == 0)
                        continue;
                for (i = 0; i < ARRAY_SIZE(set_members); i++)
                        if (strcmp(key, set_members[i].key) == 0)
                                break;
                if (i == ARRAY_SIZE(set_members))
                        return snprintf(err, errlen, "unknown member \"%.64s\" for \"set\"", key),
                               -EINVAL;
                if (!json_object_is_type(val, json_type_int) || json_object_get_int64(val) < 0 ||
                    json_object_get_uint64(val) > MEM_SETTINGS_MAX)
                        return snprintf(err, errlen, "\"%s\" must be an integer in 0..%llu", key,
                                        (unsigned long long)MEM_SETTINGS_MAX),
                               -EINVAL;
                switch (set_members[i].bit) {
                case MEM_SET_MINIMUM:
                        req->minimum = json_object_get_uint64(val);
                        break;
                case MEM_SET_MAXIMUM:
                        req->maximum = json_object_get_uint64(val);
                        break;
                case MEM_SET_BUFFER:
                        req->buffer = (unsigned)json_object_get_uint64(val);
                        break;
                default:
                        req->weight = (unsigned)json_object_get_uint64(val);
                }
                *which |= set_members[i].bit;
        }
        if (!*which)
                return snprintf(err, errlen, "\"set\" needs at least one setting"), -EINVAL;
        return 0;
}

static int cmd_set(struct daemon *d, struct conn *c, struct json_object *root)
{
        struct json_object *name;
        struct mem_settings req = {0}, next;
        unsigned which = 0;
        char err[256];
        struct vm *vm;
        struct memctl_msg m = {.type = MEMCTL_SETTINGS};

        if (!json_object_object_get_ex(root, MEMCTL_KEY_NAME, &name) ||
            !json_object_is_type(name, json_type_string))
                return send_error(c, "\"set\" needs \"name\", a string");
        if (parse_set(root, &req, &which, err, sizeof(err)) < 0)
                return send_error(c, "%s", err);
        vm = registry_find(d, json_object_get_string(name));
        if (!vm || (size_t)json_object_get_string_len(name) != strlen(vm->name))
                return send_error(c, "no VM named \"%.64s\"", json_object_get_string(name)), 0;
        if (conn_uid(c) != 0 && conn_uid(c) != vm->uid)
                return send_error(c, "permission denied: %s belongs to uid %u", vm->name,
                                  (unsigned)vm->uid),
                       0;
        if (mem_settings_change(&vm->settings, &req, which, true, &next, err, sizeof(err)) < 0)
                return send_error(c, "%s", err), 0;
        log_info("%s: settings changed by uid %u", vm->name, (unsigned)conn_uid(c));
        vm->settings = next;
        m.settings.settings = next;
        conn_send_msg(vm->conn, &m);
        balance_round(d);
        return send_ok(c, "vm", vm_to_json(vm));
}

/* Strict JSON, one object. */
static int parse_request(const char *line, size_t len, struct json_object **ret, char *err,
                         size_t errlen)
{
        struct json_tokener *tok = json_tokener_new();
        struct json_object *o;
        enum json_tokener_error e;
        size_t end;

        if (!tok)
                return snprintf(err, errlen, "out of memory"), -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, line, (int)len);
        e = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        if (e != json_tokener_success || !json_object_is_type(o, json_type_object) ||
            strspn(line + end, " \t\r") != len - end) {
                json_object_put(o);
                return snprintf(err, errlen, "a request must be one JSON object"), -EINVAL;
        }
        *ret = o;
        return 0;
}

int admin_handle_line(struct daemon *d, struct conn *c, const char *line, size_t len)
{
        _cleanup_json_ struct json_object *root = NULL;
        struct json_object *cmd;
        const char *name;
        char err[256];

        if (parse_request(line, len, &root, err, sizeof(err)) < 0)
                return send_error(c, "%s", err);
        if (!json_object_object_get_ex(root, "cmd", &cmd) ||
            !json_object_is_type(cmd, json_type_string))
                return send_error(c, "\"cmd\" must be a string");
        name = json_object_get_string(cmd);
        if (strcmp(name, MEMCTL_CMD_LIST) == 0)
                return cmd_list(d, c);
        if (strcmp(name, MEMCTL_CMD_METRICS) == 0)
                return cmd_metrics(d, c);
        if (strcmp(name, MEMCTL_CMD_SET) == 0)
                return cmd_set(d, c, root);
        return send_error(c, "unknown command \"%.64s\" (known: list, set, metrics)", name);
}
