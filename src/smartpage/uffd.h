/* SPDX-License-Identifier: GPL-2.0-or-later */
/* userfaultfd for the paging engine: MISSING and MINOR faults on a shmem mapping. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Opens a userfaultfd (non-blocking) with MISSING and MINOR faults on shmem enabled. */
int uffd_open(int *ret);
int uffd_register(int uffd, void *addr, size_t len);
int uffd_unregister(int uffd, void *addr, size_t len);
/* Fills [dst, dst + len) from src and wakes waiters; -EEXIST with *done bytes when a page was
 * already present. */
int uffd_copy(int uffd, void *dst, const void *src, size_t len, size_t *done);
int uffd_zeropage(int uffd, void *dst, size_t len);
/* Maps the page cache's page at dst again (a MINOR fault) and wakes waiters. */
int uffd_continue(int uffd, void *dst, size_t len);
int uffd_wake(int uffd, void *dst, size_t len);
