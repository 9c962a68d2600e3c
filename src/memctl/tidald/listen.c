/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The daemon's socket: handed over by systemd (tidald.socket) or created here, 0660 and owned
 * by the configured group. A socket another daemon still listens on is never replaced; a stale
 * one (left by a killed daemon) is.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "memctl/tidald/tidald.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "tidal/unix-socket.h"

static int set_group(const char *path, const char *group)
{
        struct group *g;

        errno = 0;
        g = getgrnam(group);
        if (!g)
                return log_errno(errno ? errno : ENOENT, "unknown group %s", group);
        if (chown(path, (uid_t)-1, g->gr_gid) < 0)
                return log_errno(errno, "cannot give %s to group %s", path, group);
        return 0;
}

static int create_socket(struct daemon *d, const char *path, const char *group)
{
        _cleanup_close_ int fd = -1;
        struct sockaddr_un sa;
        const char *why = NULL;
        mode_t old_umask;
        int r;

        r = unix_address(path, &sa);
        if (r < 0)
                return log_errno(r, "socket path %s", path);
        r = unix_clear_stale(&sa, &why);
        if (r == -EADDRINUSE)
                return log_error("another tidald is listening on %s", path), r;
        if (r < 0)
                return log_errno(r, "%s: %s", path, why);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_errno(errno, "socket");
        /* 0660 from the start: no moment where others could connect. */
        old_umask = umask(0117);
        r = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
        umask(old_umask);
        if (r < 0)
                return log_errno(errno, "cannot bind %s", path);
        d->socket_created = true;
        if (group && (r = set_group(path, group)) < 0)
                return r;
        if (listen(fd, SOMAXCONN) < 0)
                return log_errno(errno, "cannot listen on %s", path);
        d->listen_fd = TAKE_FD(fd);
        return 0;
}

int listen_open(struct daemon *d, const char *path, const char *group)
{
        int n = sd_listen_fds(1);

        d->socket_path = path;
        if (n < 0)
                return log_errno(n, "cannot take the sockets systemd passed");
        if (n == 0)
                return create_socket(d, path, group);
        if (n > 1)
                return log_error("systemd passed %d sockets; tidald takes one", n), -EINVAL;
        if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0)
                return log_error("the socket systemd passed is not a listening Unix stream "
                                 "socket"),
                       -EINVAL;
        d->listen_fd = SD_LISTEN_FDS_START;
        if (fcntl(d->listen_fd, F_SETFL, fcntl(d->listen_fd, F_GETFL) | O_NONBLOCK) < 0)
                return log_errno(errno, "cannot make the socket non-blocking");
        return 0;
}

void listen_close(struct daemon *d)
{
        if (d->listen_fd >= 0)
                close(d->listen_fd);
        d->listen_fd = -1;
        if (d->socket_created)
                unlink(d->socket_path);
}
