/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Human-readable listing of an "info" reply. It walks the JSON generically, using the naming
 * convention of docs/api.md (a "_bytes" suffix is an amount of memory, "_ms" and "_s"
 * durations), so that members the VMM adds later show up formatted without changes here.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "memctl/ctl.h"
#include "tidal/parse.h"

#define LABEL_MAX 96
#define VALUE_MAX 256

static bool has_suffix(const char *s, const char *suffix)
{
        size_t n = strlen(s), m = strlen(suffix);

        return n > m && strcmp(s + n - m, suffix) == 0;
}

/* "balloon" + "target_bytes" -> "balloon target". */
static void make_label(const char *prefix, const char *key, char *buf, size_t size)
{
        static const char *const units[] = {"_bytes", "_ms", "_s"};
        size_t len = strlen(key);

        for (size_t i = 0; i < ARRAY_SIZE(units); i++)
                if (has_suffix(key, units[i])) {
                        len -= strlen(units[i]);
                        break;
                }
        snprintf(buf, size, "%s%s%.*s", prefix, prefix[0] ? " " : "", (int)len, key);
        for (char *p = buf; *p; p++)
                if (*p == '_')
                        *p = ' ';
}

static void format_number(const char *key, struct json_object *v, char *buf, size_t size)
{
        uint64_t n = json_object_get_uint64(v);

        if (json_object_get_int64(v) < 0)
                snprintf(buf, size, "%lld", (long long)json_object_get_int64(v));
        else if (has_suffix(key, "_bytes"))
                format_size(n, buf, (unsigned)size);
        else if (has_suffix(key, "_ms"))
                snprintf(buf, size, "%.1f s", (double)n / 1000);
        else if (has_suffix(key, "_s"))
                snprintf(buf, size, "%llu s", (unsigned long long)n);
        else
                snprintf(buf, size, "%llu", (unsigned long long)n);
}

static void format_value(const char *key, struct json_object *v, char *buf, size_t size)
{
        switch (json_object_get_type(v)) {
        case json_type_null:
                snprintf(buf, size, "none");
                break;
        case json_type_int:
                format_number(key, v, buf, size);
                break;
        case json_type_boolean:
                snprintf(buf, size, "%s", json_object_get_boolean(v) ? "yes" : "no");
                break;
        default:
                snprintf(buf, size, "%s", json_object_get_string(v));
                break;
        }
}

/* Visits every leaf (a nested object's members get its label as a prefix). */
typedef void (*leaf_fn)(const char *label, const char *key, struct json_object *v, void *ctx);

static void walk(struct json_object *o, const char *prefix, leaf_fn fn, void *ctx)
{
        json_object_object_foreach(o, key, v)
        {
                char label[LABEL_MAX];

                make_label(prefix, key, label, sizeof(label));
                if (json_object_is_type(v, json_type_object))
                        walk(v, label, fn, ctx);
                else
                        fn(label, key, v, ctx);
        }
}

static void measure(const char *label, const char *key, struct json_object *v, void *ctx)
{
        int *width = ctx;
        int n = (int)strlen(label);

        if (n > *width)
                *width = n;
}

struct print_ctx {
        FILE *f;
        int width;
};

static void print_leaf(const char *label, const char *key, struct json_object *v, void *ctx)
{
        struct print_ctx *p = ctx;
        char value[VALUE_MAX];

        format_value(key, v, value, sizeof(value));
        fprintf(p->f, "%-*s  %s\n", p->width, label, value);
}

void ctl_print_info(FILE *f, struct json_object *info)
{
        struct print_ctx p = {.f = f};

        walk(info, "", measure, &p.width);
        walk(info, "", print_leaf, &p);
}
