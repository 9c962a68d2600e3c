/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tidal/api.h"
#include "tidal/json.h"
#include "tidal/macro.h"
#include "tidal/memory-settings.h"
#include "vmm/api/protocol.h"

/* A numeric member of a request. */
struct member {
        const char *key;
        uint64_t min, max;
        unsigned bit; /* set in api_request.present when given */
};

static const struct member bytes_member[] = {{API_KEY_BYTES, 0, API_BALLOON_BYTES_MAX, 1}};
static const struct member seconds_member[] = {{API_KEY_SECONDS, 0, API_STATS_PERIOD_MAX, 1}};
static const struct member memory_members[] = {
        {API_KEY_MINIMUM, 0, API_MEMORY_BYTES_MAX, MEM_SET_MINIMUM},
        {API_KEY_MAXIMUM, 0, API_MEMORY_BYTES_MAX, MEM_SET_MAXIMUM},
        {API_KEY_BUFFER, 0, UINT32_MAX, MEM_SET_BUFFER},
        {API_KEY_WEIGHT, 0, UINT32_MAX, MEM_SET_WEIGHT},
};

static const struct command {
        const char *name;
        enum api_cmd cmd;
        const struct member *members; /* the numeric members it takes */
        unsigned nr_members;
        bool all_required; /* else: any, at least one */
} commands[] = {
        {API_CMD_INFO, API_REQ_INFO, NULL, 0, true},
        {API_CMD_BALLOON_SET, API_REQ_BALLOON_SET, bytes_member, 1, true},
        {API_CMD_STATS_PERIOD, API_REQ_STATS_PERIOD, seconds_member, 1, true},
        {API_CMD_MEMORY_SET, API_REQ_MEMORY_SET, memory_members, ARRAY_SIZE(memory_members), false},
        {API_CMD_SHUTDOWN, API_REQ_SHUTDOWN, NULL, 0, true},
        {API_CMD_REBOOT, API_REQ_REBOOT, NULL, 0, true},
};

/* Virtio-balloon statistic names by tag; "_bytes" marks amounts of memory (see docs/api.md). */
static const char *const balloon_stat_names[API_BALLOON_STATS_MAX] = {
        "swap_in_bytes",
        "swap_out_bytes",
        "major_faults",
        "minor_faults",
        "free_memory_bytes",
        "total_memory_bytes",
        "available_memory_bytes",
        "disk_caches_bytes",
        "hugetlb_allocations",
        "hugetlb_failures",
        "oom_kills",
        "alloc_stalls",
        "async_scans",
        "direct_scans",
        "async_reclaims",
        "direct_reclaims",
};

static int _printf_(3, 4) fail(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static bool only_space(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (!strchr(" \t\r\n", s[i]))
                        return false;
        return true;
}

/* Strict JSON (no comments, no trailing commas), one value, nothing after it but spaces. */
static int parse_json(const char *line, size_t len, struct json_object **ret, char *err,
                      size_t errlen)
{
        struct json_tokener *tok;
        struct json_object *o;
        enum json_tokener_error e;
        size_t end;

        if (only_space(line, len))
                return fail(err, errlen, "empty request");
        tok = json_tokener_new();
        if (!tok)
                return fail(err, errlen, "out of memory");
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, line, (int)len);
        e = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        if (e == json_tokener_continue) {
                /* A bare number ("42") is complete only once something follows it. */
                o = json_tokener_parse_ex(tok, " ", 1);
                e = json_tokener_get_error(tok);
                end = len;
        }
        json_tokener_free(tok);
        if (e == json_tokener_continue)
                return fail(err, errlen, "malformed JSON: the request ends too early");
        if (e != json_tokener_success)
                return fail(err, errlen, "malformed JSON at byte %zu: %s", end,
                            json_tokener_error_desc(e));
        if (!only_space(line + end, len - end)) {
                json_object_put(o);
                return fail(err, errlen, "malformed JSON: data after the request at byte %zu", end);
        }
        *ret = o;
        return 0;
}

