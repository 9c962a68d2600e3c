/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "tidal/clock.h"
#include "tidal/event-loop.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "virtio-balloon/balloon.h"
#include "virtio-mem/virtio-mem.h"
#include "vmm/dynmem/controller.h"
#include "vmm/dynmem/demand.h"
#include "vmm/dynmem/dynmem.h"

struct dynmem {
        const struct mem_settings *settings;
        struct balloon *balloon;
        struct virtio_mem *vmem;
        uint64_t region;
        struct event_source *timer;
        struct event_source *stats_src; /* the balloon's statistics eventfd */
        struct event_source *confirm;   /* one shot: asks for the report that confirms a low one */
        uint64_t last_round_ns;

        struct dynmem_state state;
        struct demand_sample prev; /* the report before the latest one */
        bool have_prev;
        uint64_t stats_seq; /* the latest report used */
        uint64_t overhead;  /* what the guest kernel keeps out of MemTotal */
        bool have_overhead;
        uint64_t last_assigned;         /* assigned one round ago */
        bool low_before;                /* the last report wanted the guest smaller */
        uint64_t last_plugged;          /* virtio-mem's plugged size one round ago */
        uint64_t last_unplugging;       /* what it had above its request one round ago */
        unsigned unplug_idle_rounds;    /* rounds it stayed above requested without progress */
        unsigned stall_rounds;          /* rounds virtio-mem moved no block towards requested */
        bool stall_logged;              /* the current stall has been logged */
        uint64_t set_vmem, set_balloon; /* what was last asked of each */
        dynmem_report_fn report_fn;
        void *report_opaque;
};

/* Statistics older than this many periods are stale: the guest may be too busy to answer. */
#define STALE_PERIODS 3

static bool stats_fresh(const struct balloon_state *b)
{
        uint64_t period_ns = (uint64_t)b->stats_period_s * 1000000000ULL;

        return b->stats_valid && period_ns && b->stats_age_ns <= STALE_PERIODS * period_ns;
}

/* True when a new report was used. */
static bool update_demand(struct dynmem *d, const struct balloon_state *b, bool stable)
{
        struct demand_sample cur = {
                .stats = b->stats,
                .assigned = d->state.assigned,
                .balloon_actual = b->actual_bytes,
                .deflate_on_oom = b->features & (1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM),
        };
        struct demand dem;

        if (!b->stats_valid || b->stats_seq == d->stats_seq)
                return false;
        d->stats_seq = b->stats_seq;
        /*
         * The overhead is only measured while memory stands still: a report taken before a
         * plug or a balloon step, set against assigned after it, would be off by the step.
         */
        if (stable || !d->have_overhead)
                d->have_overhead = demand_overhead(&cur, &d->overhead) == 0;
        if (demand_estimate(&cur, d->have_prev ? &d->prev : NULL, d->overhead, &dem) < 0)
                return false; /* a report without total/available: keep the last estimate */
        d->prev = cur;
        d->have_prev = true;
        d->state.have_demand = true;
        d->state.demand = dem.demand;
        d->state.pressure = dem.pressure;
        return true;
}

/* Plugged memory above the request that has stopped going away: the balloon takes it. */
static uint64_t vmem_stuck(struct dynmem *d, const struct virtio_mem_state *vm)
{
        if (vm->plugged_size <= vm->requested_size) {
                d->unplug_idle_rounds = 0;
        } else if (vm->plugged_size < d->last_plugged) {
                d->unplug_idle_rounds = 0;
        } else if (d->unplug_idle_rounds < DYNMEM_STUCK_ROUNDS) {
                d->unplug_idle_rounds++;
        }
        d->last_plugged = vm->plugged_size;
        return d->unplug_idle_rounds >= DYNMEM_STUCK_ROUNDS ? vm->plugged_size - vm->requested_size
                                                            : 0;
}

/*
 * What virtio-mem is taking out of the guest right now: plugged above requested, while the
 * driver still makes progress. Blocks it has stopped unplugging are no isolated free pages
 * (and the balloon covers them): they must not hold growth back.
 */
static uint64_t vm_unplugging(const struct dynmem *d, const struct virtio_mem_state *vm)
{
        if (vm->plugged_size <= vm->requested_size || d->unplug_idle_rounds > 0)
                return 0;
        return vm->plugged_size - vm->requested_size;
}

/*
 * Linux's virtio-mem driver backs off for 50 s or more when a plug or unplug fails in the guest
 * (no memory for a new block's memmap, pages that cannot move); re-raising the config interrupt
 * makes it retry at once. A stall is no progress towards requested_size for
 * DYNMEM_NUDGE_ROUNDS rounds; the nudge is then repeated at that pace until it moves.
 */
