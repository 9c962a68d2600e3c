/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The smart paging engine against the kernel's own paging, in one run: the same workload over a
 * region of --size MiB with a resident budget of --budget % of it,
 *   - engine: a memfd region paged by src/smartpage to a file in --dir;
 *   - kernel: a MAP_SHARED mapping of a file in --dir, in a child process moved into a memory
 *     cgroup whose limit is the budget (cgroup v2 memory.max, or v1 memory.limit_in_bytes where
 *     the memory controller is on a v1 hierarchy), so the kernel writes back and reads in.
 * Workload: fill every page (untimed), then one sequential read pass over the region (page-in
 * throughput), then --random-ops random page reads, each timed (fault latency).
 * After the fill both hold the excess in their file and the budget's worth of pages dirty in
 * RAM, which the pass must write before it can read. --kernel-start clean (msync first) gives
 * the kernel a head start the engine does not get: its resident pages are written before the
 * clock runs.
 * Run as root: bench-smartpage [--size MiB] [--budget PCT] [--dir DIR] [--random-ops N]
 *                              [--readahead PAGES] [--kernel-start dirty|clean]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "smartpage/smartpage.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "tidal/parse.h"

#define PAGE 4096u

struct config {
        uint64_t size, budget;
        const char *dir;
        unsigned random_ops, readahead;
        bool kernel_clean; /* msync the kernel's mapping before the clock runs */
};

struct result {
        double seq_mib_s;
        double mean_us, p50_us, p99_us;
        double slow_mean_us; /* accesses over 20 us: the ones that went to the file */
        uint64_t slow;
        uint64_t faults;
        int error;
        struct smartpage *sp;          /* the engine's run: its counts after the pass */
        struct smartpage_stats seq[2]; /* the engine's counts before and after it */
};

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill(uint8_t *region, uint64_t size)
{
        for (uint64_t p = 0; p < size / PAGE; p++)
                memset(region + p * PAGE, (int)(p * 31 + 7) & 0xff, PAGE);
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

/* The timed part, the same for both: returns 0, or -EIO if a page read back wrong. */
static int workload(volatile uint8_t *region, const struct config *c, struct result *res)
{
        uint64_t pages = c->size / PAGE, seed = 88172645463325252ULL, bad = 0;
        double t0, *lat = calloc(c->random_ops, sizeof(double)), slow_sum = 0;

        if (!lat)
                return -ENOMEM;
        if (res->sp)
                smartpage_get_stats(res->sp, &res->seq[0]);
        t0 = now_s();
        for (uint64_t p = 0; p < pages; p++)
                bad += region[p * PAGE + 100] != ((p * 31 + 7) & 0xff);
        res->seq_mib_s = (double)c->size / MiB / (now_s() - t0);
        if (res->sp)
                smartpage_get_stats(res->sp, &res->seq[1]);
        for (unsigned i = 0; i < c->random_ops; i++) {
                uint64_t p;
                double t;

                seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
                p = seed % pages;
                t = now_s();
                bad += region[p * PAGE + 200] != ((p * 31 + 7) & 0xff);
                lat[i] = (now_s() - t) * 1e6;
                res->mean_us += lat[i] / c->random_ops;
                if (lat[i] > 20) {
                        res->slow++;
                        slow_sum += lat[i];
                }
        }
        res->slow_mean_us = res->slow ? slow_sum / (double)res->slow : 0;
        qsort(lat, c->random_ops, sizeof(double), cmp_double);
        res->p50_us = lat[c->random_ops / 2];
        res->p99_us = lat[(uint64_t)c->random_ops * 99 / 100];
        free(lat);
        return bad ? -EIO : 0;
}

/* What the engine did in the sequential pass: where its time may have gone. */
static void print_seq_counts(const struct result *eng)
{
        const struct smartpage_stats *a = &eng->seq[0], *b = &eng->seq[1];

        printf("engine in the sequential pass: %" PRIu64 " faults, %" PRIu64
               " minor faults, %" PRIu64 " pages in, %" PRIu64 " out\n",
               b->faults - a->faults, b->minor_faults - a->minor_faults, b->pages_in - a->pages_in,
               b->pages_out - a->pages_out);
}

static int run_engine(const struct config *c, struct result *res)
{
        struct smartpage_options o = {
                .dir = c->dir,
                .name = "bench-smartpage",
                .resident_limit = c->budget,
                .readahead_pages = c->readahead,
        };
        struct smartpage_stats st;
        struct smartpage *sp = NULL;
        _cleanup_close_ int fd = memfd_create("bench-smartpage", MFD_CLOEXEC);
        uint8_t *region;
        int r;

        if (fd < 0 || ftruncate(fd, (off_t)c->size) < 0)
                return -errno;
        region = mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (region == MAP_FAILED)
                return -errno;
        fill(region, c->size);
        /* Starts above the budget: the engine pages out the excess before returning. */
        r = smartpage_start(&o, fd, 0, region, c->size, &sp);
        if (r < 0) {
                munmap(region, c->size);
                return r;
        }
        res->sp = sp;
        r = workload(region, c, res);
        res->sp = NULL;
        smartpage_get_stats(sp, &st);
        res->faults = st.faults;
        res->error = st.error;
        if (r == 0)
                r = smartpage_finish(sp);
        smartpage_free(sp);
        munmap(region, c->size);
        return r;
}

static int write_file(const char *path, const char *text)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        if (write(fd, text, strlen(text)) < 0)
                return -errno;
        return 0;
}

