// SPDX-License-Identifier: MIT
/*
 * tidal test guest: /init (PID 1) for the L2 test guest.
 *
 * Mounts the basic file systems, loads the modules listed in /etc/tidal-modules,
 * prints "TIDAL-GUEST-READY ..." on the console and then serves one command per
 * line. Every command ends with "OK <cmd>[ ...]" or "ERR <cmd>: <reason>".
 * See guest/README.md for the protocol.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define LINE_MAX_LEN  4096
#define MAX_CHUNKS    4096
#define RNG_MAX_BYTES 4096
#define MIB           (1024UL * 1024UL)
#define BUSYBOX       "/bin/busybox"
#define CACHE_DIR     "/tmp/tidal-pagecache"

struct chunk {
        char *addr;
        size_t len;
};

static struct chunk chunks[MAX_CHUNKS];
static int nchunks;
static size_t held_bytes;
static unsigned long cache_files;
static size_t cache_bytes;

static void reply_err(const char *cmd, const char *fmt, ...)
{
        va_list ap;

        printf("ERR %s: ", cmd);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
}

static int read_text(const char *path, char *buf, size_t len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return -1;
        n = read(fd, buf, len - 1);
        close(fd);
        if (n < 0)
                return -1;
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        return 0;
}

static void write_text(const char *path, const char *text)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);

        if (fd < 0)
                return;
        if (write(fd, text, strlen(text)) < 0)
                fprintf(stderr, "tidal-init: write %s: %s\n", path, strerror(errno));
        close(fd);
}

static void do_mount(const char *src, const char *dst, const char *type, const char *opts)
{
        mkdir(dst, 0755);
        if (mount(src, dst, type, MS_NOSUID, opts) < 0 && errno != EBUSY)
                fprintf(stderr, "tidal-init: mount %s: %s\n", dst, strerror(errno));
}

/* (Re)open the console as fds 0-2: canonical input, no echo, CRLF output. */
static void open_console(void)
{
        struct termios t;
        int fd = open("/dev/console", O_RDWR | O_NOCTTY);

        if (fd < 0)
                return;
        for (int i = 0; i < 3; i++)
                dup2(fd, i);
        if (fd > 2)
                close(fd);
        if (tcgetattr(0, &t) == 0) {
                t.c_iflag |= ICRNL;
                t.c_iflag &= ~(IXON | IXOFF);
                t.c_oflag |= OPOST | ONLCR;
                t.c_lflag |= ICANON;
                t.c_lflag &= ~(ECHO | ECHOE | ECHOK | ECHONL);
                tcsetattr(0, TCSANOW, &t);
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        clearerr(stdin);
}

static void load_modules(void)
{
        char path[PATH_MAX];
        FILE *f = fopen("/etc/tidal-modules", "re");

        if (!f)
                return;
        while (fgets(path, sizeof(path), f)) {
                path[strcspn(path, "\r\n")] = '\0';
                if (path[0] == '\0' || path[0] == '#')
                        continue;
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST))
                        printf("MODULE-ERR %s: %s\n", path, strerror(errno));
                if (fd >= 0)
                        close(fd);
        }
        fclose(f);
}

static void early_setup(char *cmdline, size_t len)
{
        do_mount("proc", "/proc", "proc", NULL);
        do_mount("sysfs", "/sys", "sysfs", NULL);
        do_mount("devtmpfs", "/dev", "devtmpfs", "mode=0755");
        do_mount("tmpfs", "/tmp", "tmpfs", "mode=1777");
        mkdir("/dev/pts", 0755);
        mount("devpts", "/dev/pts", "devpts", MS_NOSUID, NULL);
        open_console();
        /* Hot-plugged (virtio-mem) memory must be onlined without udev. */
        read_text("/proc/cmdline", cmdline, len);
        if (!strstr(cmdline, "memhp_default_state="))
                write_text("/sys/devices/system/memory/auto_online_blocks", "online_movable");
        setenv("PATH", "/bin:/sbin:/usr/bin:/usr/sbin", 1);
        setenv("HOME", "/", 1);
        setenv("TERM", "vt100", 0);
}

static long uptime_ms(void)
{
        char buf[128];
        double up = 0;

        if (read_text("/proc/uptime", buf, sizeof(buf)) == 0)
                up = strtod(buf, NULL);
        return (long)(up * 1000.0);
}

