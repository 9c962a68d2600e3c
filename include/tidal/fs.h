/* SPDX-License-Identifier: GPL-2.0-or-later */
/* File-system helpers shared by the VMM's components. */
#pragma once

#include <sys/types.h>

/* mkdir -p: creates path and its missing parents with mode. 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);