static int take_id(struct json_object *root, struct api_request *req, char *err, size_t errlen)
{
        struct json_object *id;

        if (!json_object_object_get_ex(root, API_KEY_ID, &id))
                return 0;
        if (!json_object_is_type(id, json_type_string) && !json_object_is_type(id, json_type_int))
                return fail(err, errlen, "\"id\" must be a string or an integer");
        if (json_object_is_type(id, json_type_string) &&
            json_object_get_string_len(id) > API_ID_MAX)
                return fail(err, errlen, "\"id\" must be at most %d bytes long", API_ID_MAX);
        req->id = json_object_get(id);
        return 0;
}

static int find_command(struct json_object *root, const struct command **ret, char *err,
                        size_t errlen)
{
        struct json_object *cmd;
        const char *name;
        size_t len;

        if (!json_object_object_get_ex(root, API_KEY_CMD, &cmd))
                return fail(err, errlen, "missing \"cmd\"");
        if (!json_object_is_type(cmd, json_type_string))
                return fail(err, errlen, "\"cmd\" must be a string");
        name = json_object_get_string(cmd);
        len = (size_t)json_object_get_string_len(cmd);
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
                /* The length check rejects names with an embedded NUL. */
                if (strlen(commands[i].name) == len && strcmp(commands[i].name, name) == 0) {
                        *ret = &commands[i];
                        return 0;
                }
        }
        return fail(err, errlen,
                    "unknown command \"%.64s\" (known: info, balloon-set, stats-period, "
                    "memory-set, shutdown, reboot)",
                    name);
}

static const struct member *find_member(const struct command *c, const char *key)
{
        for (unsigned i = 0; i < c->nr_members; i++)
                if (strcmp(key, c->members[i].key) == 0)
                        return &c->members[i];
        return NULL;
}

/* Unknown members are refused so that a misspelt one does not go silently unused. */
static int check_members(struct json_object *root, const struct command *c, char *err,
                         size_t errlen)
{
        json_object_object_foreach(root, key, val)
        {
                (void)val;
                if (strcmp(key, API_KEY_CMD) == 0 || strcmp(key, API_KEY_ID) == 0 ||
                    find_member(c, key))
                        continue;
                return fail(err, errlen, "unknown member \"%.64s\" for command \"%s\"", key,
                            c->name);
        }
        return 0;
}

static int get_count(struct json_object *v, const struct member *m, uint64_t *ret, char *err,
                     size_t errlen)
{
        uint64_t u;

        if (!json_object_is_type(v, json_type_int))
                return fail(err, errlen, "\"%s\" must be an integer", m->key);
        if (json_object_get_int64(v) < 0)
                return fail(err, errlen, "\"%s\" must not be negative", m->key);
        /* json-c saturates integers past UINT64_MAX, which is over every limit anyway. */
        u = json_object_get_uint64(v);
        if (u > m->max)
                return fail(err, errlen, "\"%s\" must be at most %llu", m->key,
                            (unsigned long long)m->max);
        *ret = u;
        return 0;
}

static int get_members(struct json_object *root, const struct command *c, struct api_request *req,
                       char *err, size_t errlen)
{
        for (unsigned i = 0; i < c->nr_members; i++) {
                const struct member *m = &c->members[i];
                struct json_object *v;
                int r;

                if (!json_object_object_get_ex(root, m->key, &v)) {
                        if (c->all_required)
                                return fail(err, errlen, "\"%s\" needs \"%s\"", c->name, m->key);
                        continue;
                }
                r = get_count(v, m, &req->values[i], err, errlen);
                if (r < 0)
                        return r;
                req->present |= m->bit;
        }
        if (c->nr_members && !req->present)
                return fail(err, errlen, "\"%s\" needs at least one setting", c->name);
        req->value = req->values[0];
        return 0;
}

