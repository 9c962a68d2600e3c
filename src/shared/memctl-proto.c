/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The tidald wire protocol (docs/memctl-protocol.md): one JSON object per line. Parsing never
 * trusts the peer: every member is type- and range-checked before it reaches a struct, and
 * unknown members are ignored so that a newer peer can add some.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tidal/json.h"
#include "tidal/macro.h"
#include "tidal/memctl-proto.h"

/* Bounds of the numbers a peer may send. */
#define AMOUNT_MAX  MEM_SETTINGS_MAX       /* assigned, grant, balloon, plugged, target */
#define DEMAND_MAX  (MEM_SETTINGS_MAX * 4) /* a guest under pressure may ask past its maximum */
#define COUNTER_MAX ((uint64_t)INT64_MAX)  /* paging counters and file size */

static int _printf_(3, 4) fail(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

bool memctl_name_valid(const char *name)
{
        size_t len = strlen(name);

        if (len == 0 || len > MEMCTL_NAME_MAX || name[0] == '.')
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = name[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

/* Canonical text form: 8-4-4-4-12 hex digits. */
static bool uuid_valid(const char *s, size_t len)
{
        if (len != MEMCTL_UUID_LEN)
                return false;
        for (size_t i = 0; i < len; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                char c = s[i];

                if (dash ? c != '-'
                         : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                             (c >= 'A' && c <= 'F')))
                        return false;
        }
        return true;
}

static int get_member(struct json_object *o, const char *key, json_type type,
                      struct json_object **ret, char *err, size_t errlen)
{
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v))
                return fail(err, errlen, "missing \"%s\"", key);
        if (!json_object_is_type(v, type))
                return fail(err, errlen, "\"%s\" must be %s", key,
                            type == json_type_int       ? "an integer"
                            : type == json_type_boolean ? "a boolean"
                            : type == json_type_string  ? "a string"
                            : type == json_type_object  ? "an object"
                                                        : "of another type");
        *ret = v;
        return 0;
}

static int get_u64(struct json_object *o, const char *key, uint64_t max, uint64_t *ret, char *err,
                   size_t errlen)
{
        struct json_object *v;
        int r;

        r = get_member(o, key, json_type_int, &v, err, errlen);
        if (r < 0)
                return r;
        if (json_object_get_int64(v) < 0)
                return fail(err, errlen, "\"%s\" must not be negative", key);
        /* json-c saturates past UINT64_MAX, which is above every bound here. */
        if (json_object_get_uint64(v) > max)
                return fail(err, errlen, "\"%s\" must be at most %llu", key,
                            (unsigned long long)max);
        *ret = json_object_get_uint64(v);
        return 0;
}

static int get_unsigned(struct json_object *o, const char *key, unsigned max, unsigned *ret,
                        char *err, size_t errlen)
{
        uint64_t v;
        int r;

        r = get_u64(o, key, max, &v, err, errlen);
        if (r < 0)
                return r;
        *ret = (unsigned)v;
        return 0;
}

static int get_bool(struct json_object *o, const char *key, bool *ret, char *err, size_t errlen)
{
        struct json_object *v;
        int r;

        r = get_member(o, key, json_type_boolean, &v, err, errlen);
        if (r < 0)
                return r;
        *ret = json_object_get_boolean(v);
        return 0;
}

/* A string without NUL bytes that fits in size (terminator included). */
static int get_string(struct json_object *o, const char *key, char *buf, size_t size, char *err,
                      size_t errlen)
{
        struct json_object *v;
        const char *s;
        size_t len;
        int r;

        r = get_member(o, key, json_type_string, &v, err, errlen);
        if (r < 0)
                return r;
        s = json_object_get_string(v);
        len = (size_t)json_object_get_string_len(v);
        if (len >= size)
                return fail(err, errlen, "\"%s\" must be at most %zu bytes long", key, size - 1);
        if (strlen(s) != len)
                return fail(err, errlen, "\"%s\" must not contain NUL bytes", key);
        memcpy(buf, s, len + 1);
        return 0;
}

