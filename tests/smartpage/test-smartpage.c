/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The smart paging engine on a plain memfd region, no KVM: access patterns from another thread
 * with a resident budget of 25 % and 50 %, every page's contents checked across eviction and
 * read-back, the limit sampled throughout, the clock against hot/cold traffic, discards, the end
 * of paging, a full disk, stale files, and clean-page tracking (no write lost, clean pages
 * dropped without a write), with and without UFFDIO_CONTINUE_MODE_WP. Needs userfaultfd (root or
 * /dev/userfaultfd): exits 77 (skipped) without it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "smartpage/engine.h" /* to count writes, and to force the Linux < 6.4 path */
#include "smartpage/smartpage.h"
#include "smartpage/uffd.h"
#include "tidal/macro.h"

#define PAGE     4096u
#define REGION   (64 * MiB)
#define NR_PAGES (REGION / PAGE)
#define WORDS    (PAGE / sizeof(uint64_t))

struct fixture {
        char dir[64];
        int memfd;
        uint8_t *region; /* registered with the engine */
        uint8_t *view;   /* the test's own unregistered view, for checks that must not fault */
        uint32_t *gen;   /* per page: 0 never written (zeroes), else the generation written */
        struct smartpage *sp;
        uint64_t limit;
};

static uint64_t word(uint64_t page, uint32_t gen, uint64_t i)
{
        return ((page << 40) ^ ((uint64_t)gen << 20) ^ i) * UINT64_C(0x9e3779b97f4a7c15) + 1;
}

static void fill(uint8_t *p, uint64_t page, uint32_t gen)
{
        uint64_t *w = (uint64_t *)p;

        for (uint64_t i = 0; i < WORDS; i++)
                w[i] = gen ? word(page, gen, i) : 0;
}

static bool check(const uint8_t *p, uint64_t page, uint32_t gen)
{
        const uint64_t *w = (const uint64_t *)p;

        for (uint64_t i = 0; i < WORDS; i++)
                if (w[i] != (gen ? word(page, gen, i) : 0))
                        return false;
        return true;
}

/* Whether the memfd holds the page (resident), without touching it. */
static bool resident(const struct fixture *f, uint64_t page)
{
        unsigned char vec;

        assert_int_equal(mincore(f->view + page * PAGE, PAGE, &vec), 0);
        return vec & 1;
}

/* Pages the memfd really holds, by its data ranges. */
static uint64_t memfd_pages(const struct fixture *f)
{
        uint64_t n = 0;
        off_t pos = 0;

        for (;;) {
                off_t data = lseek(f->memfd, pos, SEEK_DATA), hole;

                if (data < 0)
                        break;
                hole = lseek(f->memfd, data, SEEK_HOLE);
                n += (uint64_t)(hole - data) / PAGE;
                pos = hole;
        }
        return n;
}

/*
 * dir NULL: a new directory in /dev/shm, so that most tests do not wait for a disk; "/tmp": a new
 * directory on the disk (O_DIRECT); else that directory. backing: the shmem file to map (taken
 * over), or -1 for a new memfd.
 */
static void fixture_init_backed(struct fixture *f, const char *dir, int backing)
{
        memset(f, 0, sizeof(*f));
        if (dir && strcmp(dir, "/tmp") != 0)
                snprintf(f->dir, sizeof(f->dir), "%s", dir);
        else
                assert_non_null(mkdtemp(strcpy(f->dir, dir ? "/tmp/smartpage-test.XXXXXX"
                                                           : "/dev/shm/smartpage-test.XXXXXX")));
        f->memfd = backing >= 0 ? backing : memfd_create("smartpage-test", MFD_CLOEXEC);
        assert_true(f->memfd >= 0);
        assert_int_equal(ftruncate(f->memfd, REGION), 0);
        f->region = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
        f->view = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
        assert_true(f->region != MAP_FAILED && f->view != MAP_FAILED);
        f->gen = calloc(NR_PAGES, sizeof(*f->gen));
        assert_non_null(f->gen);
}

/* Guest RAM in a new memfd. */
static void fixture_init(struct fixture *f, const char *dir)
{
        fixture_init_backed(f, dir, -1);
}