int api_request_parse(const char *line, size_t len, struct api_request *req, char *err,
                      size_t errlen)
{
        _cleanup_json_ struct json_object *root = NULL;
        const struct command *c = NULL;
        int r;

        *req = (struct api_request){0};
        r = parse_json(line, len, &root, err, errlen);
        if (r < 0)
                return r;
        if (!json_object_is_type(root, json_type_object))
                return fail(err, errlen, "a request must be a JSON object");
        r = take_id(root, req, err, errlen);
        if (r >= 0)
                r = find_command(root, &c, err, errlen);
        if (r >= 0)
                r = check_members(root, c, err, errlen);
        if (r >= 0)
                r = get_members(root, c, req, err, errlen);
        if (r < 0)
                return r;
        req->cmd = c->cmd;
        return 0;
}

void api_request_done(struct api_request *req)
{
        json_object_put(req->id);
        req->id = NULL;
}

static struct json_object *reply_new(bool ok, struct json_object *id)
{
        struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        if (json_object_object_add(o, API_KEY_OK, json_object_new_boolean(ok)) < 0 ||
            (id && json_object_object_add(o, API_KEY_ID, json_object_get(id)) < 0)) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

struct json_object *api_reply_new_ok(struct json_object *id)
{
        return reply_new(true, id);
}

struct json_object *api_reply_new_error(struct json_object *id, const char *msg)
{
        struct json_object *o = reply_new(false, id);

