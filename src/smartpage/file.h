/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The paging file: <dir>/<name>.paging, 0600, sparse, one slot per page of the region at the
 * page's own offset. Opened O_DIRECT where the file system allows it, so that paged-out guest
 * memory does not come back as host page cache.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct paging_file {
        int fd;
        char *path;
        bool direct;
};

/* Creates the directory if needed, removes a stale file, creates a new one of `size` bytes. */
int paging_file_create(struct paging_file *f, const char *dir, const char *name, uint64_t size);
/* Frees the file's blocks of [off, off + len). */
int paging_file_punch(struct paging_file *f, uint64_t off, uint64_t len);
/* Closes and deletes the file. */
int paging_file_remove(struct paging_file *f);
