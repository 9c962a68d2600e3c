/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unix stream sockets by path, as the VMM's control socket, tidald and their clients use them.
 * Functions return 0 or a negative errno; where a caller has to say why, *why says it.
 */
#pragma once

#include <stdbool.h>
#include <sys/un.h>

/* The longest path a Unix socket address holds. */
#define UNIX_PATH_MAX_LEN (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* Fills sa with path: -EINVAL if it is empty, -ENAMETOOLONG past UNIX_PATH_MAX_LEN. */
int unix_address(const char *path, struct sockaddr_un *sa);

/* Connects a close-on-exec stream socket (non-blocking with nonblock) to path. */
int unix_connect(const char *path, bool nonblock, int *ret_fd);

/*
 * Before binding sa: a socket file left there is either a live server's (it answers:
 * -EADDRINUSE, left alone) or a dead one's (nothing listens: removed). Anything else at the
 * path is not ours to remove (-EEXIST). 0 when the path is free.
 */
int unix_clear_stale(const struct sockaddr_un *sa, const char **why);
