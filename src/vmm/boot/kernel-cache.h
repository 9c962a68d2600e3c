/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kernel cache: a bzImage's payload, decompressed once on the host and kept as a file
 * named after a hash of the whole bzImage, so later boots enter the kernel directly
 * (vmlinux.h) instead of running the guest's decompressor. docs/tidal.md, "Kernel cache".
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "vmm/boot/boot.h"

/* 128-bit XXH3 in hex, ".vmlinux" and the NUL. */
#define KERNEL_CACHE_NAME_MAX 48

/* The cache file's name for this bzImage (the hash covers every byte of it). */
void kernel_cache_name(const struct bzimage *img, char name[KERNEL_CACHE_NAME_MAX]);

/*
 * Opens dir/name and maps it. 0, -ENOENT when the kernel is not cached, or another -errno.
 * The caller parses it (vmlinux_parse) before trusting it.
 */
int kernel_cache_open(const char *dir, const char *name, struct boot_file *f);

/*
 * Decompresses the bzImage's payload (xz, the format of Debian's and most distributions'
 * kernels) into dir/name: written to an unnamed file in dir, checked with vmlinux_parse, and
 * only then linked under its name (replacing a damaged entry), so a reader never sees a
 * partial file and a crash leaves nothing behind. dir is created if missing. 0,
 * -EOPNOTSUPP for another compression, -ENOEXEC with *why for a payload that is not a valid
 * kernel, or another -errno.
 */
int kernel_cache_store(const char *dir, const char *name, const struct bzimage *img,
                       const char **why);

/*
 * Where the cache lives by default: $TIDAL_KERNEL_CACHE, else $XDG_CACHE_HOME/tidal/kernels,
 * else $HOME/.cache/tidal/kernels. NULL (no cache) when none of them is set or the first is
 * "off". The result is malloc'ed.
 */
char *kernel_cache_default_dir(void);
