/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * userfaultfd. Not UFFD_USER_MODE_ONLY: the faults that matter most are raised by KVM on
 * behalf of the guest, inside the kernel. No event features (REMOVE, UNMAP): the engine's own
 * madvise(MADV_DONTNEED) would then wait for the handler thread that issued it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "smartpage/uffd.h"
#include "tidal/macro.h"

#define NEEDED_FEATURES (UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM)
#define NEEDED_IOCTLS                                                                              \
        ((UINT64_C(1) << _UFFDIO_COPY) | (UINT64_C(1) << _UFFDIO_ZEROPAGE) |                       \
         (UINT64_C(1) << _UFFDIO_CONTINUE) | (UINT64_C(1) << _UFFDIO_WAKE))
#define WP_IOCTLS (UINT64_C(1) << _UFFDIO_WRITEPROTECT)

/* Debian 12's headers (6.1) predate it; the value is the kernel's ABI. */
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

/* The system call needs CAP_SYS_PTRACE (or vm.unprivileged_userfaultfd); /dev/userfaultfd
 * only its file mode. */
static int open_raw(void)
{
        int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
        _cleanup_close_ int dev = -1;

        if (fd >= 0)
                return fd;
        if (errno != EPERM && errno != ENOSYS)
                return -errno;
        dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev < 0)
                return errno == ENOENT ? -EPERM : -errno;
#ifdef USERFAULTFD_IOC_NEW
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        return fd < 0 ? -errno : fd;
#else
        return -EPERM;
#endif
}

/* UFFDIO_API can be called once per descriptor: ask for WP first, then without it. */
static int open_api(uint64_t features, int *ret)
{
        struct uffdio_api api = {.api = UFFD_API, .features = features};
        _cleanup_close_ int fd = open_raw();

        if (fd < 0)
                return fd;
        if (ioctl(fd, UFFDIO_API, &api) < 0)
                return errno == EINVAL ? -EOPNOTSUPP : -errno;
        if ((api.features & features) != features)
                return -EOPNOTSUPP;
        *ret = TAKE_FD(fd);
        return 0;
}

int uffd_open(int *ret, bool *wp)
{
        int r = open_api(NEEDED_FEATURES | UFFD_FEATURE_WP_HUGETLBFS_SHMEM, ret);

        if (wp)
                *wp = r == 0;
        if (r != -EOPNOTSUPP)
                return r;
        return open_api(NEEDED_FEATURES, ret);
}

int uffd_register(int uffd, void *addr, size_t len, bool wp)
{
        struct uffdio_register reg = {
                .range = {.start = (uintptr_t)addr, .len = len},
                .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR |
                        (wp ? UFFDIO_REGISTER_MODE_WP : 0),
        };
        uint64_t needed = NEEDED_IOCTLS | (wp ? WP_IOCTLS : 0);

        if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
                return -errno;
        if ((reg.ioctls & needed) != needed) {
                (void)uffd_unregister(uffd, addr, len);
                return -EOPNOTSUPP;
        }
        return 0;
}

int uffd_unregister(int uffd, void *addr, size_t len)
{
        struct uffdio_range range = {.start = (uintptr_t)addr, .len = len};

        return ioctl(uffd, UFFDIO_UNREGISTER, &range) < 0 ? -errno : 0;
}

int uffd_copy(int uffd, void *dst, const void *src, size_t len, bool wp, size_t *done)
{
        size_t off = 0;

        /* EAGAIN: the address space changed under the copy (or a partial copy); go on. */
        while (off < len) {
                struct uffdio_copy c = {
                        .dst = (uintptr_t)dst + off,
                        .src = (uintptr_t)src + off,
                        .len = len - off,
                        .mode = wp ? UFFDIO_COPY_MODE_WP : 0,
                };

                if (ioctl(uffd, UFFDIO_COPY, &c) == 0) {
                        off = len;
                        break;
                }
                if (c.copy > 0)
                        off += (size_t)c.copy;
                if (errno == EAGAIN)
                        continue;
                *done = off;
                return -errno;
        }
        *done = off;
        return 0;
}

int uffd_zeropage(int uffd, void *dst, size_t len)
{
        for (;;) {
                struct uffdio_zeropage z = {.range = {.start = (uintptr_t)dst, .len = len}};

                if (ioctl(uffd, UFFDIO_ZEROPAGE, &z) == 0)
                        return 0;
                if (errno != EAGAIN)
                        return -errno;
        }
}

int uffd_continue(int uffd, void *dst, size_t len, bool wp)
{
        for (;;) {
                struct uffdio_continue c = {
                        .range = {.start = (uintptr_t)dst, .len = len},
                        .mode = wp ? UFFDIO_CONTINUE_MODE_WP : 0,
                };

                if (ioctl(uffd, UFFDIO_CONTINUE, &c) == 0)
                        return 0;
                if (errno != EAGAIN)
                        return -errno;
        }
}

int uffd_writeprotect(int uffd, void *dst, size_t len, bool protect)
{
        for (;;) {
                struct uffdio_writeprotect w = {
                        .range = {.start = (uintptr_t)dst, .len = len},
                        .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
                };

                if (ioctl(uffd, UFFDIO_WRITEPROTECT, &w) == 0)
                        return 0;
                if (errno != EAGAIN)
                        return -errno;
        }
}

int uffd_wake(int uffd, void *dst, size_t len)
{
        struct uffdio_range range = {.start = (uintptr_t)dst, .len = len};

        return ioctl(uffd, UFFDIO_WAKE, &range) < 0 ? -errno : 0;
}
