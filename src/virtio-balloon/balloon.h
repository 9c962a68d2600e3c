/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-balloon (virtio 1.x device ID 5), the device the VMM uses to take memory back from a
 * running guest: it sets a target, the guest driver inflates (hands pages over, which tidal
 * punches out of the guest memfd) or deflates towards it, reports its memory statistics on the
 * stats queue and, with free page reporting, gives back free blocks on its own.
 *
 * Life cycle: balloon_new() → virtio_pci_create(..., balloon_virtio_dev(b), ...) → the guest
 * drives it → pci_bus_destroy() → balloon_free(). The API below may be called from any thread
 * (control socket, event loop) once the device is plugged; it takes the device lock.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tidal/guest-mem.h"
#include "tidal/macro.h"
#include "tidal/virtio-dev.h"
#include "virtio-balloon/metrics.h"
#include "virtio-balloon/stats.h"

#define VIRTIO_ID_BALLOON 5

/* Feature bits (virtio 1.x, 5.5.3). tidal never offers FREE_PAGE_HINT or PAGE_POISON. */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ       1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT 3
#define VIRTIO_BALLOON_F_PAGE_POISON    4
#define VIRTIO_BALLOON_F_REPORTING      5

#define BALLOON_STATS_PERIOD_MAX_S 3600u

struct balloon;

struct balloon_options {
        bool deflate_on_oom;      /* offer DEFLATE_ON_OOM; default true */
        bool free_page_reporting; /* offer REPORTING; default true */
        uint32_t stats_period_s;  /* how often the stats buffer is returned; 0 = never; default 1 */
};

/* Fills in the defaults above. */
void balloon_options_default(struct balloon_options *opts);

/*
 * Allocates an unplugged balloon for the guest RAM mem (inflated and reported pages are
 * discarded from it; it must outlive the balloon). opts NULL means the defaults.
 * 0, -EINVAL (bad options) or -ENOMEM.
 */
int balloon_new(const struct balloon_options *opts, struct guest_mem *mem, struct balloon **ret);

/*
 * Frees it, NULL is fine. After pci_bus_destroy(), on the event-loop thread or with the loop
 * stopped: the stats timer's callback must not be running.
 */
void balloon_free(struct balloon *b);

static inline void balloon_freep(struct balloon **b)
{
        balloon_free(*b);
}

/* What to hand to virtio_pci_create(); owned by b. */
struct virtio_dev *balloon_virtio_dev(struct balloon *b);

/*
 * Asks the guest to hold bytes (rounded down to 4 KiB pages) in its balloon, and raises the
 * config-change interrupt if the target changed while the driver runs. The target survives
 * device resets. 0 or -ERANGE (more than the guest's RAM).
 */
int balloon_set_target(struct balloon *b, uint64_t bytes);

/* Period of the stats queue polling, in seconds; 0 stops it. 0, -ERANGE or a timer error. */
int balloon_set_stats_period(struct balloon *b, uint32_t seconds);

/*
 * Asks the guest for a statistics report now rather than at the next period: returns the buffer
 * it left with the device, if any (without one, a report is already on its way). The period's
 * timer keeps its pace.
 */
void balloon_request_stats(struct balloon *b);

struct balloon_state {
        bool driver_ok;          /* the driver set DRIVER_OK and the device is not broken */
        bool needs_reset;        /* the guest broke the protocol; waiting for a device reset */
        uint64_t features;       /* negotiated */
        uint64_t target_bytes;   /* what the VMM asked for */
        uint64_t actual_bytes;   /* what the driver says it holds, clamped to guest RAM */
        uint64_t inflated_bytes; /* what the host counted: inflated minus deflated pages */
        uint64_t pending_bytes;  /* inflated, not punched yet: in partial 2 MiB blocks */
        uint64_t open_blocks;    /* partial 2 MiB blocks holding them */
        uint32_t stats_period_s;
        bool stats_valid;           /* a stats buffer arrived since the balloon was created */
        struct balloon_stats stats; /* the latest one */
        uint64_t stats_seq;         /* 1 for the first buffer, +1 for each after it */
        uint64_t stats_age_ns;      /* CLOCK_MONOTONIC time since it arrived */
        struct balloon_metrics metrics;
};

void balloon_get_state(struct balloon *b, struct balloon_state *ret);

/*
 * An eventfd (non-blocking, owned by the balloon) that becomes readable after each statistics
 * report, so that the VMM's controller can act on a report as soon as it arrives rather than
 * on a timer of its own. The reader drains it (eventfd_read) before balloon_get_state().
 */
int balloon_stats_eventfd(struct balloon *b);
