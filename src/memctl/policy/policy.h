/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tidald's policy (docs/memctl-policy.md has the algorithm and a worked example): how the host's
 * memory budget is shared between the VMs, by weight, and how room is found to admit a new VM.
 * Pure functions over an array of VMs: no I/O, no clock, so they are property-tested over
 * random hosts (tests/unit/test-policy.c) and benchmarked on 10,000 VMs (bench/).
 *
 * Two amounts per VM matter: its grant (the target the daemon has sent it) and what it holds
 * (assigned; it may lag the grant while it shrinks). Memory a VM has not given back yet is
 * never handed to another: the policy keeps sum(max(grant, assigned)) within the budget, so no
 * plan ever overcommits the host, even mid-move.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tidal/memory-settings.h"

/* A cut smaller than this (or 1/32 of the grant, if larger) is not made. */
#define POLICY_DEADBAND_MIN (16ULL << 20)
/* Largest cut of one VM's grant in one round; growth is bounded only by free memory. */
#define POLICY_SHRINK_MAX (2ULL << 30)

struct policy_vm {
        /* Inputs. */
        uint64_t startup, minimum, maximum; /* the VM's settings (minimum <= maximum) */
        unsigned buffer;                    /* percent */
        unsigned weight;                    /* 0..10000; higher is served first */
        bool have_demand;                   /* false: no statistics yet; it keeps its grant */
        uint64_t demand;                    /* bytes the guest needs (its report) */
        bool fresh;        /* statistics are recent; a stale VM is never cut below its grant */
        uint64_t assigned; /* bytes it holds now */
        /*
         * Bytes its virtio-mem is unplugging now (0 under pressure): the demand may count them
         * as used, so the grant never grows on what they explain (dynamic-memory.md).
         */
        uint64_t unplugging;
        /* Input and output: the current grant in, the new grant out. */
        uint64_t grant;
};

/* What one balancing round decided, for logs and tests. */
struct policy_result {
        uint64_t granted;     /* sum of the new grants */
        uint64_t reserved;    /* sum of max(grant, assigned): what is spoken for */
        bool short_of_memory; /* not everyone got demand * (1 + buffer) */
        size_t changed;       /* grants that moved */
};

/*
 * One balancing round. Every VM gets at least its minimum; if the budget allows, each gets
 * clamp(demand * (1 + buffer), minimum, maximum); when memory is short, buffers are cut first,
 * lowest weight first, then lower-weight VMs lose memory down to their minimum before higher
 * ones lose any; equal weights share a cut in proportion. Grants move by at most
 * POLICY_SHRINK_MAX down per round and do not shrink inside the dead band (unless another
 * VM's growth needs that memory); growth has no dead band but is limited to memory no other VM
 * still holds, highest weight first. New grants are multiples of MEM_BLOCK_SIZE
 * within [minimum, maximum], and sum(max(grant, assigned)) <= budget whenever it was on entry (if
 * it was not, for instance after a restart of the daemon, no grant grows until it is).
 */
void policy_balance(struct policy_vm *vms, size_t n, uint64_t budget, struct policy_result *ret);

struct policy_admission {
        uint64_t needed; /* the new VM's startup */
        uint64_t found;  /* what free memory, buffers and lower weights could give */
        bool admit;      /* found >= needed (or, partial, >= minimum): grants lowered for it */
        bool partial;    /* admitted with less than its startup (policy_admit_partial) */
        uint64_t grant;  /* admitted: needed, or (partial) found rounded down to a block */
};

/*
 * Finds `startup` bytes for a new VM of `weight`: free budget first, then other VMs' buffers
 * (lowest weight first), then memory of VMs of lower weight than the newcomer, down to their
 * minimum. If enough is found, lowers those VMs' grants (the caller sends the new targets and
 * admits once they have shrunk: sum(max(grant, assigned)) + startup <= budget); otherwise
 * leaves every grant as it was. Also used for a restarting VM (exclude it from vms).
 */
void policy_admit(struct policy_vm *vms, size_t n, uint64_t budget, uint64_t startup,
                  unsigned weight, struct policy_admission *ret);

/*
 * For a restarting VM (smart paging, docs/memctl-policy.md "Partial admission"): as
 * policy_admit() when `startup` can be found. Otherwise, if at least `minimum` can (after
 * rounding `found` down to a block), admits partially: lowers every grant as far as the
 * admission rules allow (all free memory, every buffer, lighter VMs down to their floor) and
 * reports grant = found rounded down to a block, partial = true. Below `minimum` it refuses
 * and leaves every grant as it was: smart paging bridges a gap, it does not run a VM below its
 * minimum. Never for a cold start (use policy_admit()).
 */
void policy_admit_partial(struct policy_vm *vms, size_t n, uint64_t budget, uint64_t startup,
                          uint64_t minimum, unsigned weight, struct policy_admission *ret);

/* sum(max(grant, assigned)): memory spoken for. */
uint64_t policy_reserved(const struct policy_vm *vms, size_t n);
