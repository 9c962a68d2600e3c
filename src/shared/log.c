/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tidal/log.h"

/*
 * Process-wide by nature (stderr is), so the level and prefix are the one piece of global state
 * tidal keeps. Written once at start-up, read everywhere.
 */
static enum log_level max_level = LOG_LEVEL_INFO;
static const char *log_prefix = "tidal";

void log_set_level(enum log_level level)
{
        max_level = level;
}

enum log_level log_get_level(void)
{
        return max_level;
}

void log_set_prefix(const char *prefix)
{
        log_prefix = prefix;
}

static const char *level_name(enum log_level level)
{
        switch (level) {
        case LOG_LEVEL_ERROR:
                return "error: ";
        case LOG_LEVEL_WARNING:
                return "warning: ";
        case LOG_LEVEL_DEBUG:
                return "debug: ";
        default:
                return "";
        }
}

int log_full(enum log_level level, int error, const char *fmt, ...)
{
        int ret = error > 0 ? -error : error;
        char msg[1024];
        va_list ap;

        if (level > max_level)
                return ret;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        /* One write per line so lines from vCPU and I/O threads never interleave. */
        if (error != 0)
                fprintf(stderr, "%s: %s%s: %s\n", log_prefix, level_name(level), msg,
                        strerror(-ret));
        else
                fprintf(stderr, "%s: %s%s\n", log_prefix, level_name(level), msg);
        return ret;
}
