/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "tidal/macro.h"
#include "tidal/memory-settings.h"
#include "tidal/parse.h"

_printf_(4, 5) static int fail(int r, char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        return r;
}

void mem_settings_static(struct mem_settings *s, uint64_t startup)
{
        *s = (struct mem_settings){
                .dynamic = false,
                .startup = startup,
                .minimum = startup,
                .maximum = startup,
                .buffer = MEM_BUFFER_DEFAULT,
                .weight = MEM_WEIGHT_DEFAULT,
        };
}

static int check_amount(const char *what, uint64_t v, char *err, size_t errlen)
{
        char a[32];

        if (v > MEM_SETTINGS_MAX)
                return fail(-EINVAL, err, errlen, "%s %s is above the largest, 1 TiB", what,
                            format_size(v, a, sizeof(a)));
        if (!IS_ALIGNED(v, MEM_BLOCK_SIZE))
                return fail(-EINVAL, err, errlen, "%s %s is not a multiple of 2 MiB", what,
                            format_size(v, a, sizeof(a)));
        return 0;
}

int mem_settings_check(const struct mem_settings *s, char *err, size_t errlen)
{
        char a[32], b[32];
        int r;

        if ((r = check_amount("startup", s->startup, err, errlen)) < 0 ||
            (r = check_amount("minimum", s->minimum, err, errlen)) < 0 ||
            (r = check_amount("maximum", s->maximum, err, errlen)) < 0)
                return r;
        if (s->minimum < MEM_MINIMUM_FLOOR)
                return fail(-EINVAL, err, errlen, "minimum %s is below the smallest, 32 MiB",
                            format_size(s->minimum, a, sizeof(a)));
        if (s->minimum > s->startup)
                return fail(-EINVAL, err, errlen, "minimum %s is above startup %s",
                            format_size(s->minimum, a, sizeof(a)),
                            format_size(s->startup, b, sizeof(b)));
        if (s->maximum < s->startup)
                return fail(-EINVAL, err, errlen, "maximum %s is below startup %s",
                            format_size(s->maximum, a, sizeof(a)),
                            format_size(s->startup, b, sizeof(b)));
        if (s->buffer < MEM_BUFFER_MIN || s->buffer > MEM_BUFFER_MAX)
                return fail(-EINVAL, err, errlen, "buffer %u%% is outside %u-%u%%", s->buffer,
                            MEM_BUFFER_MIN, MEM_BUFFER_MAX);
        if (s->weight > MEM_WEIGHT_MAX)
                return fail(-EINVAL, err, errlen, "weight %u is above %u", s->weight,
                            MEM_WEIGHT_MAX);
        if (!s->dynamic && (s->minimum != s->startup || s->maximum != s->startup))
                return fail(-EINVAL, err, errlen,
                            "static memory has no minimum or maximum other than startup");
        return 0;
}

/* The rules Hyper-V applies to a running VM's dynamic memory settings. */
static int check_runtime_rules(const struct mem_settings *cur, const struct mem_settings *req,
                               unsigned which, char *err, size_t errlen)
{
        char a[32], b[32];

        if ((which & MEM_SET_DYNAMIC) && req->dynamic != cur->dynamic)
                return fail(-EPERM, err, errlen,
                            "dynamic memory can only be turned %s while the VM is off",
                            req->dynamic ? "on" : "off");
        if ((which & MEM_SET_STARTUP) && req->startup != cur->startup)
                return fail(-EPERM, err, errlen, "startup can only be changed while the VM is off");
        if (!cur->dynamic && (which & (MEM_SET_MINIMUM | MEM_SET_MAXIMUM)))
                return fail(-EPERM, err, errlen,
                            "this VM has static memory: minimum and maximum cannot change");
        if ((which & MEM_SET_MINIMUM) && req->minimum > cur->minimum)
                return fail(-EPERM, err, errlen,
                            "minimum can only be lowered while the VM runs (%s is above %s)",
                            format_size(req->minimum, a, sizeof(a)),
                            format_size(cur->minimum, b, sizeof(b)));
        if ((which & MEM_SET_MAXIMUM) && req->maximum < cur->maximum)
                return fail(-EPERM, err, errlen,
                            "maximum can only be raised while the VM runs (%s is below %s)",
                            format_size(req->maximum, a, sizeof(a)),
                            format_size(cur->maximum, b, sizeof(b)));
        return 0;
}

int mem_settings_change(const struct mem_settings *cur, const struct mem_settings *req,
                        unsigned which, bool running, struct mem_settings *ret, char *err,
                        size_t errlen)
{
        struct mem_settings next = *cur;
        int r;

        if (running) {
                r = check_runtime_rules(cur, req, which, err, errlen);
                if (r < 0)
                        return r;
        }
        if (which & MEM_SET_DYNAMIC)
                next.dynamic = req->dynamic;
        if (which & MEM_SET_STARTUP)
                next.startup = req->startup;
        if (which & MEM_SET_MINIMUM)
                next.minimum = req->minimum;
        if (which & MEM_SET_MAXIMUM)
                next.maximum = req->maximum;
        if (which & MEM_SET_BUFFER)
                next.buffer = req->buffer;
        if (which & MEM_SET_WEIGHT)
                next.weight = req->weight;
        if (!next.dynamic)
                next.minimum = next.maximum = next.startup;
        r = mem_settings_check(&next, err, errlen);
        if (r < 0)
                return r;
        *ret = next;
        return 0;
}

uint64_t mem_with_buffer(uint64_t demand, unsigned buffer)
{
        uint64_t extra;

        /* demand / 100 * buffer first would lose up to 99 bytes; overflow only past 2^57. */
        if (__builtin_mul_overflow(demand, (uint64_t)buffer, &extra))
                return UINT64_MAX;
        extra /= 100;
        return demand > UINT64_MAX - extra ? UINT64_MAX : demand + extra;
}

enum mem_status mem_status_of(uint64_t assigned, uint64_t demand, unsigned buffer)
{
        if (assigned < demand)
                return MEM_STATUS_WARNING;
        if (assigned < mem_with_buffer(demand, buffer))
                return MEM_STATUS_LOW;
        return MEM_STATUS_OK;
}

const char *mem_status_name(enum mem_status status)
{
        switch (status) {
        case MEM_STATUS_OK:
                return "OK";
        case MEM_STATUS_LOW:
                return "Low";
        case MEM_STATUS_WARNING:
                return "Warning";
        }
        return "unknown";
}