static long meminfo_kb(const char *key)
{
        char line[256];
        size_t klen = strlen(key);
        long val = -1;
        FILE *f = fopen("/proc/meminfo", "re");

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, klen) == 0 && line[klen] == ':')
                        val = strtol(line + klen + 1, NULL, 10);
        fclose(f);
        return val;
}

static int count_cpuinfo(void)
{
        char line[512];
        int n = 0;
        FILE *f = fopen("/proc/cpuinfo", "re");

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "processor", 9) == 0)
                        n++;
        fclose(f);
        return n;
}

/* Parse a decimal size in MiB: 1 .. 16 TiB worth, nothing else on the line. */
static int parse_mib(const char *s, size_t *out)
{
        char *end;
        unsigned long long v;

        if (!s || *s < '0' || *s > '9')
                return -1;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end != '\0' || v == 0 || v > (16ULL << 20))
                return -1;
        *out = (size_t)v;
        return 0;
}

static void cmd_cat(const char *cmd, const char *path)
{
        char buf[4096];
        size_t n;
        FILE *f = fopen(path, "re");

        if (!f) {
                reply_err(cmd, "%s: %s", path, strerror(errno));
                return;
        }
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
                fwrite(buf, 1, n, stdout);
        fclose(f);
        printf("OK %s\n", cmd);
}

static void cmd_cpus(void)
{
        printf("CPUS %ld cpuinfo=%d\n", sysconf(_SC_NPROCESSORS_ONLN), count_cpuinfo());
        printf("OK cpus\n");
}

static void cmd_alloc(const char *arg)
{
        size_t mib, len;
        char *p;

        if (parse_mib(arg, &mib) < 0 || nchunks >= MAX_CHUNKS) {
                reply_err("alloc", nchunks >= MAX_CHUNKS ? "too many chunks" : "bad size");
                return;
        }
        len = mib * MIB;
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
                reply_err("alloc", "mmap: %s", strerror(errno));
                return;
        }
        for (size_t off = 0; off < len; off += 4096)
                p[off] = (char)(0xa5 ^ (off >> 12));
        chunks[nchunks++] = (struct chunk){p, len};
        held_bytes += len;
        printf("ALLOCATED %zu total=%zu\n", mib, held_bytes / MIB);
        printf("OK alloc\n");
}

/*
 * Touch @arg MiB in a child process and free it again. Unlike alloc, an out-of-memory kill
 * hits the child, not init (whose death would panic the guest), and is reported.
 */