/* Startup, minimum, maximum, buffer and weight of a dynamic-memory VM, checked together. */
static int get_settings(struct json_object *o, struct mem_settings *ret, char *err, size_t errlen)
{
        struct mem_settings s = {.dynamic = true};
        char why[200];
        int r;

        if ((r = get_u64(o, MEMCTL_KEY_STARTUP, MEM_SETTINGS_MAX, &s.startup, err, errlen)) < 0 ||
            (r = get_u64(o, MEMCTL_KEY_MINIMUM, MEM_SETTINGS_MAX, &s.minimum, err, errlen)) < 0 ||
            (r = get_u64(o, MEMCTL_KEY_MAXIMUM, MEM_SETTINGS_MAX, &s.maximum, err, errlen)) < 0 ||
            (r = get_unsigned(o, MEMCTL_KEY_BUFFER, MEM_BUFFER_MAX, &s.buffer, err, errlen)) < 0 ||
            (r = get_unsigned(o, MEMCTL_KEY_WEIGHT, MEM_WEIGHT_MAX, &s.weight, err, errlen)) < 0)
                return r;
        if (mem_settings_check(&s, why, sizeof(why)) < 0)
                return fail(err, errlen, "bad settings: %s", why);
        *ret = s;
        return 0;
}

static int parse_register(struct json_object *o, struct memctl_msg *m, char *err, size_t errlen)
{
        struct json_object *v;
        int r;

        r = get_string(o, MEMCTL_KEY_NAME, m->reg.name, sizeof(m->reg.name), err, errlen);
        if (r < 0)
                return r;
        if (!memctl_name_valid(m->reg.name))
                return fail(err, errlen,
                            "\"name\" must be 1-%d of A-Z a-z 0-9 . _ -, not starting with '.'",
                            MEMCTL_NAME_MAX);
        /* The uuid is optional: a VM started without one has none. */
        if (json_object_object_get_ex(o, MEMCTL_KEY_UUID, &v)) {
                if (!json_object_is_type(v, json_type_string))
                        return fail(err, errlen, "\"uuid\" must be a string");
                if (json_object_get_string_len(v) != 0 &&
                    !uuid_valid(json_object_get_string(v), json_object_get_string_len(v)))
                        return fail(err, errlen, "\"uuid\" must be a UUID in its text form");
                memcpy(m->reg.uuid, json_object_get_string(v),
                       (size_t)json_object_get_string_len(v) + 1);
        }
        r = get_settings(o, &m->reg.settings, err, errlen);
        if (r < 0)
                return r;
        r = get_bool(o, MEMCTL_KEY_RUNNING, &m->reg.running, err, errlen);
        if (r < 0 || !m->reg.running)
                return r;
        /* Only a running VM holds memory already. */
        if ((r = get_u64(o, MEMCTL_KEY_ASSIGNED, AMOUNT_MAX, &m->reg.assigned, err, errlen)) < 0 ||
            (r = get_u64(o, MEMCTL_KEY_GRANT, AMOUNT_MAX, &m->reg.grant, err, errlen)) < 0)
                return r;
        return 0;
}

static int parse_status(struct json_object *o, enum mem_status *ret, char *err, size_t errlen)
{
        char s[16];
        int r;

        r = get_string(o, MEMCTL_KEY_STATUS, s, sizeof(s), err, errlen);
        if (r < 0)
                return r;
        for (enum mem_status st = MEM_STATUS_OK; st <= MEM_STATUS_WARNING; st++)
                if (strcmp(s, mem_status_name(st)) == 0) {
                        *ret = st;
                        return 0;
                }
        return fail(err, errlen, "\"status\" must be \"OK\", \"Low\" or \"Warning\"");
}

static int parse_paging(struct json_object *o, struct memctl_paging *p, char *err, size_t errlen)
{
        struct json_object *v;
        int r;

        r = get_member(o, MEMCTL_KEY_PAGING, json_type_object, &v, err, errlen);
        if (r < 0)
                return r;
        if ((r = get_bool(v, "active", &p->active, err, errlen)) < 0 ||
            (r = get_u64(v, "file_bytes", COUNTER_MAX, &p->file_bytes, err, errlen)) < 0 ||
            (r = get_u64(v, "pages_in", COUNTER_MAX, &p->pages_in, err, errlen)) < 0 ||
            (r = get_u64(v, "pages_out", COUNTER_MAX, &p->pages_out, err, errlen)) < 0 ||
            (r = get_u64(v, "active_ms", COUNTER_MAX, &p->active_ms, err, errlen)) < 0)
                return r;
        return 0;
}