/* A tmpfs of its own in a new directory (dir, a mkdtemp template); false if it cannot mount. */
static bool mount_tmpfs(char *dir, const char *options)
{
        assert_non_null(mkdtemp(dir));
        if (mount("tmpfs", dir, "tmpfs", 0, options) == 0)
                return true;
        rmdir(dir);
        return false;
}

/* Every page written before paging starts: the start must evict down to the limit. */
static void fixture_fill(struct fixture *f)
{
        for (uint64_t p = 0; p < NR_PAGES; p++) {
                f->gen[p] = 1;
                fill(f->view + p * PAGE, p, 1);
        }
}

static int fixture_start(struct fixture *f, uint64_t limit, unsigned readahead)
{
        struct smartpage_options o = {
                .dir = f->dir,
                .name = "vm-test",
                .resident_limit = limit,
                .readahead_pages = readahead,
        };

        f->limit = limit;
        return smartpage_start(&o, f->memfd, 0, f->region, REGION, &f->sp);
}

static char *file_path(const struct fixture *f)
{
        char *path = NULL;

        assert_int_equal(smartpage_file_path(f->dir, "vm-test", &path), 0);
        return path;
}

static void fixture_done(struct fixture *f, bool remove_dir)
{
        smartpage_free(f->sp);
        munmap(f->region, REGION);
        munmap(f->view, REGION);
        close(f->memfd);
        free(f->gen);
        if (remove_dir)
                rmdir(f->dir);
}

/* After paging ended: every page as last written, read through the region itself. */
static void check_all(const struct fixture *f)
{
        uint64_t bad = 0;

        for (uint64_t p = 0; p < NR_PAGES; p++)
                bad += !check(f->region + p * PAGE, p, f->gen[p]);
        assert_int_equal(bad, 0);
}

enum pattern { SEQUENTIAL, RANDOM, HOT_COLD };

#define HOT_PAGES 1024u /* 4 MiB: fits in a 16 MiB budget with room for cold traffic */

struct accessor {
        struct fixture *f;
        enum pattern pattern;
        uint64_t ops;
        uint64_t bad;                            /* pages whose contents were wrong */
        uint64_t hot, hot_miss, cold, cold_miss; /* after warm-up, hot/cold only */
        bool done;
};

