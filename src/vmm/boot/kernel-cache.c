/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "tidal/fs.h"
#include "tidal/macro.h"
#include "vmm/boot/kernel-cache.h"
#include "vmm/boot/vmlinux.h"

/* Bounds for hostile payloads: a decompressed kernel is tens of MiB. */
#define CACHE_MAX_SIZE (1ULL << 30)
#define XZ_MEMLIMIT    (256ULL << 20)
#define DECODE_CHUNK   (1u << 20)
#define XZ_MAGIC                                                                                   \
        "\xfd"                                                                                     \
        "7zXZ"
#define XZ_MAGIC_LEN 5

void kernel_cache_name(const struct bzimage *img, char name[KERNEL_CACHE_NAME_MAX])
{
        XXH128_hash_t h = XXH3_128bits(img->data, img->size);

        snprintf(name, KERNEL_CACHE_NAME_MAX, "%016llx%016llx.vmlinux",
                 (unsigned long long)h.high64, (unsigned long long)h.low64);
}

static char *cache_path(const char *dir, const char *name)
{
        char *path;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return NULL;
        return path;
}

int kernel_cache_open(const char *dir, const char *name, struct boot_file *f)
{
        _cleanup_free_ char *path = cache_path(dir, name);

        if (!path)
                return -ENOMEM;
        return boot_file_open(path, CACHE_MAX_SIZE, f);
}

/* The compressed payload inside the protected-mode part (boot protocol 2.08+). */
static int find_payload(const struct bzimage *img, const uint8_t **payload, size_t *len,
                        const char **why)
{
        uint64_t off = img->hdr.payload_offset, n = img->hdr.payload_length;

        if (img->hdr.version < 0x0208 || n < XZ_MAGIC_LEN || off > img->kernel_size ||
            n > img->kernel_size - off) {
                *why = "kernel has no payload the boot protocol describes";
                return -ENOEXEC;
        }
        *payload = img->kernel + off;
        *len = n;
        if (memcmp(*payload, XZ_MAGIC, XZ_MAGIC_LEN) != 0) {
                *why = "kernel payload is not xz-compressed";
                return -EOPNOTSUPP;
        }
        return 0;
}

static int write_all(int fd, const uint8_t *buf, size_t len)
{
        while (len) {
                ssize_t n = write(fd, buf, len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

static void lzma_endp(lzma_stream *s)
{
        lzma_end(s);
}

/*
 * Decodes one xz stream into fd. The kernel appends its decompressed size after the stream,
 * so decoding stops at the stream's end rather than expecting the input to end there.
 */
static int decompress_xz(const uint8_t *in, size_t in_len, int fd, const char **why)
{
        _cleanup_(lzma_endp) lzma_stream strm = LZMA_STREAM_INIT;
        _cleanup_free_ uint8_t *out = malloc(DECODE_CHUNK);
        uint64_t total = 0;
        lzma_ret ret;
        int r;

        if (!out || lzma_stream_decoder(&strm, XZ_MEMLIMIT, 0) != LZMA_OK)
                return -ENOMEM;
        strm.next_in = in;
        strm.avail_in = in_len;
        do {
                strm.next_out = out;
                strm.avail_out = DECODE_CHUNK;
                ret = lzma_code(&strm, LZMA_FINISH);
                if (ret != LZMA_OK && ret != LZMA_STREAM_END) {
                        *why = "kernel payload does not decompress (corrupt xz data)";
                        return -ENOEXEC;
                }
                total += DECODE_CHUNK - strm.avail_out;
                if (total > CACHE_MAX_SIZE) {
                        *why = "decompressed kernel larger than 1 GiB";
                        return -EFBIG;
                }
                r = write_all(fd, out, DECODE_CHUNK - strm.avail_out);
                if (r < 0)
                        return r;
        } while (ret != LZMA_STREAM_END);
        return 0;
}

/* Maps what was written and checks that it is a kernel tidal can enter. */
static int check_written(int fd, const char **why)
{
        struct vmlinux vl;
        off_t size = lseek(fd, 0, SEEK_END);
        void *p;
        int r;

        if (size <= 0)
                return size < 0 ? -errno : -ENOEXEC;
        p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return -errno;
        r = vmlinux_parse(p, (size_t)size, &vl, why);
        munmap(p, (size_t)size);
        return r;
}

/*
 * Gives the unnamed file its name, replacing what is there (a damaged entry; or the same
 * kernel, stored by another tidal at the same time): linked under a name of its own first,
 * then renamed, which is atomic.
 */
static int link_tmpfile(int fd, const char *path)
{
        _cleanup_free_ char *tmp = NULL;
        char proc[64];

        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        if (asprintf(&tmp, "%s.%d.tmp", path, (int)gettid()) < 0)
                return -ENOMEM;
        if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) < 0)
                return -errno;
        if (rename(tmp, path) < 0) {
                int r = -errno;

                unlink(tmp);
                return r;
        }
        return 0;
}

int kernel_cache_store(const char *dir, const char *name, const struct bzimage *img,
                       const char **why)
{
        _cleanup_free_ char *path = cache_path(dir, name);
        _cleanup_close_ int fd = -1;
        const uint8_t *payload;
        size_t len;
        int r;

        if (!path)
                return -ENOMEM;
        r = find_payload(img, &payload, &len, why);
        if (r < 0)
                return r;
        r = mkdir_p(dir, 0755);
        if (r < 0)
                return r;
        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        r = decompress_xz(payload, len, fd, why);
        if (r >= 0)
                r = check_written(fd, why);
        if (r >= 0 && fdatasync(fd) < 0)
                r = -errno;
        if (r >= 0)
                r = link_tmpfile(fd, path);
        return r;
}

char *kernel_cache_default_dir(void)
{
        const char *env = getenv("TIDAL_KERNEL_CACHE");
        char *dir;

        if (env && env[0])
                return strcmp(env, "off") == 0 ? NULL : strdup(env);
        env = getenv("XDG_CACHE_HOME");
        if (env && env[0] == '/')
                return asprintf(&dir, "%s/tidal/kernels", env) < 0 ? NULL : dir;
        env = getenv("HOME");
        if (env && env[0] == '/')
                return asprintf(&dir, "%s/.cache/tidal/kernels", env) < 0 ? NULL : dir;
        return NULL;
}
