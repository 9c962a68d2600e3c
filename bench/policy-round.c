/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * How long one tidald balancing round takes on 10,000 VMs (issue 5: under 10 ms), and one
 * admission. The VMs are random (fixed seed) under a budget short enough that every round
 * cuts; between rounds a tenth of them report a new demand and every guest has followed its
 * grant, so the rounds do real work instead of sitting at a fixed point.
 *
 *   bench-policy-round [VMS [ROUNDS]]
 *
 * Wall-clock figures (CLOCK_MONOTONIC) include preemption on a busy host; the CPU-time median
 * (CLOCK_THREAD_CPUTIME_ID) does not.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memctl/policy/policy.h"
#include "tidal/macro.h"

#define TARGET_US   10000.0
#define ADMIT_TRIES 21

static uint64_t rnd(uint64_t *s)
{
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static uint64_t blocks(uint64_t *s, uint64_t lo, uint64_t hi)
{
        return (lo / MEM_BLOCK_SIZE + rnd(s) % ((hi - lo) / MEM_BLOCK_SIZE + 1)) * MEM_BLOCK_SIZE;
}

static void random_vm(uint64_t *s, struct policy_vm *v)
{
        uint64_t minimum = blocks(s, 256 * MiB, 1 * GiB);
        uint64_t maximum = blocks(s, minimum, 16 * GiB);

        *v = (struct policy_vm){
                .minimum = minimum,
                .maximum = maximum,
                .startup = minimum,
                .buffer = 5 + rnd(s) % 60,
                .weight = rnd(s) % 5 ? (unsigned)(rnd(s) % 10 * 1000) : 5000,
                .have_demand = true,
                .demand = blocks(s, 128 * MiB, maximum),
                .fresh = rnd(s) % 50 != 0,
                .grant = minimum,
                .assigned = minimum,
        };
}

static double clock_us(clockid_t clock)
{
        struct timespec ts;

        clock_gettime(clock, &ts);
        return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
        size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
        int rounds = argc > 2 ? atoi(argv[2]) : 200;
        _cleanup_free_ struct policy_vm *vms = NULL, *copy = NULL;
        _cleanup_free_ double *us = NULL, *cpu_us = NULL;
        struct policy_admission adm;
        struct policy_result r;
        uint64_t s = 0x7469da1, budget = 0;
        double t, c, median, p99, cpu_median, admit_us[ADMIT_TRIES];

        if (n == 0 || rounds <= 0) {
                fprintf(stderr, "usage: %s [VMS [ROUNDS]]\n", argv[0]);
                return 2;
        }
        vms = calloc(n, sizeof(*vms));
        copy = calloc(n, sizeof(*copy));
        us = calloc(rounds, sizeof(*us));
        cpu_us = calloc(rounds, sizeof(*cpu_us));
        if (!vms || !copy || !us || !cpu_us) {
                fprintf(stderr, "out of memory\n");
                return 1;
        }
        for (size_t i = 0; i < n; i++) {
                random_vm(&s, &vms[i]);
                budget += mem_with_buffer(vms[i].demand, vms[i].buffer);
        }
        budget = budget / 10 * 7; /* 70 % of the wants: every round cuts */

        for (int k = 0; k < rounds; k++) {
                for (size_t i = 0; i < n; i++) {
                        vms[i].assigned = vms[i].grant;
                        if (rnd(&s) % 10 == 0)
                                vms[i].demand = blocks(&s, 128 * MiB, vms[i].maximum);
                }
                t = clock_us(CLOCK_MONOTONIC);
                c = clock_us(CLOCK_THREAD_CPUTIME_ID);
                policy_balance(vms, n, budget, &r);
                cpu_us[k] = clock_us(CLOCK_THREAD_CPUTIME_ID) - c;
                us[k] = clock_us(CLOCK_MONOTONIC) - t;
        }
        qsort(us, rounds, sizeof(*us), cmp_double);
        qsort(cpu_us, rounds, sizeof(*cpu_us), cmp_double);
        cpu_median = cpu_us[rounds / 2];
        median = us[rounds / 2];
        p99 = us[(size_t)(rounds - 1) * 99 / 100];

        /* Admission of a heavy VM big enough to need buffers and lighter VMs' memory; each
         * try from the same state. */
        for (int k = 0; k < ADMIT_TRIES; k++) {
                memcpy(copy, vms, n * sizeof(*vms));
                t = clock_us(CLOCK_MONOTONIC);
                policy_admit(copy, n, budget, 64 * GiB, 9000, &adm);
                admit_us[k] = clock_us(CLOCK_MONOTONIC) - t;
        }
        qsort(admit_us, ADMIT_TRIES, sizeof(*admit_us), cmp_double);

        printf("vms: %zu, rounds: %d, budget: %" PRIu64 " MiB, last round changed %zu\n", n, rounds,
               budget / MiB, r.changed);
        printf("balance round median: %.1f us\n", median);
        printf("balance round p99: %.1f us\n", p99);
        printf("balance round median CPU time: %.1f us (this thread; preemption excluded)\n",
               cpu_median);
        printf("balance per VM (median): %.1f ns\n", median * 1000.0 / n);
        printf("target: %.0f us per round; median/target: %.4f; p99/target: %.4f\n", TARGET_US,
               median / TARGET_US, p99 / TARGET_US);
        printf("admit median: %.1f us (%s, needed %" PRIu64 " MiB, found %" PRIu64 " MiB)\n",
               admit_us[ADMIT_TRIES / 2], adm.admit ? "admitted" : "refused", adm.needed / MiB,
               adm.found / MiB);
        return 0;
}
