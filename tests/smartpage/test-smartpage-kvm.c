/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The smart paging engine under a real KVM guest (kvm-guest.h: a pattern written and read back
 * by a few vCPUs, no Linux) with a quarter of RAM resident. Every page that reads wrong is
 * reported with what it holds instead: zeroes, a stale pass (a lost write) or another page's
 * data; at the end the engine reads everything back and the host checks every word again. A
 * guest exception, a triple fault or a fault nobody resolves for a minute fails the test.
 *
 * --pager simple|simple-zap|punch runs a reference pager instead of the engine
 * (reference-pagers.h), to tell the engine's faults from the platform's (docs/smart-paging.md).
 *
 * Exits 0 (pass), 1 (fail), 2 (usage), 77 (skipped: no /dev/kvm or no userfaultfd).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvm-guest.h"
#include "reference-pagers.h"
#include "smartpage/engine.h" /* the counters, read without the lock when stuck */
#include "smartpage/smartpage.h"
#include "tidal/hw-virt.h"
#include "tidal/macro.h"
#include "tidal/parse.h"

#define STALL_S 60

enum pager { ENGINE, SIMPLE, SIMPLE_ZAP, PUNCH };

struct options {
        struct kvm_guest_options guest;
        uint64_t limit;
        unsigned readahead, timeout_s;
        enum pager pager;
        const char *dir;
};

struct run {
        struct options o;
        struct kvm_guest g;
        struct smartpage *sp;        /* the engine, or */
        struct reference_pager *ref; /* another pager */
};

static uint64_t progress(const struct run *r)
{
        const struct smartpage *sp = r->sp;

        if (r->ref)
                return reference_pager_progress(r->ref);
        /* Read without the engine's lock: a stuck handler may hold it. */
        return __atomic_load_n(&sp->count.pages_in, __ATOMIC_RELAXED) +
               __atomic_load_n(&sp->count.pages_out, __ATOMIC_RELAXED) +
               __atomic_load_n(&sp->count.minor_faults, __ATOMIC_RELAXED) +
               __atomic_load_n(&sp->count.faults, __ATOMIC_RELAXED);
}

/*
 * Waits for the vCPUs. A guest stuck for STALL_S with the pager standing still waits for a fault
 * nobody resolves: the threads' stacks are printed and false returned, as on the timeout.
 */
static bool wait_guest(struct run *r)
{
        uint64_t last = 0;
        unsigned still = 0;

        while (!kvm_guest_all_exited(&r->g)) {
                uint64_t moved;

                sleep(1);
                moved = progress(r);
                still = moved == last ? still + 1 : 0;
                last = moved;
                if (still >= STALL_S || kvm_guest_elapsed(&r->g) > r->o.timeout_s) {
                        printf("%s at %.1f s; threads:\n",
                               still >= STALL_S ? "no progress for a minute" : "timed out",
                               kvm_guest_elapsed(&r->g));
                        kvm_guest_dump_threads();
                        return false;
                }
        }
        return true;
}

static void on_engine_error(int error, void *userdata)
{
        struct run *r = userdata;

        printf("engine error at %.1f s: %s\n", kvm_guest_elapsed(&r->g), strerror(-error));
}

static int start_pager(struct run *r)
{
        struct smartpage_options so = {
                .dir = r->o.dir,
                .name = "smartpage-kvm",
                .resident_limit = r->o.limit,
                .readahead_pages = r->o.readahead,
                .on_error = on_engine_error,
                .userdata = r,
        };

        switch (r->o.pager) {
        case SIMPLE:
        case SIMPLE_ZAP:
                return reference_pager_start_simple(&r->g, r->o.pager == SIMPLE_ZAP, &r->ref);
        case PUNCH:
                return reference_pager_start_punch(&r->g, &r->ref);
        case ENGINE:
        default:
                return smartpage_start(&so, r->g.memfd, 0, r->g.ram, r->o.guest.memory, &r->sp);
        }
}

/* After the guest: the engine reads everything back, the host checks it; true if all holds. */
static bool finish_engine(struct run *r)
{
        struct smartpage_stats st;
        bool ok = true;
        int e;

        smartpage_get_stats(r->sp, &st);
        printf("guest done: %" PRIu64 " pages in, %" PRIu64 " out, %" PRIu64 " faults, %" PRIu64
               " minor\n",
               st.pages_in, st.pages_out, st.faults, st.minor_faults);
        e = smartpage_finish(r->sp);
        if (e < 0) {
                printf("smartpage_finish: %s\n", strerror(-e));
                ok = false;
        } else {
                uint64_t bad = kvm_guest_check_from_host(&r->g);

                printf("host check after the read-back: %" PRIu64 " wrong words\n", bad);
                ok = bad == 0;
        }
        smartpage_free(r->sp);
        return ok;
}

