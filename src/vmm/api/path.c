/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Where a VM's control socket lives by default; shared by the VMM and tidalctl. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tidal/api.h"
#include "tidal/unix-socket.h"

/* Names become file names: no separators, nothing hidden, nothing empty. */
static bool name_is_file_name(const char *name)
{
        return name && name[0] != '\0' && name[0] != '.' && !strchr(name, '/');
}

int api_socket_default_path(const char *name, char *buf, size_t size)
{
        const char *runtime = "/run";
        int n;

        if (!name_is_file_name(name))
                return -EINVAL;
        if (geteuid() != 0) {
                /* Per-user sockets belong in the user's private runtime directory, never /tmp. */
                runtime = getenv("XDG_RUNTIME_DIR");
                if (!runtime || runtime[0] != '/')
                        return -ENXIO;
        }
        n = snprintf(buf, size, "%s/tidal/%s.sock", runtime, name);
        if (n < 0 || (size_t)n >= size || (size_t)n > UNIX_PATH_MAX_LEN)
                return -ENAMETOOLONG;
        return 0;
}

int api_socket_make_dir(const char *path)
{
        char dir[UNIX_PATH_MAX_LEN + 1];
        const char *slash = strrchr(path, '/');
        struct stat st;
        size_t len;

        if (!slash || slash == path)
                return 0; /* the current directory or "/": nothing to create */
        len = (size_t)(slash - path);
        if (len >= sizeof(dir))
                return -ENAMETOOLONG;
        memcpy(dir, path, len);
        dir[len] = '\0';
        if (mkdir(dir, 0700) == 0)
                return 0;
        if (errno != EEXIST)
                return -errno;
        if (stat(dir, &st) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}