static uint64_t next_rand(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

/* One access: check the page, and write a new generation into every other one. */
static void touch(struct accessor *a, uint64_t p, uint64_t i)
{
        struct fixture *f = a->f;

        if (!check(f->region + p * PAGE, p, f->gen[p]))
                a->bad++;
        if (i & 1) {
                f->gen[p]++;
                fill(f->region + p * PAGE, p, f->gen[p]);
        }
}

static void *accessor_run(void *arg)
{
        struct accessor *a = arg;
        uint64_t seed = 0x2545f4914f6cdd1dULL;

        for (uint64_t i = 0; i < a->ops; i++) {
                uint64_t p;
                bool hot = false;

                switch (a->pattern) {
                case SEQUENTIAL:
                        p = i % NR_PAGES;
                        break;
                case RANDOM:
                        p = next_rand(&seed) % NR_PAGES;
                        break;
                default:
                        /* 90 % of accesses go to the hot pages, spread over the region. */
                        hot = next_rand(&seed) % 10 != 0;
                        p = hot ? (next_rand(&seed) % HOT_PAGES) * (NR_PAGES / HOT_PAGES)
                                : next_rand(&seed) % NR_PAGES;
                        break;
                }
                if (a->pattern == HOT_COLD && i > a->ops / 4) {
                        bool miss = !resident(a->f, p);

                        if (hot) {
                                a->hot++;
                                a->hot_miss += miss;
                        } else {
                                a->cold++;
                                a->cold_miss += miss;
                        }
                }
                touch(a, p, i);
        }
        __atomic_store_n(&a->done, true, __ATOMIC_RELEASE);
        return NULL;
}

/*
 * Runs the pattern from another thread while sampling the engine's resident count. With
 * memfd_exact, the memfd must hold no more than the limit either (not so with huge pages: a
 * 4 KiB punch the kernel cannot split out of one only zeroes it, see docs/smart-paging.md).
 */
static void run_pattern_in(struct fixture *f, struct accessor *a, bool memfd_exact)
{
        struct smartpage_stats st;
        uint64_t over = 0, samples = 0;
        pthread_t t;

        a->f = f;
        assert_int_equal(pthread_create(&t, NULL, accessor_run, a), 0);
        while (!__atomic_load_n(&a->done, __ATOMIC_ACQUIRE)) {
                smartpage_get_stats(f->sp, &st);
                over += st.resident_bytes > f->limit;
                samples++;
                usleep(200);
        }
        pthread_join(t, NULL);
        smartpage_get_stats(f->sp, &st);
        printf("# pattern %d: %" PRIu64 " samples, faults %" PRIu64 " minor %" PRIu64 " in %" PRIu64
               " out %" PRIu64 " resident %" PRIu64 " KiB\n",
               a->pattern, samples, st.faults, st.minor_faults, st.pages_in, st.pages_out,
               st.resident_bytes / KiB);
        assert_int_equal(a->bad, 0);
        assert_int_equal(over, 0);
        assert_int_equal(st.error, 0);
        assert_true(st.active);
        assert_true(st.resident_bytes <= f->limit);
        if (memfd_exact)
                assert_true(memfd_pages(f) * PAGE <= f->limit);
        assert_true(st.pages_out > 0);
}

static void run_pattern(struct fixture *f, struct accessor *a)
{
        run_pattern_in(f, a, true);
}

static void finish_and_check(struct fixture *f)
{
        _cleanup_free_ char *path = file_path(f);
        struct smartpage_stats st;
        struct stat sb;

        assert_int_equal(smartpage_finish(f->sp), 0);
        smartpage_get_stats(f->sp, &st);
        assert_false(st.active);
        assert_int_equal(st.file_bytes, 0);
        assert_int_equal(stat(path, &sb), -1);
        assert_int_equal(errno, ENOENT);
        check_all(f);
}

static void pattern_test(enum pattern pattern, uint64_t limit, uint64_t ops, const char *dir)
{
        struct fixture f;
        struct accessor a = {.pattern = pattern, .ops = ops};
        struct smartpage_stats st;

        fixture_init(&f, dir);
        fixture_fill(&f);
        assert_int_equal(fixture_start(&f, limit, SMARTPAGE_DEFAULT_READAHEAD), 0);
        /* Started above the limit: evicted down before returning. */
        smartpage_get_stats(f.sp, &st);
        assert_true(st.resident_bytes <= limit);
        assert_true(memfd_pages(&f) * PAGE <= limit);
        run_pattern(&f, &a);
        finish_and_check(&f);
        fixture_done(&f, true);
}

/*
 * Guest RAM in shmem huge pages, as tidal's was before it kept them out of paged boots (and as
 * a host with shmem_enabled=force still gives): what was written before paging started sits in
 * huge pages mapped by PMDs. Zaps and punches split them; every page must still read back right.
 */
static void huge_pages_test(enum pattern pattern, uint64_t ops)
{
        char mnt[] = "/tmp/smartpage-huge.XXXXXX";
        struct fixture f;
        struct accessor a = {.pattern = pattern, .ops = ops};
        int fd;

        /* Guest RAM's shmem in huge pages whatever the host's shmem_enabled says. */
        if (!mount_tmpfs(mnt, "huge=always,size=128M,mode=0700"))
                skip();
        fd = open(mnt, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        fixture_init_backed(&f, NULL, fd);
        (void)madvise(f.region, REGION, MADV_HUGEPAGE);
        for (uint64_t p = 0; p < NR_PAGES; p++) {
                f.gen[p] = 1;
                fill(f.region + p * PAGE, p, 1);
        }
        assert_int_equal(fixture_start(&f, REGION / 2, SMARTPAGE_DEFAULT_READAHEAD), 0);
        /* Linux 6.1 often cannot split them: right data, but the memfd holds more. */
        run_pattern_in(&f, &a, false);
        printf("# huge pages: the memfd holds %" PRIu64 " KiB for a %" PRIu64 " KiB limit\n",
               memfd_pages(&f) * PAGE / KiB, f.limit / KiB);
        finish_and_check(&f);
        fixture_done(&f, true);
        assert_int_equal(umount(mnt), 0);
        rmdir(mnt);
}

static void huge_pages_random(void **state)
{
        huge_pages_test(RANDOM, 3 * NR_PAGES);
}

static void huge_pages_sequential(void **state)
{
        huge_pages_test(SEQUENTIAL, 2 * NR_PAGES);
}

static void sequential_25(void **state)
{
        pattern_test(SEQUENTIAL, REGION / 4, 2 * NR_PAGES, NULL);
}

static void sequential_50(void **state)
{
        /* On the disk: the paging file opened O_DIRECT. */
        pattern_test(SEQUENTIAL, REGION / 2, 2 * NR_PAGES, "/tmp");
}

/*
 * A loop over 25 % more memory than the budget, as a guest's pass over most of its RAM is
 * during a restart. LRU (and the clock alone) evicts each page just before the loop comes back
 * to it: every access of every turn would miss, NR_PAGES pages in per turn. Drop-behind keeps
 * the loop's beginning: a turn misses what does not fit, a fifth of the pages, and the lag.
 */
static void loop_over_budget(void **state)
{
        const uint64_t limit = REGION / 5 * 4, turns = 4;
        struct fixture f;
        struct accessor a = {.pattern = SEQUENTIAL, .ops = turns * NR_PAGES};
        struct smartpage_stats st;

        fixture_init(&f, NULL);
        fixture_fill(&f);
        assert_int_equal(fixture_start(&f, limit, SMARTPAGE_DEFAULT_READAHEAD), 0);
        run_pattern(&f, &a);
        smartpage_get_stats(f.sp, &st);
        assert_true(st.pages_in < turns * NR_PAGES / 3);
        finish_and_check(&f);
        fixture_done(&f, true);
}

static void random_25(void **state)
{
        pattern_test(RANDOM, REGION / 4, 3 * NR_PAGES, NULL);
}

static void random_50(void **state)
{
        pattern_test(RANDOM, REGION / 2, 3 * NR_PAGES, NULL);
}

/*
 * The clock keeps a hot set that fits resident: hot pages miss far less often than cold ones.
 * FIFO would not: with 16 pages brought in per cold miss (read-ahead), a 4096-page FIFO turns
 * over every ~250 cold misses, ~2500 accesses, and a hot page (touched every ~1100 accesses)
 * would miss about once in three touches.
 */
static void hot_cold_25(void **state)
{
        struct fixture f;
        struct accessor a = {.pattern = HOT_COLD, .ops = 8 * NR_PAGES};
        double hot_rate, cold_rate;

        fixture_init(&f, NULL);
        fixture_fill(&f);
        assert_int_equal(fixture_start(&f, REGION / 4, SMARTPAGE_DEFAULT_READAHEAD), 0);
        run_pattern(&f, &a);
        hot_rate = (double)a.hot_miss / (double)a.hot;
        cold_rate = (double)a.cold_miss / (double)a.cold;
        printf("# hot: %" PRIu64 " misses in %" PRIu64 " (%.4f), cold: %" PRIu64 " in %" PRIu64
               " (%.4f)\n",
               a.hot_miss, a.hot, hot_rate, a.cold_miss, a.cold, cold_rate);
        assert_true(cold_rate > 0.3);
        assert_true(hot_rate < 0.01);
        assert_true(hot_rate * 50 < cold_rate);
        finish_and_check(&f);
        fixture_done(&f, true);
}

static uint64_t pages_written(struct fixture *f)
{
        uint64_t n;

        pthread_mutex_lock(&f->sp->lock);
        n = f->sp->count.pages_written;
        pthread_mutex_unlock(&f->sp->lock);
        return n;
}

/* Lowers the limit to its minimum and waits until the engine is down to it: evicts nearly all. */
static void evict_nearly_all(struct fixture *f)
{
        struct smartpage_stats st;

        assert_int_equal(smartpage_set_limit(f->sp, 64 * PAGE), 0);
        do {
                usleep(1000);
                smartpage_get_stats(f->sp, &st);
        } while (st.limit_bytes != 64 * PAGE || st.resident_bytes > 64 * PAGE);
        assert_int_equal(st.error, 0);
        assert_int_equal(smartpage_set_limit(f->sp, f->limit), 0);
}

/*
 * Clean-page tracking must never lose a write. Pages are paged in by reads (the faulting page
 * and its read-ahead neighbours come in write-protected, clean), some are re-sampled by the
 * clock (MINOR faults map them again), then written in every way a page can be: the page a read
 * brought in, a read-ahead neighbour never read, a never-written zero page, a page written at
 * its first touch. Then nearly everything is evicted and read back: a write the engine missed
 * would come back as the old contents. Clean pages must be dropped without a write.
 */
static void clean_tracking(bool continue_wp)
{
        struct fixture f;
        uint64_t written0, resident0, bad = 0, zero_from = NR_PAGES - NR_PAGES / 8;
        struct smartpage_stats st;

        fixture_init(&f, NULL);
        /* The last eighth is never written before paging: zero pages. */
        for (uint64_t p = 0; p < zero_from; p++) {
                f.gen[p] = 1;
                fill(f.view + p * PAGE, p, 1);
        }
        assert_int_equal(fixture_start(&f, REGION / 4, SMARTPAGE_DEFAULT_READAHEAD), 0);
        if (!continue_wp) { /* as on Linux < 6.4: clean pages are mapped again by copy */
                pthread_mutex_lock(&f.sp->lock);
                f.sp->continue_wp = false;
                pthread_mutex_unlock(&f.sp->lock);
        }
        smartpage_get_stats(f.sp, &st);
        resident0 = st.resident_bytes / PAGE;
        written0 = pages_written(&f);
        /* A read-only pass: only what was resident (dirty) at start may be written. */
        for (uint64_t p = 0; p < NR_PAGES; p++)
                bad += !check(f.region + p * PAGE, p, f.gen[p]);
        assert_int_equal(bad, 0);
        assert_true(pages_written(&f) - written0 <= resident0);
        smartpage_get_stats(f.sp, &st);
        assert_true(st.pages_out - written0 > NR_PAGES / 2); /* most were dropped clean */
        /* Writes after page-in, in every way: */
        for (uint64_t p = 0; p < NR_PAGES; p++) {
                switch (p % 4) {
                case 0: /* read (a fault, or mapped by read-ahead), then written */
                        bad += !check(f.region + p * PAGE, p, f.gen[p]);
                        fill(f.region + p * PAGE, p, ++f.gen[p]);
                        break;
                case 1: /* written without being read: a read-ahead neighbour, or a fault */
                        fill(f.region + p * PAGE, p, ++f.gen[p]);
                        break;
                case 2: /* only read: stays clean */
                        bad += !check(f.region + p * PAGE, p, f.gen[p]);
                        break;
                default: /* one word written after a read */
                        bad += !check(f.region + p * PAGE, p, f.gen[p]);
                        ((volatile uint64_t *)(f.region + p * PAGE))[7] ^= 1;
                        ((volatile uint64_t *)(f.region + p * PAGE))[7] ^= 1;
                        fill(f.region + p * PAGE, p, ++f.gen[p]);
                        break;
                }
        }
        assert_int_equal(bad, 0);
        /* Sampled by the clock, then written again: MINOR faults on clean and dirty pages. */
        evict_nearly_all(&f);
        for (uint64_t p = 0; p < NR_PAGES; p += 3) {
                bad += !check(f.region + p * PAGE, p, f.gen[p]);
                if (p % 2)
                        fill(f.region + p * PAGE, p, ++f.gen[p]);
        }
        assert_int_equal(bad, 0);
        evict_nearly_all(&f);
        for (uint64_t p = 0; p < NR_PAGES; p++)
                bad += !check(f.region + p * PAGE, p, f.gen[p]);
        assert_int_equal(bad, 0);
        smartpage_get_stats(f.sp, &st);
        assert_int_equal(st.error, 0);
        printf("# clean tracking: %" PRIu64 " pages out, %" PRIu64 " written, %" PRIu64
               " minor faults\n",
               st.pages_out, pages_written(&f), st.minor_faults);
        finish_and_check(&f);
        fixture_done(&f, true);
}

static void clean_tracking_continue_wp(void **state)
{
        clean_tracking(true);
}

static void clean_tracking_remap_by_copy(void **state)
{
        clean_tracking(false);
}

/* Discarded pages are dropped from the file without being read, and read back as zeroes. */
static void discard_skips_read(void **state)
{
        struct fixture f;
        struct smartpage_stats before, after;
        uint64_t paged_in_half = 0;

        fixture_init(&f, NULL);
        fixture_fill(&f);
        assert_int_equal(fixture_start(&f, REGION / 4, 0), 0);
        smartpage_get_stats(f.sp, &before);
        /* The second half goes to the "balloon": whatever of it is paged out is never read. */
        for (uint64_t p = NR_PAGES / 2; p < NR_PAGES; p++)
                paged_in_half += !resident(&f, p);
        smartpage_discard(f.sp, REGION / 2, REGION / 2);
        for (uint64_t p = NR_PAGES / 2; p < NR_PAGES; p++)
                f.gen[p] = 0;
        smartpage_get_stats(f.sp, &after);
        assert_int_equal(after.discarded, paged_in_half);
        assert_int_equal(after.file_bytes, before.file_bytes - paged_in_half * PAGE);
        assert_int_equal(smartpage_finish(f.sp), 0);
        smartpage_get_stats(f.sp, &after);
        /* Read back: exactly what was paged out and not discarded. */
        assert_int_equal(after.pages_in - before.pages_in,
                         before.file_bytes / PAGE - paged_in_half);
        check_all(&f);
        fixture_done(&f, true);
}

/*
 * A page of the next sequential window is discarded, used again and evicted while the window's
 * read is pending: that read holds its old contents, which must never be copied in.
 */
static void discard_in_readahead_window(void **state)
{
        struct fixture f;
        uint64_t first, victim;
        unsigned n;
        bool active;

        fixture_init(&f, NULL);
        fixture_fill(&f);
        assert_int_equal(fixture_start(&f, 256 * PAGE, 15), 0);
        /* Two sequential faults: the second reads a window and queues the next one. */
        assert_true(check(f.region + 1000 * PAGE, 1000, 1));
        assert_true(check(f.region + 1001 * PAGE, 1001, 1));
        pthread_mutex_lock(&f.sp->lock);
        active = f.sp->ahead.active, first = f.sp->ahead.first, n = f.sp->ahead.n;
        pthread_mutex_unlock(&f.sp->lock);
        assert_true(active && n >= 2);
        victim = first + 1;
        smartpage_discard(f.sp, victim * PAGE, PAGE);
        f.gen[victim] = 2;
        fill(f.region + victim * PAGE, victim, 2);
        /*
         * Pushed out by never-used pages (discarded ones): no read, nothing drops the window.
         * Descending, which is no stream: the clock picks the victims (an ascending stream
         * would drop its own pages behind it and leave the victim resident).
         */
        smartpage_discard(f.sp, REGION / 2, REGION / 2);
        memset(f.gen + NR_PAGES / 2, 0, NR_PAGES / 2 * sizeof(*f.gen));
        for (uint64_t p = NR_PAGES - 1; p >= NR_PAGES / 2 && resident(&f, victim); p--) {
                f.gen[p] = 3;
                fill(f.region + p * PAGE, p, 3);
        }
        assert_false(resident(&f, victim));
        assert_true(check(f.region + first * PAGE, first, 1));
        assert_true(check(f.region + victim * PAGE, victim, 2));
        finish_and_check(&f);
        fixture_done(&f, true);
}

/* A lower limit is enforced at once, without any fault. */
static void lower_limit(void **state)
{
        struct fixture f;
        struct smartpage_stats st;

        fixture_init(&f, NULL);
        fixture_fill(&f);
        assert_int_equal(fixture_start(&f, REGION / 2, 4), 0);
        assert_int_equal(smartpage_set_limit(f.sp, 4 * KiB), -EINVAL);
        assert_int_equal(smartpage_set_limit(f.sp, REGION / 4), 0);
        do {
                usleep(1000);
                smartpage_get_stats(f.sp, &st);
        } while (st.limit_bytes != REGION / 4 || st.resident_bytes > REGION / 4);
        assert_true(memfd_pages(&f) * PAGE <= REGION / 4);
        finish_and_check(&f);
        fixture_done(&f, true);
}

struct filler {
        struct fixture *f;
        uint64_t written; /* pages fully written */
        bool stop;
};

static void *filler_run(void *arg)
{
        struct filler *w = arg;

        for (uint64_t p = 0; p < NR_PAGES && !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE); p++) {
                w->f->gen[p] = 1;
                fill(w->f->region + p * PAGE, p, 1);
                __atomic_store_n(&w->written, p + 1, __ATOMIC_RELEASE);
        }
        return NULL;
}

/*
 * A paging directory on a 1 MiB tmpfs: writes fail with ENOSPC, the engine stops with the error
 * on its eventfd, and no page is lost: each one written is in RAM or, whole, in the file.
 */
static void disk_full(void **state)
{
        struct fixture f;
        struct filler w = {.f = &f};
        struct smartpage_stats st;
        struct pollfd pfd;
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        uint8_t *buf;
        uint64_t bad = 0, in_file = 0;
        char dir[] = "/tmp/smartpage-full.XXXXXX";
        pthread_t t;

        if (!mount_tmpfs(dir, "size=1M,mode=0700"))
                skip();
        fixture_init(&f, dir);
        assert_int_equal(fixture_start(&f, REGION / 4, 8), 0);
        path = file_path(&f);
        w.f = &f;
        assert_int_equal(pthread_create(&t, NULL, filler_run, &w), 0);
        pfd = (struct pollfd){.fd = smartpage_error_fd(f.sp), .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, -1), 1);
        smartpage_get_stats(f.sp, &st);
        assert_int_equal(st.error, -ENOSPC);
        assert_true(st.pages_out > 0);
        assert_int_equal(smartpage_finish(f.sp), -ENOSPC);
        /* The filler is parked in a fault; nothing it wrote was lost. */
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        buf = aligned_alloc(PAGE, PAGE);
        assert_non_null(buf);
        for (uint64_t p = 0; p < __atomic_load_n(&w.written, __ATOMIC_ACQUIRE); p++) {
                if (resident(&f, p)) {
                        bad += !check(f.view + p * PAGE, p, 1);
                        continue;
                }
                assert_int_equal(pread(fd, buf, PAGE, (off_t)(p * PAGE)), PAGE);
                bad += !check(buf, p, 1);
                in_file++;
        }
        free(buf);
        closep(&fd);
        assert_int_equal(bad, 0);
        assert_int_equal(in_file * PAGE, st.file_bytes);
        /* Tearing down wakes the filler; it stops at once. */
        __atomic_store_n(&w.stop, true, __ATOMIC_RELEASE);
        smartpage_free(f.sp);
        f.sp = NULL;
        pthread_join(t, NULL);
        assert_int_equal(access(path, F_OK), -1);
        fixture_done(&f, false);
        assert_int_equal(umount(dir), 0);
        rmdir(dir);
}