static int run(struct run *r)
{
        bool ok;
        int e;

        e = kvm_guest_create(&r->g);
        if (e < 0)
                return fprintf(stderr, "creating the guest: %s\n", strerror(-e)), 1;
        e = start_pager(r);
        if (e == -EPERM || e == -EOPNOTSUPP || e == -ENOSYS)
                return fprintf(stderr, "no userfaultfd here (%s): skipped\n", strerror(-e)), 77;
        if (e < 0)
                return fprintf(stderr, "starting the pager: %s\n", strerror(-e)), 1;
        printf("%u vCPUs, %" PRIu64 " MiB of RAM, %s, %u passes, %s guest pages\n",
               r->o.guest.vcpus, r->o.guest.memory / MiB,
               r->o.pager == ENGINE ? "the engine" : "a reference pager", r->o.guest.passes,
               r->o.guest.small_pages ? "4 KiB" : "2 MiB");
        e = kvm_guest_start(&r->g);
        if (e < 0)
                return fprintf(stderr, "starting the vCPUs: %s\n", strerror(-e)), 1;
        if (!wait_guest(r)) {
                fflush(stdout);
                _exit(1); /* vCPUs may wait in faults nobody will resolve */
        }
        ok = kvm_guest_join(&r->g);
        if (r->ref)
                reference_pager_stop(r->ref);
        else
                ok &= finish_engine(r);
        /* The punch pager loses contents on purpose: only the guest's health counts there. */
        if (r->o.pager != PUNCH)
                ok &= atomic_load(&r->g.bad_pages) == 0;
        printf("%s: %llu wrong pages seen by the guest, %.1f s\n", ok ? "PASS" : "FAIL",
               (unsigned long long)atomic_load(&r->g.bad_pages), kvm_guest_elapsed(&r->g));
        return ok ? 0 : 1;
}

/* A size with a K/M/G suffix, or exit 2. */
static uint64_t size_arg(const char *s)
{
        uint64_t v;

        if (parse_size(s, &v) < 0 || v > GiB) {
                fprintf(stderr, "bad size (at most 1G): %s\n", s);
                exit(2);
        }
        return v;
}

static unsigned uint_arg(const char *s, unsigned max)
{
        uint64_t v;

        if (parse_uint(s, 0, max, &v) < 0) {
                fprintf(stderr, "bad number (0..%u): %s\n", max, s);
                exit(2);
        }
        return (unsigned)v;
}

static enum pager parse_pager(const char *s)
{
        static const char *const names[] = {"engine", "simple", "simple-zap", "punch"};

        for (unsigned i = 0; i < ARRAY_SIZE(names); i++)
                if (strcmp(s, names[i]) == 0)
                        return (enum pager)i;
        fprintf(stderr, "unknown pager %s (engine, simple, simple-zap, punch)\n", s);
        exit(2);
}

static void usage(const char *prog)
{
        fprintf(stderr,
                "usage: %s [--memory SIZE] [--limit SIZE] [--vcpus N] [--passes N] "
                "[--readahead PAGES] [--small-pages] [--pager NAME] [--dir DIR] "
                "[--timeout S]\n",
                prog);
        exit(2);
}

static void parse(int argc, char **argv, struct options *o)
{
        static const struct option longs[] = {
                {"memory", required_argument, NULL, 'm'},
                {"limit", required_argument, NULL, 'l'},
                {"vcpus", required_argument, NULL, 'c'},
                {"passes", required_argument, NULL, 'p'},
                {"readahead", required_argument, NULL, 'r'},
                {"small-pages", no_argument, NULL, 's'},
                {"pager", required_argument, NULL, 'P'},
                {"dir", required_argument, NULL, 'd'},
                {"timeout", required_argument, NULL, 't'},
                {0},
        };
        int c;

        *o = (struct options){.guest = {.memory = 128 * MiB, .vcpus = 2, .passes = 3},
                              .readahead = 15,
                              .dir = "/tmp",
                              .timeout_s = 900};
        while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
                switch (c) {
                case 'm':
                        o->guest.memory = size_arg(optarg);
                        break;
                case 'l':
                        o->limit = size_arg(optarg);
                        break;
                case 'c':
                        o->guest.vcpus = uint_arg(optarg, KVM_GUEST_MAX_VCPUS);
                        break;
                case 'p':
                        o->guest.passes = uint_arg(optarg, 1000);
                        break;
                case 'r':
                        o->readahead = uint_arg(optarg, 255);
                        break;
                case 's':
                        o->guest.small_pages = true;
                        break;
                case 'P':
                        o->pager = parse_pager(optarg);
                        break;
                case 'd':
                        o->dir = optarg;
                        break;
                case 't':
                        o->timeout_s = uint_arg(optarg, 86400);
                        break;
                default:
                        usage(argv[0]);
                }
        }
        if (optind != argc)
                usage(argv[0]);
        if (o->limit == 0)
                o->limit = o->guest.memory / 4;
        if (o->guest.vcpus == 0 || o->guest.passes == 0 || o->guest.memory < 16 * MiB ||
            o->limit > o->guest.memory || o->guest.memory % (2 * MiB)) {
                fprintf(stderr, "need 1..8 vCPUs, passes > 0, 16M..1G of memory (2 MiB multiple) "
                                "and a limit within it\n");
                exit(2);
        }
}

int main(int argc, char **argv)
{
        static struct run r;
        int e;

        setvbuf(stdout, NULL, _IOLBF, 0);
        parse(argc, argv, &r.o);
        e = kvm_guest_open(&r.g, &r.o.guest);
        if (e == -ENOENT || e == -EACCES || e == -ENXIO) {
                fprintf(stderr, "no /dev/kvm (%s): skipped (run it in the nested rig)\n",
                        strerror(-e));
                return 77;
        }
        if (e < 0)
                return fprintf(stderr, "/dev/kvm: %s\n", strerror(-e)), 1;
        if (!cpu_has_hw_virt()) {
                fprintf(stderr, "/dev/kvm without VMX/SVM (a paravirtual KVM such as PVM): "
                                "skipped (run it in the nested rig)\n");
                return 77;
        }
        return run(&r);
}
