/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tidal/macro.h"
#include "tidal/unix-socket.h"

int unix_address(const char *path, struct sockaddr_un *sa)
{
        size_t len = strlen(path);

        *sa = (struct sockaddr_un){.sun_family = AF_UNIX};
        if (len == 0)
                return -EINVAL;
        if (len > UNIX_PATH_MAX_LEN)
                return -ENAMETOOLONG;
        memcpy(sa->sun_path, path, len + 1);
        return 0;
}

int unix_connect(const char *path, bool nonblock, int *ret_fd)
{
        _cleanup_close_ int fd = -1;
        struct sockaddr_un sa;
        int r = unix_address(path, &sa);

        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
        if (fd < 0)
                return -errno;
        /* A Unix socket connects at once or not at all (EAGAIN: its backlog is full). */
        if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int unix_clear_stale(const struct sockaddr_un *sa, const char **why)
{
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (lstat(sa->sun_path, &st) < 0) {
                *why = "cannot look at the path";
                return errno == ENOENT ? 0 : -errno;
        }
        if (!S_ISSOCK(st.st_mode)) {
                *why = "the path exists and is not a socket";
                return -EEXIST;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                *why = "cannot create a socket";
                return -errno;
        }
        /* EAGAIN: it listens but its backlog is full, so it is alive. */
        if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 || errno == EAGAIN) {
                *why = "another process is serving this socket";
                return -EADDRINUSE;
        }
        if (errno != ECONNREFUSED) {
                *why = "cannot tell whether the existing socket is in use";
                return -errno;
        }
        if (unlink(sa->sun_path) < 0 && errno != ENOENT) {
                *why = "cannot remove the stale socket";
                return -errno;
        }
        return 0;
}