static int parse_report(struct json_object *o, struct memctl_msg *m, char *err, size_t errlen)
{
        struct json_object *v;
        int r;

        r = get_u64(o, MEMCTL_KEY_ASSIGNED, AMOUNT_MAX, &m->report.assigned, err, errlen);
        if (r < 0)
                return r;
        /* null until the guest's first statistics */
        if (!json_object_object_get_ex(o, MEMCTL_KEY_DEMAND, &v))
                return fail(err, errlen, "missing \"%s\"", MEMCTL_KEY_DEMAND);
        if (v) {
                r = get_u64(o, MEMCTL_KEY_DEMAND, DEMAND_MAX, &m->report.demand, err, errlen);
                if (r < 0)
                        return r;
                m->report.have_demand = true;
        }
        if ((r = get_bool(o, MEMCTL_KEY_FRESH, &m->report.fresh, err, errlen)) < 0 ||
            (r = get_unsigned(o, MEMCTL_KEY_PRESSURE, UINT32_MAX, &m->report.pressure, err,
                              errlen)) < 0 ||
            (r = parse_status(o, &m->report.status, err, errlen)) < 0 ||
            (r = get_u64(o, MEMCTL_KEY_BALLOON, AMOUNT_MAX, &m->report.balloon, err, errlen)) < 0 ||
            (r = get_u64(o, MEMCTL_KEY_VMEM, AMOUNT_MAX, &m->report.vmem_plugged, err, errlen)) <
                    0 ||
            (r = parse_paging(o, &m->report.paging, err, errlen)) < 0)
                return r;
        /* Added later: a VM that does not send it has nothing in flight to discount. */
        if (json_object_object_get_ex(o, MEMCTL_KEY_UNPLUG, NULL))
                return get_u64(o, MEMCTL_KEY_UNPLUG, AMOUNT_MAX, &m->report.unplugging, err,
                               errlen);
        return 0;
}

static int parse_refused(struct json_object *o, struct memctl_msg *m, char *err, size_t errlen)
{
        int r;

        if ((r = get_u64(o, MEMCTL_KEY_NEEDED, AMOUNT_MAX, &m->refused.needed, err, errlen)) < 0 ||
            (r = get_u64(o, MEMCTL_KEY_FOUND, AMOUNT_MAX, &m->refused.found, err, errlen)) < 0 ||
            (r = get_string(o, MEMCTL_KEY_ERROR, m->refused.error, sizeof(m->refused.error), err,
                            errlen)) < 0)
                return r;
        return 0;
}

static int parse_body(struct json_object *o, struct memctl_msg *m, char *err, size_t errlen)
{
        switch (m->type) {
        case MEMCTL_REGISTER:
                return parse_register(o, m, err, errlen);
        case MEMCTL_REPORT:
                return parse_report(o, m, err, errlen);
        case MEMCTL_SETTINGS:
                return get_settings(o, &m->settings.settings, err, errlen);
        case MEMCTL_RESTART:
                return 0;
        case MEMCTL_ADMITTED:
                return get_u64(o, MEMCTL_KEY_GRANT, AMOUNT_MAX, &m->admitted.grant, err, errlen);
        case MEMCTL_REFUSED:
                return parse_refused(o, m, err, errlen);
        case MEMCTL_TARGET:
                return get_u64(o, MEMCTL_KEY_TARGET, AMOUNT_MAX, &m->target.bytes, err, errlen);
        case MEMCTL_ERROR:
                return get_string(o, MEMCTL_KEY_ERROR, m->error.error, sizeof(m->error.error), err,
                                  errlen);
        }
        return fail(err, errlen, "unknown message type");
}

static const char *const msg_names[] = {
        [MEMCTL_REGISTER] = MEMCTL_MSG_REGISTER, [MEMCTL_REPORT] = MEMCTL_MSG_REPORT,
        [MEMCTL_SETTINGS] = MEMCTL_MSG_SETTINGS, [MEMCTL_RESTART] = MEMCTL_MSG_RESTART,
        [MEMCTL_ADMITTED] = MEMCTL_MSG_ADMITTED, [MEMCTL_REFUSED] = MEMCTL_MSG_REFUSED,
        [MEMCTL_TARGET] = MEMCTL_MSG_TARGET,     [MEMCTL_ERROR] = MEMCTL_MSG_ERROR,
};