/* A new memory cgroup with the budget as its limit; its directory in *ret. */
static int make_cgroup(uint64_t limit, char **ret, const char **kind)
{
        char buf[64];
        char *path = NULL;
        int r;

        snprintf(buf, sizeof(buf), "%" PRIu64, limit);
        /* cgroup v2 where it has the memory controller (pure v2 hosts), else v1's. */
        if (asprintf(&path, "/sys/fs/cgroup/tidal-smartpage-bench-%d", (int)getpid()) < 0)
                return -ENOMEM;
        (void)write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
        if (mkdir(path, 0755) == 0) {
                char *max = NULL;

                if (asprintf(&max, "%s/memory.max", path) < 0)
                        return -ENOMEM;
                r = write_file(max, buf);
                free(max);
                if (r == 0) {
                        *kind = "cgroup v2 memory.max";
                        *ret = path;
                        return 0;
                }
                rmdir(path);
        }
        free(path);
        if (asprintf(&path, "/sys/fs/cgroup/memory/tidal-smartpage-bench-%d", (int)getpid()) < 0)
                return -ENOMEM;
        if (mkdir(path, 0755) < 0) {
                r = -errno;
                free(path);
                return r;
        }
        {
                char *lim = NULL;

                if (asprintf(&lim, "%s/memory.limit_in_bytes", path) < 0)
                        return -ENOMEM;
                r = write_file(lim, buf);
                free(lim);
        }
        if (r < 0) {
                rmdir(path);
                free(path);
                return r;
        }
        *kind = "cgroup v1 memory.limit_in_bytes";
        *ret = path;
        return 0;
}

/* In the child: join the cgroup, map a file, run the workload. */
static int kernel_child(const struct config *c, const char *cgroup, struct result *res)
{
        _cleanup_free_ char *procs = NULL, *file = NULL;
        _cleanup_close_ int fd = -1;
        uint8_t *region;
        int r;

        if (asprintf(&procs, "%s/cgroup.procs", cgroup) < 0 ||
            asprintf(&file, "%s/bench-smartpage-kernel.%d", c->dir, (int)getpid()) < 0)
                return -ENOMEM;
        r = write_file(procs, "0");
        if (r < 0)
                return r;
        fd = open(file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        (void)unlink(file);
        if (ftruncate(fd, (off_t)c->size) < 0)
                return -errno;
        region = mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (region == MAP_FAILED)
                return -errno;
        fill(region, c->size);
        if (c->kernel_clean && msync(region, c->size, MS_SYNC) < 0)
                return -errno;
        r = workload(region, c, res);
        munmap(region, c->size);
        return r;
}

static int run_kernel(const struct config *c, struct result *res, const char **kind)
{
        _cleanup_free_ char *cgroup = NULL;
        struct result *shared;
        int r, status;
        pid_t pid;

        r = make_cgroup(c->budget, &cgroup, kind);
        if (r < 0)
                return log_errno(r, "cannot create a memory cgroup");
        shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
                      0);
        if (shared == MAP_FAILED) {
                rmdir(cgroup);
                return -errno;
        }
        memset(shared, 0, sizeof(*shared));
        pid = fork();
        if (pid == 0)
                _exit(kernel_child(c, cgroup, shared) < 0 ? 1 : 0);
        r = pid < 0 ? -errno : 0;
        if (pid > 0 &&
            (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0))
                r = -EIO;
        *res = *shared;
        munmap(shared, sizeof(*shared));
        if (rmdir(cgroup) < 0)
                log_warn_errno(errno, "cannot remove %s", cgroup);
        return r;
}

