/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Logging. Functions return 0 or a negative errno; the caller that gives up logs once, with
 * context, using log_errno() which returns the error so it can be propagated in one line.
 */
#pragma once

#include <stdbool.h>

#include "tidal/macro.h"

enum log_level {
        LOG_LEVEL_ERROR,
        LOG_LEVEL_WARNING,
        LOG_LEVEL_INFO,
        LOG_LEVEL_DEBUG,
};

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_set_prefix(const char *prefix);

/* Returns -abs(error) when error != 0, else 0, so "return log_errno(r, ...)" works. */
int log_full(enum log_level level, int error, const char *fmt, ...) _printf_(3, 4);

#define log_error(...) log_full(LOG_LEVEL_ERROR, 0, __VA_ARGS__)
#define log_warn(...)  log_full(LOG_LEVEL_WARNING, 0, __VA_ARGS__)
#define log_info(...)  log_full(LOG_LEVEL_INFO, 0, __VA_ARGS__)
#define log_debug(...)                                                                             \
        (log_get_level() >= LOG_LEVEL_DEBUG ? log_full(LOG_LEVEL_DEBUG, 0, __VA_ARGS__) : 0)

/* Log with ": <strerror(error)>" appended; evaluates to -abs(error). */
#define log_errno(error, ...)      log_full(LOG_LEVEL_ERROR, (error), __VA_ARGS__)
#define log_warn_errno(error, ...) log_full(LOG_LEVEL_WARNING, (error), __VA_ARGS__)
