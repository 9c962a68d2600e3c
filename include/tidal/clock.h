/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one clock every component measures intervals with: CLOCK_MONOTONIC. */
#pragma once

#include <stdint.h>
#include <time.h>

static inline uint64_t monotonic_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline uint64_t monotonic_ms(void)
{
        return monotonic_ns() / 1000000ULL;
}