static int parse_option(int opt, const char *arg, struct config *c, unsigned *budget_pct)
{
        uint64_t v;
        int r = -EINVAL;

        switch (opt) {
        case 's':
                r = parse_uint(arg, 16, 1 << 20, &v);
                c->size = v * MiB;
                break;
        case 'b':
                r = parse_uint(arg, 5, 95, &v);
                *budget_pct = (unsigned)v;
                break;
        case 'd':
                c->dir = arg;
                return 0;
        case 'n':
                r = parse_uint(arg, 100, 100000000, &v);
                c->random_ops = (unsigned)v;
                break;
        case 'r':
                r = parse_uint(arg, 0, 255, &v);
                c->readahead = (unsigned)v;
                break;
        case 'k':
                if (strcmp(arg, "dirty") == 0 || strcmp(arg, "clean") == 0)
                        r = 0;
                c->kernel_clean = strcmp(arg, "clean") == 0;
                break;
        default:
                break;
        }
        return r;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"size", required_argument, NULL, 's'},
                {"budget", required_argument, NULL, 'b'},
                {"dir", required_argument, NULL, 'd'},
                {"random-ops", required_argument, NULL, 'n'},
                {"readahead", required_argument, NULL, 'r'},
                {"kernel-start", required_argument, NULL, 'k'},
                {},
        };
        struct config c = {
                .size = 256 * MiB, .dir = "/var/tmp", .random_ops = 20000, .readahead = 31};
        struct result eng = {0}, ker = {0};
        unsigned budget_pct = 50;
        const char *kind = "?";
        int opt, r;

        while ((opt = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                if (opt == '?' || parse_option(opt, optarg, &c, &budget_pct) < 0) {
                        fprintf(stderr,
                                "usage: bench-smartpage [--size MiB (16-1048576)] [--budget PCT "
                                "(5-95)] [--dir DIR] [--random-ops N (>= 100)] [--readahead "
                                "PAGES (0-255)] [--kernel-start dirty|clean]\n");
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "bench-smartpage: unexpected argument '%s'\n", argv[optind]);
                return 2;
        }
        c.budget = ALIGN_DOWN(c.size * budget_pct / 100, (uint64_t)PAGE);
        log_set_level(LOG_LEVEL_WARNING);
        r = run_engine(&c, &eng);
        if (r < 0)
                return log_errno(r, "engine run failed"), 1;
        if (getenv("BENCH_ENGINE_ONLY")) {
                printf("engine: sequential %.1f MiB/s, random mean %.2f us\n", eng.seq_mib_s,
                       eng.mean_us);
                print_seq_counts(&eng);
                return 0;
        }
        r = run_kernel(&c, &ker, &kind);
        if (r < 0)
                return log_errno(r, "kernel run failed"), 1;
        printf("smart paging vs kernel paging: %" PRIu64 " MiB region, %" PRIu64
               " MiB budget (%u %%), files in %s, engine read-ahead %u pages\n",
               c.size / MiB, c.budget / MiB, budget_pct, c.dir, c.readahead);
        printf("kernel: MAP_SHARED file mapping, %s = budget; %s\n", kind,
               c.kernel_clean ? "msync()ed before the clock (clean start)"
                              : "resident pages dirty at the start, as the engine's");
        printf("%-34s %12s %12s %8s\n", "", "engine", "kernel", "ratio");
        printf("%-34s %12.1f %12.1f %8.2f\n", "sequential page-in (MiB/s)", eng.seq_mib_s,
               ker.seq_mib_s, eng.seq_mib_s / ker.seq_mib_s);
        printf("%-34s %12.2f %12.2f %8.2f\n", "random read, mean (us)", eng.mean_us, ker.mean_us,
               eng.mean_us / ker.mean_us);
        printf("%-34s %12.2f %12.2f %8.2f\n", "random read, p50 (us)", eng.p50_us, ker.p50_us,
               eng.p50_us / ker.p50_us);
        printf("%-34s %12.2f %12.2f %8.2f\n", "random read, p99 (us)", eng.p99_us, ker.p99_us,
               eng.p99_us / ker.p99_us);
        printf("%-34s %12.2f %12.2f %8.2f\n", "fault latency, reads > 20 us (us)", eng.slow_mean_us,
               ker.slow_mean_us, eng.slow_mean_us / ker.slow_mean_us);
        printf("%-34s %12" PRIu64 " %12" PRIu64 "\n", "random reads > 20 us", eng.slow, ker.slow);
        printf("(ratio: engine / kernel; throughput higher is better, latency lower)\n");
        print_seq_counts(&eng);
        return 0;
}
