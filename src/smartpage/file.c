/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smartpage/file.h"
#include "smartpage/smartpage.h"
#include "tidal/fs.h"
#include "tidal/macro.h"

#define NAME_MAX_LEN 200

static bool name_valid(const char *name)
{
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n == 0 || n > NAME_MAX_LEN || name[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (name[i] == '/' || (unsigned char)name[i] < 0x20 || name[i] == 0x7f)
                        return false;
        return true;
}

int smartpage_file_path(const char *dir, const char *name, char **ret)
{
        if (!name_valid(name))
                return -EINVAL;
        if (!dir)
                dir = SMARTPAGE_DEFAULT_DIR;
        if (dir[0] == '\0')
                return -EINVAL;
        return asprintf(ret, "%s/%s.paging", dir, name) < 0 ? -ENOMEM : 0;
}

int smartpage_remove_stale(const char *dir, const char *name)
{
        _cleanup_free_ char *path = NULL;
        int r = smartpage_file_path(dir, name, &path);

        if (r < 0)
                return r;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

static int open_new(const char *path, bool *direct)
{
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

        if (fd < 0)
                return -errno;
        /*
         * Some file systems (tmpfs before 6.6) refuse O_DIRECT: buffered I/O then. Asked for
         * after the file exists: open(O_CREAT | O_DIRECT) on those creates the file and then
         * fails, so that a retry with O_EXCL would find it (EEXIST).
         */
        *direct = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_DIRECT) == 0;
        return fd;
}

int paging_file_create(struct paging_file *f, const char *dir, const char *name, uint64_t size)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        *f = (struct paging_file){.fd = -1};
        r = smartpage_file_path(dir, name, &path);
        if (r < 0)
                return r;
        /* 0700: the directory holds guest memory. */
        r = mkdir_p(dir ? dir : SMARTPAGE_DEFAULT_DIR, 0700);
        if (r < 0)
                return r;
        /* A file left by a killed tidal holds nothing this run can use. */
        r = smartpage_remove_stale(dir, name);
        if (r < 0)
                return r;
        fd = open_new(path, &f->direct);
        if (fd < 0)
                return fd;
        /* Sparse: blocks are allocated as pages are written, freed when they are discarded. */
        if (ftruncate(fd, (off_t)size) < 0) {
                r = -errno;
                (void)unlink(path);
                return r;
        }
        f->fd = TAKE_FD(fd);
        f->path = TAKE_PTR(path);
        return 0;
}

int paging_file_punch(struct paging_file *f, uint64_t off, uint64_t len)
{
        if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) <
            0)
                return -errno;
        return 0;
}

int paging_file_remove(struct paging_file *f)
{
        int r = 0;

        if (f->fd >= 0)
                close(f->fd);
        if (f->path && unlink(f->path) < 0 && errno != ENOENT)
                r = -errno;
        free(f->path);
        *f = (struct paging_file){.fd = -1};
        return r;
}
