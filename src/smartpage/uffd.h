/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * userfaultfd for the paging engine: MISSING and MINOR faults on a shmem mapping, and, where the
 * kernel has it, write-protect (WP) tracking on the same mapping.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Opens a userfaultfd (non-blocking) with MISSING and MINOR faults on shmem enabled, and write
 * protection on shmem (UFFD_FEATURE_WP_HUGETLBFS_SHMEM, Linux >= 5.19) when the kernel has it:
 * *wp says whether it does. wp may be NULL.
 */
int uffd_open(int *ret, bool *wp);
/* Registers MISSING | MINOR, and WP when wp; -EOPNOTSUPP when an ioctl we need is missing. */
int uffd_register(int uffd, void *addr, size_t len, bool wp);
int uffd_unregister(int uffd, void *addr, size_t len);
/*
 * Fills [dst, dst + len) from src and wakes waiters, write-protected when wp; -EEXIST with
 * *done bytes when a page was already present.
 */
int uffd_copy(int uffd, void *dst, const void *src, size_t len, bool wp, size_t *done);
int uffd_zeropage(int uffd, void *dst, size_t len);
/*
 * Maps the page cache's page at dst again (a MINOR fault) and wakes waiters; write-protected
 * when wp, which needs UFFDIO_CONTINUE_MODE_WP (Linux >= 6.4): -EINVAL on older kernels.
 */
int uffd_continue(int uffd, void *dst, size_t len, bool wp);
/* Write-protects [dst, dst + len), or removes the protection and wakes waiters. */
int uffd_writeprotect(int uffd, void *dst, size_t len, bool protect);
int uffd_wake(int uffd, void *dst, size_t len);