struct reader {
        const volatile uint64_t *word; /* the first word of a paged-out page */
        uint64_t value;
        bool torn_down; /* set by the test before it releases the engine */
        bool after_teardown;
};

static void *reader_run(void *arg)
{
        struct reader *r = arg;

        r->value = *r->word;
        __atomic_store_n(&r->after_teardown, __atomic_load_n(&r->torn_down, __ATOMIC_ACQUIRE),
                         __ATOMIC_RELEASE);
        return NULL;
}

/*
 * The paging file loses what was written to it (truncated behind the engine's back, so every
 * read comes back short, as from a failing disk): the engine stops with -EIO on its eventfd,
 * and the thread that touched a paged-out page is never handed anything: it waits in its fault
 * until the engine is released (a VMM has stopped its vCPUs by then).
 */
static void read_error(void **state)
{
        struct fixture f;
        struct reader r = {0};
        struct smartpage_stats st;
        struct pollfd pfd;
        _cleanup_free_ char *path = NULL;
        uint64_t p;
        pthread_t t;

        fixture_init(&f, NULL);
        fixture_fill(&f);
        assert_int_equal(fixture_start(&f, REGION / 4, 0), 0);
        path = file_path(&f);
        for (p = 0; p < NR_PAGES && resident(&f, p); p++)
                ;
        assert_true(p < NR_PAGES);
        assert_int_equal(truncate(path, 0), 0);
        r.word = (const volatile uint64_t *)(f.region + p * PAGE);
        assert_int_equal(pthread_create(&t, NULL, reader_run, &r), 0);
        pfd = (struct pollfd){.fd = smartpage_error_fd(f.sp), .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 10000), 1);
        smartpage_get_stats(f.sp, &st);
        assert_int_equal(st.error, -EIO);
        usleep(100 * 1000);
        __atomic_store_n(&r.torn_down, true, __ATOMIC_RELEASE);
        smartpage_free(f.sp);
        f.sp = NULL;
        pthread_join(t, NULL);
        assert_true(__atomic_load_n(&r.after_teardown, __ATOMIC_ACQUIRE));
        assert_int_equal(access(path, F_OK), -1);
        fixture_done(&f, true);
}