static void nudge_stalled_vmem(struct dynmem *d, const struct virtio_mem_state *vm)
{
        bool behind = vm->plugged_size != vm->requested_size;
        bool moved = vm->plugged_size != d->last_plugged;

        if (!behind || moved || vm->driver != VIRTIO_MEM_DRIVER_RUNNING) {
                d->stall_rounds = 0;
                d->stall_logged = false;
                return;
        }
        if (++d->stall_rounds < DYNMEM_NUDGE_ROUNDS)
                return;
        d->stall_rounds = 0;
        if (!d->stall_logged)
                log_info(
                        "dynamic memory: the guest stopped at %llu MiB of virtio-mem with %llu MiB "
                        "requested; asking it to retry",
                        (unsigned long long)(vm->plugged_size >> 20),
                        (unsigned long long)(vm->requested_size >> 20));
        d->stall_logged = true;
        virtio_mem_nudge(d->vmem);
}

static void apply(struct dynmem *d, const struct mem_split *split)
{
        int r;

        if (d->vmem && split->vmem != d->set_vmem) {
                r = virtio_mem_set_requested(d->vmem, split->vmem);
                if (r < 0)
                        log_errno(r, "dynamic memory: cannot request %llu MiB of virtio-mem",
                                  (unsigned long long)(split->vmem >> 20));
                else
                        d->set_vmem = split->vmem;
        }
        if (split->balloon != d->set_balloon) {
                r = balloon_set_target(d->balloon, split->balloon);
                if (r < 0)
                        log_errno(r, "dynamic memory: cannot set the balloon to %llu MiB",
                                  (unsigned long long)(split->balloon >> 20));
                else
                        d->set_balloon = split->balloon;
        }
}

/*
 * The controller's next target, or the one last set from outside. A low reading counts once
 * per report (rounds without a new one, on the timer, do not confirm it).
 */
static uint64_t next_target(struct dynmem *d, bool fresh, bool new_report, uint64_t unplugging)
{
        const struct mem_settings *s = d->settings;
        struct controller_input in = {
                .settings = s,
                .target = d->state.target,
                .demand = d->state.demand,
                .fresh = fresh,
                .settled = d->low_before && new_report,
                .pressure = d->state.pressure != 0,
                .unplugging = unplugging,
        };
        uint64_t next;

        /* Settings may have changed under an external target: keep it inside them. */
        if (d->state.source == DYNMEM_SOURCE_EXTERNAL)
                return controller_external_target(s, d->state.target);
        /* Until the guest's first report there is nothing to go on: it keeps startup. */
        if (!d->state.have_demand)
                return d->state.target;
        next = controller_next_target(&in);
        if (new_report) {
                d->low_before = controller_wants_less(&in);
                /* A first low reading: its confirmation need not wait a whole period. */
                if (d->low_before && next == d->state.target)
                        (void)event_source_set_period(d->confirm, DYNMEM_CONFIRM_NS);
        }
        return next;
}

/*
 * What the guest has now, read from the devices: startup + plugged - ballooned. The balloon's
 * and virtio-mem's states are left in b and vm.
 */
static void read_assigned(const struct dynmem *d, struct dynmem_state *st, struct balloon_state *b,
                          struct virtio_mem_state *vm)
{
        uint64_t has;

        balloon_get_state(d->balloon, b);
        *vm = (struct virtio_mem_state){0};
        if (d->vmem)
                virtio_mem_get_state(d->vmem, vm);
        has = d->settings->startup + vm->plugged_size;
        st->assigned = has > b->actual_bytes ? has - b->actual_bytes : 0;
        st->balloon = b->actual_bytes;
        st->vmem_plugged = vm->plugged_size;
}

/*
 * paced: a round on a report or on the timer, about one period after the last. Only those
 * count towards the stall and stuck detection, which are measured in periods; a round run at
 * once for a new target or new settings must not make a driver look stuck.
 */
static void run_round(struct dynmem *d, bool paced)
{
        const struct mem_settings *s = d->settings;
        struct virtio_mem_state vm;
        struct balloon_state b;
        struct mem_split split;
        bool new_report;
        uint64_t next, unplugging;

        read_assigned(d, &d->state, &b, &vm);
        new_report = update_demand(d, &b, d->state.assigned == d->last_assigned);
        d->last_assigned = d->state.assigned;
        d->state.fresh = stats_fresh(&b);

        /*
         * The report was taken since the last round, while as much as then may have been on its
         * way out: plugged only falls during an unplug.
         */
        unplugging = vm_unplugging(d, &vm);
        d->state.unplugging = MAX(unplugging, d->last_unplugging);
        next = next_target(d, d->state.fresh, new_report, d->state.unplugging);
        d->last_unplugging = unplugging;
        d->state.target = next;
        d->state.status = mem_status_of(d->state.assigned, d->state.demand, s->buffer);
        if (d->vmem && paced) {
                nudge_stalled_vmem(d, &vm);
                d->state.vmem_stuck = vmem_stuck(d, &vm);
        }
        controller_split(d->state.target, s->startup, d->region, d->state.vmem_stuck, &split);
        apply(d, &split);
        if (new_report && d->report_fn)
                d->report_fn(d->report_opaque, &d->state);
}

