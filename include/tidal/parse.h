/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Parsing of user-supplied numbers and sizes (command line, control socket, config files). */
#pragma once

#include <stdint.h>

/*
 * "512M", "1G", "4096", "1.5G", "64k": a byte count with an optional K/M/G/T suffix (powers of
 * 1024, optional trailing "iB" or "B"). No sign, no empty string, no overflow. 0 or -EINVAL /
 * -ERANGE.
 */
int parse_size(const char *s, uint64_t *ret);

/* A decimal integer in [min, max], nothing else. 0 or -EINVAL / -ERANGE. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* Formats bytes as "512 MiB" / "1.5 GiB" into buf. Returns buf. */
char *format_size(uint64_t bytes, char *buf, unsigned buf_size);