static void cmd_tryalloc(const char *arg)
{
        size_t mib;
        pid_t pid;
        int status;

        if (parse_mib(arg, &mib) < 0) {
                reply_err("tryalloc", "bad size");
                return;
        }
        fflush(NULL);
        pid = fork();
        if (pid < 0) {
                reply_err("tryalloc", "fork: %s", strerror(errno));
                return;
        }
        if (pid == 0) {
                /* NORESERVE: past the overcommit heuristic, to the OOM killer. */
                char *p = mmap(NULL, mib * MIB, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

                if (p == MAP_FAILED)
                        _exit(1);
                for (size_t off = 0; off < mib * MIB; off += 4096)
                        p[off] = 1;
                _exit(0);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        reply_err("tryalloc", "waitpid: %s", strerror(errno));
                        return;
                }
        if (WIFSIGNALED(status))
                reply_err("tryalloc", "killed by signal %d", WTERMSIG(status));
        else if (WEXITSTATUS(status) != 0)
                reply_err("tryalloc", "mmap failed");
        else
                printf("OK tryalloc %zu\n", mib);
}

/* A value no page of zeroes or of another position holds: 64-bit words, position-dependent. */
static uint64_t pattern_word(size_t word, unsigned pass)
{
        uint64_t x = ((uint64_t)word + 1) * 0x9e3779b97f4a7c15ULL;

        return x ^ ((uint64_t)pass << 56) ^ 0x5a5a5a5a00000000ULL;
}

/* Fills @p with the pattern, then checks it; the first bad word's index, or -1. */
static long pattern_pass(uint64_t *p, size_t words, unsigned pass)
{
        for (size_t i = 0; i < words; i++)
                p[i] = pattern_word(i, pass);
        for (size_t i = 0; i < words; i++)
                if (p[i] != pattern_word(i, pass))
                        return (long)i;
        return -1;
}

/*
 * Writes a position-dependent pattern over @arg MiB (every 64-bit word) and reads it all back,
 * twice (the second pass after the whole first one, so pages written early are read after
 * later ones may have pushed them out), in a child so that an OOM kill hits it, not init.
 */
static void cmd_pattern(const char *arg)
{
        size_t mib;
        pid_t pid;
        int status;

        if (parse_mib(arg, &mib) < 0) {
                reply_err("pattern", "bad size");
                return;
        }
        fflush(NULL);
        pid = fork();
        if (pid < 0) {
                reply_err("pattern", "fork: %s", strerror(errno));
                return;
        }
        if (pid == 0) {
                size_t words = mib * MIB / sizeof(uint64_t);
                uint64_t *p = mmap(NULL, mib * MIB, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

                if (p == MAP_FAILED)
                        _exit(2);
                for (unsigned pass = 0; pass < 2; pass++) {
                        long bad = pattern_pass(p, words, pass);
                        if (bad >= 0) {
                                printf("PATTERN bad word at byte %ld: %llx, expected %llx\n",
                                       bad * 8L, (unsigned long long)p[bad],
                                       (unsigned long long)pattern_word((size_t)bad, pass));
                                fflush(stdout);
                                _exit(1);
                        }
                }
                _exit(0);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        reply_err("pattern", "waitpid: %s", strerror(errno));
                        return;
                }
        if (WIFSIGNALED(status))
                reply_err("pattern", "killed by signal %d", WTERMSIG(status));
        else if (WEXITSTATUS(status) == 1)
                reply_err("pattern", "memory read back differs from what was written");
        else if (WEXITSTATUS(status) != 0)
                reply_err("pattern", "mmap failed");
        else
                printf("OK pattern %zu\n", mib);
}

/* Release @len bytes, newest chunks first (the tail of a chunk if partial). */
static void release_bytes(size_t len)
{
        while (len > 0 && nchunks > 0) {
                struct chunk *c = &chunks[nchunks - 1];
                size_t n = len < c->len ? len : c->len;

                munmap(c->addr + c->len - n, n);
                c->len -= n;
                held_bytes -= n;
                len -= n;
                if (c->len == 0)
                        nchunks--;
        }
}

static void cmd_free(const char *arg)
{
        size_t mib;

        if (arg && strcmp(arg, "all") == 0) {
                release_bytes(held_bytes);
        } else if (parse_mib(arg, &mib) == 0) {
                release_bytes(mib * MIB);
        } else {
                reply_err("free", "bad size");
                return;
        }
        printf("FREED total=%zu\n", held_bytes / MIB);
        printf("OK free\n");
}

static void cmd_pagecache(const char *arg)
{
        static char block[MIB];
        char path[64];
        size_t mib;
        int fd;

        if (parse_mib(arg, &mib) < 0) {
                reply_err("pagecache", "bad size");
                return;
        }
        mkdir(CACHE_DIR, 0755);
        snprintf(path, sizeof(path), CACHE_DIR "/f%lu", cache_files++);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
                reply_err("pagecache", "%s: %s", path, strerror(errno));
                return;
        }
        memset(block, 0x5a, sizeof(block));
        for (size_t i = 0; i < mib; i++) {
                if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block)) {
                        reply_err("pagecache", "write: %s", strerror(errno));
                        close(fd);
                        unlink(path);
                        return;
                }
        }
        close(fd);
        cache_bytes += mib * MIB;
        printf("PAGECACHE %zu total=%zu\n", mib, cache_bytes / MIB);
        printf("OK pagecache\n");
}

static void cmd_dropcache(void)
{
        char path[64];

        for (unsigned long i = 0; i < cache_files; i++) {
                snprintf(path, sizeof(path), CACHE_DIR "/f%lu", i);
                unlink(path);
        }
        cache_files = 0;
        cache_bytes = 0;
        sync();
        write_text("/proc/sys/vm/drop_caches", "3");
        printf("OK dropcache\n");
}

static void on_alarm(int sig)
{
        (void)sig;
}