static int parse_type(struct json_object *o, enum memctl_msg_type *ret, char *err, size_t errlen)
{
        struct json_object *v;
        const char *name;
        size_t len;
        int r;

        r = get_member(o, MEMCTL_KEY_MSG, json_type_string, &v, err, errlen);
        if (r < 0)
                return r;
        name = json_object_get_string(v);
        len = (size_t)json_object_get_string_len(v);
        for (size_t i = 0; i < ARRAY_SIZE(msg_names); i++)
                /* The length check rejects names with an embedded NUL. */
                if (strlen(msg_names[i]) == len && strcmp(name, msg_names[i]) == 0) {
                        *ret = (enum memctl_msg_type)i;
                        return 0;
                }
        return fail(err, errlen, "unknown \"msg\" \"%.32s\"", name);
}

/* Strict JSON, one value, nothing after it but white space. */
static int parse_json(const char *line, size_t len, struct json_object **ret, char *err,
                      size_t errlen)
{
        struct json_tokener *tok;
        struct json_object *o;
        enum json_tokener_error e;
        size_t end;

        if (len > MEMCTL_LINE_MAX)
                return fail(err, errlen, "line longer than %d bytes", MEMCTL_LINE_MAX);
        tok = json_tokener_new();
        if (!tok)
                return fail(err, errlen, "out of memory");
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, line, (int)len);
        e = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        /* Only an object is accepted, and an object is complete at its '}'. */
        if (e == json_tokener_continue)
                return fail(err, errlen, "malformed JSON: the line ends too early");
        if (e != json_tokener_success)
                return fail(err, errlen, "malformed JSON at byte %zu: %s", end,
                            json_tokener_error_desc(e));
        for (size_t i = end; i < len; i++)
                if (!strchr(" \t\r", line[i]) || line[i] == '\0') {
                        json_object_put(o);
                        return fail(err, errlen, "malformed JSON: data after the value at byte %zu",
                                    end);
                }
        *ret = o;
        return 0;
}

int memctl_msg_parse(const char *line, size_t len, struct memctl_msg *ret, char *err, size_t errlen)
{
        _cleanup_json_ struct json_object *root = NULL;
        struct memctl_msg m = {0};
        int r;

        r = parse_json(line, len, &root, err, errlen);
        if (r < 0)
                return r;
        if (!json_object_is_type(root, json_type_object))
                return fail(err, errlen, "a message must be a JSON object");
        r = parse_type(root, &m.type, err, errlen);
        if (r < 0)
                return r;
        r = parse_body(root, &m, err, errlen);
        if (r < 0)
                return r;
        *ret = m;
        return 0;
}

/* Formatting: build the object with json-c, then print it on one line. */

