/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tidal/macro.h"
#include "tidal/parse.h"

static int suffix_shift(const char *suffix, unsigned *shift)
{
        static const struct {
                char letter;
                unsigned shift;
        } units[] = {{'k', 10}, {'m', 20}, {'g', 30}, {'t', 40}};

        if (*suffix == '\0' || strcasecmp(suffix, "b") == 0) {
                *shift = 0;
                return 0;
        }
        for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
                if (tolower((unsigned char)suffix[0]) != units[i].letter)
                        continue;
                if (suffix[1] == '\0' || strcasecmp(suffix + 1, "b") == 0 ||
                    strcasecmp(suffix + 1, "ib") == 0) {
                        *shift = units[i].shift;
                        return 0;
                }
        }
        return -EINVAL;
}

int parse_size(const char *s, uint64_t *ret)
{
        uint64_t whole = 0, frac = 0, frac_div = 1;
        const char *p = s;
        unsigned shift;
        int r;

        if (!s || !isdigit((unsigned char)*p))
                return -EINVAL;
        for (; isdigit((unsigned char)*p); p++) {
                if (__builtin_mul_overflow(whole, 10, &whole) ||
                    __builtin_add_overflow(whole, (uint64_t)(*p - '0'), &whole))
                        return -ERANGE;
        }
        if (*p == '.') {
                p++;
                if (!isdigit((unsigned char)*p))
                        return -EINVAL;
                for (; isdigit((unsigned char)*p); p++) {
                        if (frac_div >= UINT64_C(1000000000))
                                continue; /* further digits cannot matter */
                        frac = frac * 10 + (uint64_t)(*p - '0');
                        frac_div *= 10;
                }
        }
        r = suffix_shift(p, &shift);
        if (r < 0)
                return r;
        if (whole > (UINT64_MAX >> shift))
                return -ERANGE;
        if (__builtin_add_overflow(whole << shift,
                                   (uint64_t)(((unsigned __int128)frac << shift) / frac_div), ret))
                return -ERANGE;
        return 0;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
        uint64_t v = 0;

        if (!s || *s == '\0')
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (!isdigit((unsigned char)*p))
                        return -EINVAL;
                if (__builtin_mul_overflow(v, 10, &v) ||
                    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
                        return -ERANGE;
        }
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

char *format_size(uint64_t bytes, char *buf, unsigned buf_size)
{
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        unsigned u = 0;
        double v = (double)bytes;

        while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
                v /= 1024;
                u++;
        }
        if (u == 0 || v == (double)(uint64_t)v)
                snprintf(buf, buf_size, "%llu %s", (unsigned long long)v, units[u]);
        else
                snprintf(buf, buf_size, "%.1f %s", v, units[u]);
        return buf;
}