static void cmd_rng(const char *arg)
{
        unsigned char buf[RNG_MAX_BYTES];
        struct sigaction sa = {.sa_handler = on_alarm};
        char src[256] = "?";
        char *end;
        long want = arg ? strtol(arg, &end, 10) : 0;
        ssize_t got = 0, n;
        int fd;

        if (!arg || *end != '\0' || want <= 0 || want > RNG_MAX_BYTES) {
                reply_err("rng", "bad size (1..%d)", RNG_MAX_BYTES);
                return;
        }
        read_text("/sys/class/misc/hw_random/rng_current", src, sizeof(src));
        if (strcmp(src, "none") == 0) {
                reply_err("rng", "no hwrng device (rng_current=none)");
                return;
        }
        fd = open("/dev/hwrng", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                reply_err("rng", "/dev/hwrng: %s", strerror(errno));
                return;
        }
        sigaction(SIGALRM, &sa, NULL); /* no SA_RESTART: read() gets EINTR */
        alarm(5);
        while (got < want && (n = read(fd, buf + got, (size_t)(want - got))) > 0)
                got += n;
        alarm(0);
        close(fd);
        if (got < want) {
                reply_err("rng", "short read (%zd of %ld bytes)", got, want);
                return;
        }
        printf("RNG ");
        for (ssize_t i = 0; i < got; i++)
                printf("%02x", buf[i]);
        printf("\nRNG-SOURCE %s\nOK rng\n", src);
}

static void strip_hex(char *s)
{
        if (s[0] == '0' && s[1] == 'x')
                memmove(s, s + 2, strlen(s + 2) + 1);
}

static void print_pci(const char *slot)
{
        char base[PATH_MAX], path[PATH_MAX + 16], link[PATH_MAX];
        char ven[32] = "?", dev[32] = "?", cls[32] = "?";
        const char *drv = "-";
        ssize_t n;

        snprintf(base, sizeof(base), "/sys/bus/pci/devices/%s", slot);
        snprintf(path, sizeof(path), "%s/vendor", base);
        read_text(path, ven, sizeof(ven));
        snprintf(path, sizeof(path), "%s/device", base);
        read_text(path, dev, sizeof(dev));
        snprintf(path, sizeof(path), "%s/class", base);
        read_text(path, cls, sizeof(cls));
        snprintf(path, sizeof(path), "%s/driver", base);
        n = readlink(path, link, sizeof(link) - 1);
        if (n > 0) {
                link[n] = '\0';
                drv = strrchr(link, '/') ? strrchr(link, '/') + 1 : link;
        }
        strip_hex(ven);
        strip_hex(dev);
        strip_hex(cls);
        printf("PCI %s %s:%s class=%s driver=%s\n", slot, ven, dev, cls, drv);
}

static void cmd_lspci(void)
{
        struct dirent **ents;
        int n = scandir("/sys/bus/pci/devices", &ents, NULL, alphasort);

        if (n < 0) {
                reply_err("lspci", "/sys/bus/pci/devices: %s", strerror(errno));
                return;
        }
        for (int i = 0; i < n; i++) {
                if (ents[i]->d_name[0] != '.')
                        print_pci(ents[i]->d_name);
                free(ents[i]);
        }
        free(ents);
        printf("OK lspci\n");
}