static int add(struct json_object *o, const char *key, struct json_object *v)
{
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_u64(struct json_object *o, const char *key, uint64_t v)
{
        return add(o, key, json_object_new_uint64(v));
}

/* s is a buffer of size bytes, normally NUL-terminated. */
static int add_string(struct json_object *o, const char *key, const char *s, size_t size)
{
        return add(o, key, json_object_new_string_len(s, (int)strnlen(s, size)));
}

static int add_settings(struct json_object *o, const struct mem_settings *s)
{
        int r;

        if ((r = add_u64(o, MEMCTL_KEY_STARTUP, s->startup)) < 0 ||
            (r = add_u64(o, MEMCTL_KEY_MINIMUM, s->minimum)) < 0 ||
            (r = add_u64(o, MEMCTL_KEY_MAXIMUM, s->maximum)) < 0 ||
            (r = add_u64(o, MEMCTL_KEY_BUFFER, s->buffer)) < 0 ||
            (r = add_u64(o, MEMCTL_KEY_WEIGHT, s->weight)) < 0)
                return r;
        return 0;
}

static int format_register(struct json_object *o, const struct memctl_msg *m)
{
        int r;

        if (strnlen(m->reg.name, sizeof(m->reg.name)) > MEMCTL_NAME_MAX ||
            !memctl_name_valid(m->reg.name))
                return -EINVAL;
        if ((r = add_string(o, MEMCTL_KEY_NAME, m->reg.name, sizeof(m->reg.name))) < 0 ||
            (r = add_string(o, MEMCTL_KEY_UUID, m->reg.uuid, sizeof(m->reg.uuid))) < 0 ||
            (r = add_settings(o, &m->reg.settings)) < 0 ||
            (r = add(o, MEMCTL_KEY_RUNNING, json_object_new_boolean(m->reg.running))) < 0)
                return r;
        if (!m->reg.running)
                return 0;
        if ((r = add_u64(o, MEMCTL_KEY_ASSIGNED, m->reg.assigned)) < 0 ||
            (r = add_u64(o, MEMCTL_KEY_GRANT, m->reg.grant)) < 0)
                return r;
        return 0;
}

struct json_object *memctl_paging_to_json(const struct memctl_paging *p)
{
        struct json_object *v = json_object_new_object();

        if (!v)
                return NULL;
        if (add(v, "active", json_object_new_boolean(p->active)) < 0 ||
            add_u64(v, "file_bytes", p->file_bytes) < 0 ||
            add_u64(v, "pages_in", p->pages_in) < 0 || add_u64(v, "pages_out", p->pages_out) < 0 ||
            add_u64(v, "active_ms", p->active_ms) < 0) {
                json_object_put(v);
                return NULL;
        }
        return v;
}

static int format_paging(struct json_object *o, const struct memctl_paging *p)
{
        return add(o, MEMCTL_KEY_PAGING, memctl_paging_to_json(p));
}

static int format_report(struct json_object *o, const struct memctl_msg *m)
{
        int r;

        if (m->report.status > MEM_STATUS_WARNING)
                return -EINVAL;
        if ((r = add_u64(o, MEMCTL_KEY_ASSIGNED, m->report.assigned)) < 0)
                return r;
        if (m->report.have_demand)
                r = add_u64(o, MEMCTL_KEY_DEMAND, m->report.demand);
        else
                r = json_object_object_add(o, MEMCTL_KEY_DEMAND, NULL) < 0 ? -ENOMEM : 0;
        if (r < 0)
                return r;
        if ((r = add(o, MEMCTL_KEY_FRESH, json_object_new_boolean(m->report.fresh))) < 0 ||
            (r = add_u64(o, MEMCTL_KEY_PRESSURE, m->report.pressure)) < 0 ||
            (r = add_string(o, MEMCTL_KEY_STATUS, mem_status_name(m->report.status), 16)) < 0 ||
            (r = add_u64(o, MEMCTL_KEY_BALLOON, m->report.balloon)) < 0 ||
            (r = add_u64(o, MEMCTL_KEY_VMEM, m->report.vmem_plugged)) < 0 ||
            (r = add_u64(o, MEMCTL_KEY_UNPLUG, m->report.unplugging)) < 0 ||
            (r = format_paging(o, &m->report.paging)) < 0)
                return r;
        return 0;
}

static int format_body(struct json_object *o, const struct memctl_msg *m)
{
        int r;

        switch (m->type) {
        case MEMCTL_REGISTER:
                return format_register(o, m);
        case MEMCTL_REPORT:
                return format_report(o, m);
        case MEMCTL_SETTINGS:
                return add_settings(o, &m->settings.settings);
        case MEMCTL_RESTART:
                return 0;
        case MEMCTL_ADMITTED:
                return add_u64(o, MEMCTL_KEY_GRANT, m->admitted.grant);
        case MEMCTL_REFUSED:
                if ((r = add_u64(o, MEMCTL_KEY_NEEDED, m->refused.needed)) < 0 ||
                    (r = add_u64(o, MEMCTL_KEY_FOUND, m->refused.found)) < 0)
                        return r;
                return add_string(o, MEMCTL_KEY_ERROR, m->refused.error, sizeof(m->refused.error));
        case MEMCTL_TARGET:
                return add_u64(o, MEMCTL_KEY_TARGET, m->target.bytes);
        case MEMCTL_ERROR:
                return add_string(o, MEMCTL_KEY_ERROR, m->error.error, sizeof(m->error.error));
        }
        return -EINVAL;
}

int memctl_msg_format(const struct memctl_msg *msg, char **ret)
{
        _cleanup_json_ struct json_object *o = NULL;
        const char *text;
        char *line;
        size_t len;
        int r;

        if ((unsigned)msg->type >= ARRAY_SIZE(msg_names))
                return -EINVAL;
        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        r = add_string(o, MEMCTL_KEY_MSG, msg_names[msg->type], 16);
        if (r < 0)
                return r;
        r = format_body(o, msg);
        if (r < 0)
                return r;
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        len = strlen(text);
        line = malloc(len + 2);
        if (!line)
                return -ENOMEM;
        memcpy(line, text, len);
        line[len] = '\n';
        line[len + 1] = '\0';
        *ret = line;
        return 0;
}