        if (o && json_object_object_add(o, API_KEY_ERROR, json_object_new_string(msg)) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

int api_reply_encode(struct json_object *reply, char **ret, size_t *len)
{
        const char *s;
        size_t n;
        char *buf;

        s = json_object_to_json_string_length(
                reply, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        if (!s)
                return -ENOMEM;
        if (n > API_LINE_MAX)
                return -E2BIG;
        buf = malloc(n + 2);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, s, n);
        buf[n] = '\n';
        buf[n + 1] = '\0';
        *ret = buf;
        *len = n + 1;
        return 0;
}

static const char *state_name(enum api_vm_state state)
{
        switch (state) {
        case API_VM_RUNNING:
                return "running";
        case API_VM_STOPPING:
                return "stopping";
        case API_VM_REBOOTING:
                return "rebooting";
        case API_VM_STARTING:
                return "starting";
        }
        return "unknown";
}

/* json-c's adders take ownership even of a NULL value; one failure flag for a whole object. */
static void add(struct json_object *o, const char *key, struct json_object *v, bool *failed)
{
        if (json_object_object_add(o, key, v) < 0)
                *failed = true;
}

static void add_str(struct json_object *o, const char *key, const char *s, bool *failed)
{
        struct json_object *v = s ? json_object_new_string(s) : NULL;

        if (s && !v)
                *failed = true;
        add(o, key, v, failed);
}

static void add_u64(struct json_object *o, const char *key, uint64_t n, bool *failed)
{
        struct json_object *v = json_object_new_uint64(n);

        if (!v)
                *failed = true;
        add(o, key, v, failed);
}

static const char *driver_state_name(enum api_driver_state state)
{
        switch (state) {
        case API_DRIVER_NONE:
                return "none";
        case API_DRIVER_RUNNING:
                return "running";
        case API_DRIVER_NEEDS_RESET:
                return "needs-reset";
        }
        return "unknown";
}

static struct json_object *counters_to_json(const struct api_balloon_counters *c, bool *failed)
{
        struct json_object *o = json_object_new_object();

        if (!o) {
                *failed = true;
                return NULL;
        }
        add_u64(o, "inflate_requests", c->inflate_requests, failed);
        add_u64(o, "deflate_requests", c->deflate_requests, failed);
        add_u64(o, "report_requests", c->report_requests, failed);
        add_u64(o, "inflated_bytes", c->inflated_bytes, failed);
        add_u64(o, "deflated_bytes", c->deflated_bytes, failed);
        add_u64(o, "reported_bytes", c->reported_bytes, failed);
        add_u64(o, "discarded_bytes", c->discarded_bytes, failed);
        add_u64(o, "discard_calls", c->discard_calls, failed);
        add_u64(o, "discard_errors", c->discard_errors, failed);
        add_u64(o, "out_of_range_pages", c->out_of_range_pages, failed);
        add_u64(o, "skipped_reports", c->skipped_reports, failed);
        add_u64(o, "malformed_requests", c->malformed_requests, failed);
        add_u64(o, "deferred_bytes", c->deferred_bytes, failed);
        add_u64(o, "evicted_blocks", c->evicted_blocks, failed);
        return o;
}

static struct json_object *stats_to_json(const struct api_balloon_info *b, bool *failed)
{
        struct json_object *o = json_object_new_object();

        if (!o) {
                *failed = true;
                return NULL;
        }
        add_u64(o, "age_ms", b->stats_age_ms, failed);
        for (unsigned tag = 0; tag < API_BALLOON_STATS_MAX; tag++)
                if (b->stats_present & (UINT32_C(1) << tag))
                        add_u64(o, balloon_stat_names[tag], b->stats[tag], failed);
        return o;
}

static struct json_object *balloon_to_json(const struct api_balloon_info *b, bool *failed)
{
        struct json_object *o = json_object_new_object();

        if (!o) {
                *failed = true;
                return NULL;
        }
        add_u64(o, "target_bytes", b->target, failed);
        add_u64(o, "actual_bytes", b->actual, failed);
        add_str(o, "driver", driver_state_name(b->driver), failed);
        add_u64(o, "inflated_bytes", b->inflated, failed);
        add_u64(o, "pending_bytes", b->pending, failed);
        add_u64(o, "stats_period_s", b->stats_period, failed);
        add_u64(o, "stats_count", b->stats_count, failed);
        add(o, "stats", b->have_stats ? stats_to_json(b, failed) : NULL, failed);
        add(o, "counters", counters_to_json(&b->counters, failed), failed);
        return o;
}

static struct json_object *vmem_counters_to_json(const struct api_vmem_counters *c, bool *failed)
{
        struct json_object *o = json_object_new_object();

        if (!o) {
                *failed = true;
                return NULL;
        }
        add_u64(o, "plug_requests", c->plug_requests, failed);
        add_u64(o, "unplug_requests", c->unplug_requests, failed);
        add_u64(o, "unplug_all_requests", c->unplug_all_requests, failed);
        add_u64(o, "state_requests", c->state_requests, failed);
        add_u64(o, "nacks", c->nacks, failed);
        add_u64(o, "errors", c->errors, failed);
        add_u64(o, "busy", c->busy, failed);
        add_u64(o, "plugged_bytes", c->plugged_bytes, failed);
        add_u64(o, "unplugged_bytes", c->unplugged_bytes, failed);
        add_u64(o, "discarded_bytes", c->discarded_bytes, failed);
        add_u64(o, "discard_errors", c->discard_errors, failed);
        add_u64(o, "malformed_requests", c->malformed_requests, failed);
        add_u64(o, "nudges", c->nudges, failed);
        add_u64(o, "unplug_behind_us", c->unplug_behind_us, failed);
        add_u64(o, "plug_behind_us", c->plug_behind_us, failed);
        add_u64(o, "request_us", c->request_us, failed);
        return o;
}

static struct json_object *vmem_to_json(const struct api_memory_info *m, bool *failed)
{
        struct json_object *o = json_object_new_object();

        if (!o) {
                *failed = true;
                return NULL;
        }
        add_str(o, "driver", driver_state_name(m->vmem_driver), failed);
        add_u64(o, "region_bytes", m->vmem_region, failed);
        add_u64(o, "requested_bytes", m->vmem_requested, failed);
        add_u64(o, "plugged_bytes", m->vmem_plugged, failed);
        add_u64(o, "stuck_bytes", m->stuck, failed);
        add(o, "counters", vmem_counters_to_json(&m->vmem_counters, failed), failed);
        return o;
}

static struct json_object *memory_to_json(const struct api_memory_info *m, bool *failed)
{
        struct json_object *o = json_object_new_object(), *paging;
        const struct mem_settings *s = &m->settings;

        if (!o) {
                *failed = true;
                return NULL;
        }
        add(o, "dynamic", json_object_new_boolean(s->dynamic), failed);
        add_u64(o, "startup_bytes", s->startup, failed);
        add_u64(o, "minimum_bytes", s->minimum, failed);
        add_u64(o, "maximum_bytes", s->maximum, failed);
        add_u64(o, "buffer_percent", s->buffer, failed);
        add_u64(o, "weight", s->weight, failed);
        add_u64(o, "assigned_bytes", m->assigned, failed);
        if (s->dynamic) {
                add_u64(o, "ceiling_bytes", m->ceiling, failed);
                add_u64(o, "target_bytes", m->target, failed);
                add_str(o, "target_source", m->target_from_daemon ? "tidald" : "controller",
                        failed);
                add(o, "demand_bytes", m->have_demand ? json_object_new_uint64(m->demand) : NULL,
                    failed);
                add_str(o, "status", m->have_demand ? mem_status_name(m->status) : NULL, failed);
        }
        add(o, "virtio_mem", m->has_vmem ? vmem_to_json(m, failed) : NULL, failed);
        paging = memctl_paging_to_json(&m->paging);
        if (!paging)
                *failed = true;
        add(o, "smart_paging", paging, failed);
        return o;
}

static struct json_object *memctl_to_json(const struct api_memctl_info *m, bool *failed)
{
        struct json_object *o = json_object_new_object();

        if (!o) {
                *failed = true;
                return NULL;
        }
        add_str(o, "mode", m->daemon ? "daemon" : "standalone", failed);
        add_str(o, "socket", m->daemon ? m->socket : NULL, failed);
        add(o, "connected", json_object_new_boolean(m->connected), failed);
        add(o, "grant_bytes", m->have_grant ? json_object_new_uint64(m->grant) : NULL, failed);
        add_u64(o, "reconnects", m->reconnects, failed);
        return o;
}

int api_info_to_json(const struct api_info *info, struct json_object **ret)
{
        struct json_object *o = json_object_new_object();
        bool failed = false;

        if (!o)
                return -ENOMEM;
        add_str(o, "name", info->name, &failed);
        add_u64(o, "pid", (uint64_t)info->pid, &failed);
        add_str(o, "state", state_name(info->state), &failed);
        add_u64(o, "boots", info->boots, &failed);
        add_u64(o, "vcpus", info->vcpus, &failed);
        add_u64(o, "memory_bytes", info->memory, &failed);
        add_str(o, "kernel", info->kernel, &failed);
        add_str(o, "initrd", info->initrd, &failed);
        add_str(o, "cmdline", info->cmdline, &failed);
        add_str(o, "kernel_entry", info->kernel_entry, &failed);
        add(o, "memory", memory_to_json(&info->mem, &failed), &failed);
        add(o, "memctl", memctl_to_json(&info->memctl, &failed), &failed);
        add(o, "balloon", info->has_balloon ? balloon_to_json(&info->balloon, &failed) : NULL,
            &failed);
        if (failed) {
                json_object_put(o);
                return -ENOMEM;
        }
        *ret = o;
        return 0;
}

const char *api_errno_message(int error)
{
        switch (error < 0 ? -error : error) {
        case ENODEV:
                return "this VM has no balloon device";
        case EOPNOTSUPP:
                return "not supported by this VM";
        case ERANGE:
                return "value out of range for this VM";
        default:
                return strerror(error < 0 ? -error : error);
        }
}