/* About a period since the last paced round: the next one keeps the pace. */
static bool period_elapsed(const struct dynmem *d)
{
        return monotonic_ns() - d->last_round_ns >= DYNMEM_PERIOD_NS * 9 / 10;
}

static void round_now(struct dynmem *d)
{
        d->last_round_ns = monotonic_ns();
        run_round(d, true);
}

/*
 * A report: act on it at once, instead of up to a period later. One asked for early (to confirm
 * a low reading) is not a paced round: the stall and stuck counts stay in periods.
 */
static void stats_arrived(void *opaque, uint32_t events)
{
        struct dynmem *d = opaque;
        eventfd_t count;

        (void)eventfd_read(balloon_stats_eventfd(d->balloon), &count);
        if (period_elapsed(d))
                round_now(d);
        else
                run_round(d, false);
}

static void confirm_fired(void *opaque, uint32_t events)
{
        struct dynmem *d = opaque;

        (void)event_source_set_period(d->confirm, 0);
        balloon_request_stats(d->balloon);
}

/*
 * The timer covers a guest that stopped reporting (stale statistics, a stalled virtio-mem
 * driver, the balloon stepping in): it runs a round only if no report did for a period, so
 * rounds keep their one-period pace either way.
 */
static void timer_fired(void *opaque, uint32_t events)
{
        struct dynmem *d = opaque;

        if (period_elapsed(d))
                round_now(d);
}

int dynmem_new(struct event_loop *loop, const struct mem_settings *settings, struct balloon *b,
               struct virtio_mem *vmem, uint64_t region, struct dynmem **ret)
{
        _cleanup_free_ struct dynmem *d = calloc(1, sizeof(*d));
        int r;

        if (!d)
                return -ENOMEM;
        if (!b)
                return -EINVAL; /* demand comes from the balloon's statistics */
        *d = (struct dynmem){
                .settings = settings,
                .balloon = b,
                .vmem = vmem,
                .region = vmem ? region : 0,
                .state = {.target = settings->startup, .status = MEM_STATUS_OK},
        };
        r = event_loop_add_timer(loop, DYNMEM_PERIOD_NS, timer_fired, d, &d->timer);
        if (r < 0)
                return r;
        r = event_loop_add_fd(loop, balloon_stats_eventfd(b), EPOLLIN, stats_arrived, d,
                              &d->stats_src);
        if (r == 0)
                r = event_loop_add_timer(loop, 0, confirm_fired, d, &d->confirm);
        if (r < 0) {
                event_source_free(d->timer);
                event_source_free(d->stats_src);
                return r;
        }
        *ret = TAKE_PTR(d);
        return 0;
}

void dynmem_free(struct dynmem *d)
{
        if (!d)
                return;
        event_source_free(d->timer);
        event_source_free(d->stats_src);
        event_source_free(d->confirm);
        free(d);
}

void dynmem_kick(struct dynmem *d)
{
        run_round(d, false);
}

/*
 * Assigned, balloon and plugged are read live, so that a reader does not see memory the guest
 * gave back a round ago (up to a second). Status stays the verdict of the last round, taken
 * with that round's demand: a guest that grows is Warning or Low until the next report shows
 * its memory caught up, however fast virtio-mem plugged it.
 */
void dynmem_get_state(struct dynmem *d, struct dynmem_state *ret)
{
        struct virtio_mem_state vm;
        struct balloon_state b;

        *ret = d->state;
        read_assigned(d, ret, &b, &vm);
}

void dynmem_set_source(struct dynmem *d, enum dynmem_source source)
{
        d->state.source = source;
        d->low_before = false; /* the controller's history means nothing after a switch */
}

int dynmem_set_external_target(struct dynmem *d, uint64_t bytes)
{
        if (d->state.source != DYNMEM_SOURCE_EXTERNAL)
                return -EPERM;
        d->state.target = controller_external_target(d->settings, bytes);
        run_round(d, false);
        return 0;
}

void dynmem_set_report_fn(struct dynmem *d, dynmem_report_fn fn, void *opaque)
{
        d->report_fn = fn;
        d->report_opaque = opaque;
}