static void stale_file(void **state)
{
        char dir[] = "/tmp/smartpage-stale.XXXXXX", *path = NULL;
        struct fixture f;
        int fd;

        assert_non_null(mkdtemp(dir));
        assert_int_equal(smartpage_remove_stale(dir, "vm-test"), 0); /* none: fine */
        assert_int_equal(smartpage_file_path(dir, "vm-test", &path), 0);
        fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "old", 3), 3);
        close(fd);
        assert_int_equal(smartpage_remove_stale(dir, "vm-test"), 0);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(smartpage_remove_stale(dir, "../etc/passwd"), -EINVAL);
        assert_int_equal(smartpage_remove_stale(dir, ""), -EINVAL);
        assert_int_equal(smartpage_remove_stale(dir, "a/b"), -EINVAL);
        /* Left behind by a killed tidal: a new start replaces it, 0600. */
        fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        fixture_init(&f, dir);
        assert_int_equal(fixture_start(&f, REGION / 2, 0), 0);
        {
                struct stat sb;

                assert_int_equal(stat(path, &sb), 0);
                assert_int_equal(sb.st_mode & 0777, 0600);
        }
        finish_and_check(&f);
        fixture_done(&f, true);
        free(path);
}

static void bad_arguments(void **state)
{
        struct fixture f;
        struct smartpage_options o = {.dir = "/tmp", .name = "x", .resident_limit = MiB};

        fixture_init(&f, NULL);
        assert_int_equal(smartpage_start(&o, f.memfd, 0, f.region + 1, REGION - PAGE, &f.sp),
                         -EINVAL);
        o.resident_limit = PAGE;
        assert_int_equal(smartpage_start(&o, f.memfd, 0, f.region, REGION, &f.sp), -EINVAL);
        o.resident_limit = MiB;
        o.name = "../x";
        assert_int_equal(smartpage_start(&o, f.memfd, 0, f.region, REGION, &f.sp), -EINVAL);
        f.sp = NULL;
        fixture_done(&f, true);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(sequential_25),
                cmocka_unit_test(huge_pages_random),
                cmocka_unit_test(huge_pages_sequential),
                cmocka_unit_test(sequential_50),
                cmocka_unit_test(loop_over_budget),
                cmocka_unit_test(random_25),
                cmocka_unit_test(random_50),
                cmocka_unit_test(hot_cold_25),
                cmocka_unit_test(discard_skips_read),
                cmocka_unit_test(discard_in_readahead_window),
                cmocka_unit_test(lower_limit),
                cmocka_unit_test(disk_full),
                cmocka_unit_test(read_error),
                cmocka_unit_test(stale_file),
                cmocka_unit_test(bad_arguments),
                cmocka_unit_test(clean_tracking_continue_wp),
                cmocka_unit_test(clean_tracking_remap_by_copy),
        };
        bool wp = false;
        int uffd, r = uffd_open(&uffd, &wp);

        if (r < 0) {
                printf("skipping: userfaultfd with MINOR faults on shmem is not available here: "
                       "%s (needs root, or access to /dev/userfaultfd, and Linux >= 5.14)\n",
                       strerror(-r));
                return 77;
        }
        close(uffd);
        if (!wp)
                printf("# no userfaultfd write-protect on shmem: every page is dirty\n");
        return cmocka_run_group_tests(tests, NULL, NULL);
}