/* Run busybox sh; interactive shells get the console as controlling tty. */
static int run_shell(const char *cmd)
{
        pid_t pid;
        int status;

        fflush(NULL);
        pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                if (cmd) {
                        int fd = open("/dev/null", O_RDONLY);
                        dup2(fd, 0);
                        execl(BUSYBOX, "sh", "-c", cmd, (char *)NULL);
                } else {
                        setsid();
                        int fd = open("/dev/ttyS0", O_RDWR);
                        if (fd < 0)
                                fd = open("/dev/console", O_RDWR);
                        for (int i = 0; i < 3 && fd >= 0; i++)
                                dup2(fd, i);
                        ioctl(0, TIOCSCTTY, 0);
                        struct termios t;
                        if (tcgetattr(0, &t) == 0) {
                                t.c_lflag |= ECHO | ECHOE | ECHOK | ISIG;
                                tcsetattr(0, TCSANOW, &t);
                        }
                        execl(BUSYBOX, "sh", "-i", (char *)NULL);
                }
                _exit(127);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void cmd_exec(const char *verb, const char *arg)
{
        int rc;

        if (strcmp(verb, "exec") == 0 && (!arg || !*arg)) {
                reply_err("exec", "missing command");
                return;
        }
        rc = run_shell(arg);
        /* The shell's session ending hangs up the console: reopen it. */
        if (!arg)
                open_console();
        if (rc < 0)
                reply_err(verb, "fork: %s", strerror(errno));
        else
                printf("OK %s rc=%d\n", verb, rc);
}

static void cmd_power(const char *verb, int how)
{
        printf("OK %s\n", verb);
        fflush(NULL);
        sync();
        reboot(how);
        reply_err(verb, "reboot: %s", strerror(errno));
}

static void dispatch(char *line)
{
        char *verb = line + strspn(line, " \t");
        char *arg = verb + strcspn(verb, " \t");

        if (*arg) {
                *arg++ = '\0';
                arg += strspn(arg, " \t");
        }
        if (*arg == '\0')
                arg = NULL;
        if (*verb == '\0')
                return;
        if (strcmp(verb, "meminfo") == 0)
                cmd_cat(verb, "/proc/meminfo");
        else if (strcmp(verb, "cpus") == 0)
                cmd_cpus();
        else if (strcmp(verb, "alloc") == 0)
                cmd_alloc(arg);
        else if (strcmp(verb, "tryalloc") == 0)
                cmd_tryalloc(arg);
        else if (strcmp(verb, "free") == 0)
                cmd_free(arg);
        else if (strcmp(verb, "pattern") == 0)
                cmd_pattern(arg);
        else if (strcmp(verb, "pagecache") == 0)
                cmd_pagecache(arg);
        else if (strcmp(verb, "dropcache") == 0)
                cmd_dropcache();
        else if (strcmp(verb, "rng") == 0)
                cmd_rng(arg);
        else if (strcmp(verb, "lspci") == 0)
                cmd_lspci();
        else if (strcmp(verb, "uptime") == 0)
                printf("UPTIME %ld\nOK uptime\n", uptime_ms());
        else if (strcmp(verb, "exec") == 0)
                cmd_exec(verb, arg);
        else if (strcmp(verb, "sh") == 0)
                cmd_exec(verb, NULL);
        else if (strcmp(verb, "poweroff") == 0)
                cmd_power(verb, RB_POWER_OFF);
        else if (strcmp(verb, "reboot") == 0)
                cmd_power(verb, RB_AUTOBOOT);
        else
                printf("ERR %.64s: unknown command\n", verb);
}

/* Read one line into @buf; returns 0, 1 if it was too long, -1 on EOF. */
static int read_line(char *buf, size_t len)
{
        size_t n;
        int c;

        if (!fgets(buf, (int)len, stdin))
                return -1;
        n = strlen(buf);
        if (n > 0 && buf[n - 1] == '\n') {
                buf[n - 1] = '\0';
                return 0;
        }
        while ((c = getchar()) != EOF && c != '\n')
                ;
        return 1;
}

/*
 * tidal.early_pattern=PCT on the kernel command line: run "pattern" over PCT % of MemTotal
 * before the modules load, on every boot. With no balloon driver yet nothing can take memory
 * back, so a restart under smart paging must page this out and back in (the e2e test).
 */
static void early_pattern(const char *cmdline)
{
        const char *opt = strstr(cmdline, "tidal.early_pattern=");
        unsigned long pct;
        char arg[32];

        if (!opt)
                return;
        pct = strtoul(opt + strlen("tidal.early_pattern="), NULL, 10);
        if (pct == 0 || pct > 95) {
                reply_err("pattern", "tidal.early_pattern must be 1..95 (%% of MemTotal)");
                return;
        }
        snprintf(arg, sizeof(arg), "%lu", (unsigned long)meminfo_kb("MemTotal") * pct / 100 / 1024);
        printf("EARLY pattern %s\n", arg);
        cmd_pattern(arg);
}

int main(void)
{
        static char line[LINE_MAX_LEN];
        static char cmdline[4096];

        early_setup(cmdline, sizeof(cmdline));
        early_pattern(cmdline);
        load_modules();
        printf("TIDAL-GUEST-READY cpus=%ld memtotal_kb=%ld uptime_ms=%ld\n",
               sysconf(_SC_NPROCESSORS_ONLN), meminfo_kb("MemTotal"), uptime_ms());
        for (;;) {
                int rc = read_line(line, sizeof(line));

                while (waitpid(-1, NULL, WNOHANG) > 0)
                        ;
                if (rc < 0) {
                        sleep(1); /* EOF or hangup: reopen and keep serving */
                        open_console();
                        continue;
                }
                line[strcspn(line, "\r")] = '\0';
                if (rc > 0)
                        reply_err("line", "too long (max %d)", LINE_MAX_LEN - 2);
                else
                        dispatch(line);
                fflush(stdout);
        }
}
