/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-balloon through the real virtqueue code on a real guest memfd: the test plays the
 * transport (locks, status, queue setup, a fake interrupt sink) and the driver (rings in guest
 * RAM), and checks what reaches the host: punched holes, interrupts, config, metrics.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "tidal/event-loop.h"
#include "tidal/guest-mem.h"
#include "tidal/log.h"
#include "virtio-balloon/balloon-internal.h"

#define PG        4096ull
#define RAM_SIZE  (16 * MiB) /* [0, 8 MiB) and [4 GiB, 4 GiB + 8 MiB) */
#define HOLE      (8 * MiB)
#define RING_BASE 0x10000ull /* queue q: desc at +q*4K, avail at +1K, used at +2K */
#define DATA_GPA  0x100000ull
#define QSIZE     64

#define F_NEXT  1
#define F_WRITE 2

#define F(bit) (UINT64_C(1) << (bit))

struct ctx {
        struct guest_mem gm;
        struct balloon *b;
        struct virtio_dev *dev;
        unsigned queue_signals[BALLOON_NR_QUEUES];
        unsigned config_signals;
        uint16_t avail_idx[BALLOON_NR_QUEUES];
        uint16_t next_desc[BALLOON_NR_QUEUES];
        uint64_t data_next; /* bump allocator for driver buffers */
};

static void fake_signal_queue(struct virtio_dev *dev, unsigned idx)
{
        struct ctx *c = dev->transport_priv;

        c->queue_signals[idx]++;
}

static void fake_signal_config(struct virtio_dev *dev)
{
        struct ctx *c = dev->transport_priv;

        c->config_signals++;
}

static const struct virtio_transport_ops fake_transport = {
        .signal_queue = fake_signal_queue,
        .signal_config = fake_signal_config,
};

static void *hva(struct ctx *c, uint64_t gpa)
{
        void *p = guest_mem_ptr(&c->gm, gpa, 1);

        assert_non_null(p);
        return p;
}

static uint64_t desc_gpa(unsigned q)
{
        return RING_BASE + q * 0x1000ull;
}

static struct ctx *ctx_new(const struct balloon_options *opts)
{
        struct ctx *c = calloc(1, sizeof(*c));

        assert_non_null(c);
        assert_int_equal(guest_mem_init(&c->gm, "test-balloon", RAM_SIZE, HOLE), 0);
        assert_int_equal(balloon_new(opts, &c->gm, &c->b), 0);
        c->dev = balloon_virtio_dev(c->b);
        assert_int_equal(virtio_dev_attach(c->dev, &fake_transport, c, &c->gm, NULL), 0);
        c->data_next = DATA_GPA;
        return c;
}

static void ctx_free(struct ctx *c)
{
        virtio_dev_detach(c->dev);
        balloon_free(c->b);
        guest_mem_release(&c->gm);
        free(c);
}

static int setup(void **state)
{
        log_set_level(LOG_LEVEL_ERROR); /* the hostile cases warn on purpose */
        *state = ctx_new(NULL);
        return 0;
}

static int teardown(void **state)
{
        ctx_free(*state);
        return 0;
}

/* Feature negotiation and DRIVER_OK, with as many queues as Linux would set up. */
static void start(struct ctx *c, uint64_t features)
{
        struct virtio_dev *dev = c->dev;
        unsigned nr = 2 + !!(features & F(VIRTIO_BALLOON_F_STATS_VQ)) +
                      !!(features & F(VIRTIO_BALLOON_F_REPORTING));

        assert_int_equal(features & ~dev->ops->features(dev), 0);
        dev->driver_features = features | F(VIRTIO_F_VERSION_1);
        dev->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
        for (unsigned q = 0; q < nr; q++) {
                struct virtq *vq = &dev->queues[q];

                vq->mem = &c->gm;
                virtq_reset(vq);
                vq->size = QSIZE;
                vq->desc_gpa = desc_gpa(q);
                vq->avail_gpa = desc_gpa(q) + 0x400;
                vq->used_gpa = desc_gpa(q) + 0x800;
                assert_int_equal(virtq_validate_rings(vq), 0);
                vq->enabled = true;
        }
        virtio_dev_lock(dev);
        assert_int_equal(dev->ops->activate(dev, dev->driver_features), 0);
        dev->status |= VIRTIO_STATUS_DRIVER_OK;
        virtio_dev_unlock(dev);
}

static void set_desc(struct ctx *c, unsigned q, uint16_t i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
        uint8_t *d = hva(c, desc_gpa(q) + 16ull * i);

        memcpy(d, &addr, 8);
        memcpy(d + 8, &len, 4);
        memcpy(d + 12, &flags, 2);
        memcpy(d + 14, &next, 2);
}

static void make_avail(struct ctx *c, unsigned q, uint16_t head)
{
        uint16_t *avail = hva(c, desc_gpa(q) + 0x400);

        avail[2 + c->avail_idx[q] % QSIZE] = head;
        avail[1] = ++c->avail_idx[q];
}

static uint16_t used_idx(struct ctx *c, unsigned q)
{
        return ((uint16_t *)hva(c, desc_gpa(q) + 0x800))[1];
}

/* Queues one chain of n buffers (writable ones flagged in write_mask); returns its head. */
static uint16_t post(struct ctx *c, unsigned q, const uint64_t *gpas, const uint32_t *lens,
                     unsigned n, uint32_t write_mask)
{
        uint16_t head = c->next_desc[q];

        for (unsigned i = 0; i < n; i++) {
                uint16_t slot = (head + i) % QSIZE, next = (head + i + 1) % QSIZE;
                uint16_t flags = (i + 1 < n ? F_NEXT : 0) | (write_mask >> i & 1 ? F_WRITE : 0);

                set_desc(c, q, slot, gpas[i], lens[i], flags, next);
        }
        c->next_desc[q] = (head + n) % QSIZE;
        make_avail(c, q, head);
        return head;
}

/* Copies data into a fresh driver buffer and queues it as one readable descriptor. */
static void post_data(struct ctx *c, unsigned q, const void *data, uint32_t len)
{
        uint64_t gpa = c->data_next;

        memcpy(hva(c, gpa), data, len);
        c->data_next = ALIGN_UP(gpa + len + 1, 64);
        assert_true(c->data_next < 2 * MiB);
        post(c, q, &gpa, &len, 1, 0);
}

static void kick(struct ctx *c, unsigned q)
{
        virtio_dev_lock(c->dev);
        c->dev->ops->queue_notify(c->dev, q);
        virtio_dev_unlock(c->dev);
}

static uint64_t blocks(struct ctx *c)
{
        struct stat st;

        assert_int_equal(fstat(c->gm.memfd, &st), 0);
        return (uint64_t)st.st_blocks * 512;
}

static void touch(struct ctx *c, uint64_t gpa, uint64_t len)
{
        uint8_t *p = guest_mem_ptr(&c->gm, gpa, len);

        assert_non_null(p);
        memset(p, 0xab, len);
}

static struct balloon_state state_of(struct ctx *c)
{
        struct balloon_state s;

        balloon_get_state(c->b, &s);
        return s;
}

static bool needs_reset(struct ctx *c)
{
        return c->dev->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET;
}

/* The driver reports actual; at or above the target that flushes the open blocks. */
static void write_actual(struct ctx *c, uint32_t pages)
{
        virtio_dev_lock(c->dev);
        c->dev->ops->write_config(c->dev, 4, &pages, 4);
        virtio_dev_unlock(c->dev);
}

static void inflate(struct ctx *c, uint32_t first, unsigned n)
{
        static uint32_t pfns[BALLOON_MAX_PFNS_PER_REQUEST];

        assert_true(n <= ARRAY_SIZE(pfns));
        for (unsigned i = 0; i < n; i++)
                pfns[i] = first + i;
        post_data(c, 0, pfns, n * sizeof(uint32_t));
        kick(c, 0);
}

/* ---- Queue roles ---------------------------------------------------------------------- */

static void test_features_offered(void **state)
{
        struct ctx *c = *state;
        struct balloon_options opts;
        struct ctx *c2;
        uint64_t f = c->dev->ops->features(c->dev);

        assert_true(f & F(VIRTIO_BALLOON_F_STATS_VQ));
        assert_true(f & F(VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
        assert_true(f & F(VIRTIO_BALLOON_F_REPORTING));
        assert_true(f & F(VIRTIO_F_EVENT_IDX));
        assert_false(f & F(VIRTIO_BALLOON_F_FREE_PAGE_HINT));
        assert_false(f & F(VIRTIO_BALLOON_F_PAGE_POISON));
        assert_false(f & F(VIRTIO_BALLOON_F_MUST_TELL_HOST));
        assert_int_equal(c->dev->ops->device_id, 5);
        assert_true(c->dev->ops->nr_queues >= 4);
        assert_true(c->dev->ops->queue_max_size >= 32);

        balloon_options_default(&opts);
        opts.deflate_on_oom = false;
        opts.free_page_reporting = false;
        c2 = ctx_new(&opts);
        f = c2->dev->ops->features(c2->dev);
        assert_false(f & F(VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
        assert_false(f & F(VIRTIO_BALLOON_F_REPORTING));
        assert_true(f & F(VIRTIO_BALLOON_F_STATS_VQ));
        ctx_free(c2);

        opts.stats_period_s = BALLOON_STATS_PERIOD_MAX_S + 1;
        assert_int_equal(balloon_new(&opts, &c->gm, &c->b), -EINVAL);
}

/* Reports one aligned 2 MiB block on queue q and says whether it was taken as a report. */
static bool queue_reports(struct ctx *c, unsigned q)
{
        uint64_t before = state_of(c).metrics.reported_pages, gpa = 2 * MiB;
        uint32_t len = 2 * MiB;

        post(c, q, &gpa, &len, 1, 1);
        kick(c, q);
        return state_of(c).metrics.reported_pages == before + 512;
}

static void test_roles(void **state)
{
        static const struct {
                uint64_t features;
                enum balloon_role roles[BALLOON_NR_QUEUES];
                int reporting_queue;
        } cases[] = {
                {0, {BALLOON_ROLE_INFLATE, BALLOON_ROLE_DEFLATE}, -1},
                {F(VIRTIO_BALLOON_F_STATS_VQ),
                 {BALLOON_ROLE_INFLATE, BALLOON_ROLE_DEFLATE, BALLOON_ROLE_STATS},
                 -1},
                {F(VIRTIO_BALLOON_F_REPORTING),
                 {BALLOON_ROLE_INFLATE, BALLOON_ROLE_DEFLATE, BALLOON_ROLE_REPORTING},
                 2},
                {F(VIRTIO_BALLOON_F_STATS_VQ) | F(VIRTIO_BALLOON_F_REPORTING),
                 {BALLOON_ROLE_INFLATE, BALLOON_ROLE_DEFLATE, BALLOON_ROLE_STATS,
                  BALLOON_ROLE_REPORTING},
                 3},
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct ctx *c = ctx_new(NULL);

                start(c, cases[i].features);
                assert_memory_equal(c->b->roles, cases[i].roles, sizeof(c->b->roles));
                if (cases[i].reporting_queue >= 0)
                        assert_true(queue_reports(c, cases[i].reporting_queue));
                assert_false(needs_reset(c));
                ctx_free(c);
        }
        (void)state;
}

/* ---- Inflate / deflate ------------------------------------------------------------------ */

static void shuffle(uint32_t *a, unsigned n)
{
        for (unsigned i = n - 1; i > 0; i--) {
                unsigned j = (unsigned)rand() % (i + 1);
                uint32_t t = a[i];

                a[i] = a[j];
                a[j] = t;
        }
}

static void test_inflate_discards(void **state)
{
        struct ctx *c = *state;
        uint32_t pfns[256];
        uint64_t before, after;
        struct balloon_state s;
        const uint64_t high = 4 * GiB / PG;

        start(c, F(VIRTIO_BALLOON_F_STATS_VQ) | F(VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
        touch(c, 2 * MiB, 2 * MiB);
        touch(c, 4 * GiB, MiB);
        /* Three runs: 128 pages at 2 MiB, 64 at 3 MiB + 64 KiB, 64 at the start of high RAM. */
        for (unsigned i = 0; i < 128; i++)
                pfns[i] = 2 * MiB / PG + i;
        for (unsigned i = 0; i < 64; i++)
                pfns[128 + i] = (3 * MiB + 64 * KiB) / PG + i;
        for (unsigned i = 0; i < 64; i++)
                pfns[192 + i] = high + i;
        shuffle(pfns, 256);

        post_data(c, 0, pfns, sizeof(pfns));
        before = blocks(c); /* after the driver wrote its buffer, which allocates a page */
        kick(c, 0);
        after = blocks(c);

        assert_int_equal(used_idx(c, 0), 1);
        assert_int_equal(c->queue_signals[0], 1);
        /* Two partial 2 MiB blocks: held, nothing punched yet. */
        s = state_of(c);
        assert_int_equal(s.metrics.discard_calls, 0);
        assert_int_equal(s.pending_bytes, 256 * PG);
        assert_int_equal(s.open_blocks, 2);
        assert_int_equal(s.metrics.inflated_pages, 256);
        assert_int_equal(s.inflated_bytes, 256 * PG);
        assert_int_equal(*(uint8_t *)hva(c, 2 * MiB), 0xab);
        assert_int_equal(before, after);

        /* The driver reaches the target (0 here): flushed, one discard per run, not 256. */
        write_actual(c, 256);
        after = blocks(c);
        s = state_of(c);
        assert_int_equal(s.metrics.discard_calls, 3);
        assert_int_equal(s.metrics.discarded_bytes, 256 * PG);
        assert_int_equal(s.metrics.deferred_pages, 256);
        assert_int_equal(s.pending_bytes, 0);
        assert_int_equal(s.inflated_bytes, 256 * PG);
        assert_true(before - after >= 256 * PG);
        assert_int_equal(*(uint8_t *)hva(c, 2 * MiB), 0);    /* punched */
        assert_int_equal(*(uint8_t *)hva(c, 3 * MiB), 0xab); /* not named */
        assert_int_equal(*(uint8_t *)hva(c, 4 * GiB + 64 * PG), 0xab);
        assert_false(needs_reset(c));
}

static void test_deflate(void **state)
{
        struct ctx *c = *state;
        uint32_t pfns[100];
        struct balloon_state s;
        uint64_t calls;

        start(c, 0);
        touch(c, 4 * MiB, 100 * PG);
        for (unsigned i = 0; i < 100; i++)
                pfns[i] = 1024 + i;
        post_data(c, 0, pfns, sizeof(pfns));
        kick(c, 0);
        s = state_of(c);
        assert_int_equal(s.inflated_bytes, 100 * PG);
        assert_int_equal(s.pending_bytes, 100 * PG); /* a partial block: held */
        calls = s.metrics.discard_calls;

        /*
         * Give 40 back: they are never punched (the guest has them back once the request is
         * acknowledged); the 60 still ballooned are punched before it is: one run.
         */
        post_data(c, 1, pfns, 40 * sizeof(uint32_t));
        kick(c, 1);
        s = state_of(c);
        assert_int_equal(used_idx(c, 1), 1);
        assert_int_equal(c->queue_signals[1], 1);
        assert_int_equal(s.metrics.discard_calls, calls + 1);
        assert_int_equal(s.metrics.discarded_bytes, 60 * PG);
        assert_int_equal(s.pending_bytes, 0);
        assert_int_equal(*(uint8_t *)hva(c, 4 * MiB), 0xab);
        assert_int_equal(*(uint8_t *)hva(c, 4 * MiB + 39 * PG), 0xab);
        assert_int_equal(*(uint8_t *)hva(c, 4 * MiB + 40 * PG), 0);
        assert_int_equal(s.metrics.deflated_pages, 40);
        assert_int_equal(s.inflated_bytes, 60 * PG);
        calls = s.metrics.discard_calls;

        /* Deflating more than was inflated cannot go below zero. */
        for (unsigned i = 0; i < 100; i++)
                pfns[i] = 1500 + i;
        post_data(c, 1, pfns, sizeof(pfns));
        kick(c, 1);
        assert_int_equal(state_of(c).inflated_bytes, 0);
        /* Empty requests are valid and change nothing. */
        post_data(c, 1, pfns, 0);
        kick(c, 1);
        assert_int_equal(used_idx(c, 1), 3);
        assert_int_equal(state_of(c).metrics.discard_calls, calls);
        assert_false(needs_reset(c));
}

static void test_inflate_many_batches(void **state)
{
        struct ctx *c = *state;
        static uint32_t pfns[1000];

        start(c, 0);
        /*
         * 1000 contiguous PFNs from 2 MiB in one request, read 256 at a time: the block at 2 MiB
         * is completed and punched whole (one discard), the 488 pages after it are held.
         */
        for (unsigned i = 0; i < 1000; i++)
                pfns[i] = 512 + i;
        post_data(c, 0, pfns, sizeof(pfns));
        kick(c, 0);
        assert_int_equal(state_of(c).metrics.discard_calls, 1);
        assert_int_equal(state_of(c).metrics.discarded_bytes, 2 * MiB);
        assert_int_equal(state_of(c).pending_bytes, 488 * PG);
        assert_int_equal(state_of(c).inflated_bytes, 1000 * PG);
        write_actual(c, 1000);
        assert_int_equal(state_of(c).metrics.discard_calls, 2);
        assert_int_equal(state_of(c).metrics.discarded_bytes, 1000 * PG);
}

/* ---- Config: target and actual ---------------------------------------------------------- */

static uint32_t read_cfg32(struct ctx *c, uint32_t off)
{
        uint32_t v;

        virtio_dev_lock(c->dev);
        c->dev->ops->read_config(c->dev, off, &v, 4);
        virtio_dev_unlock(c->dev);
        return v;
}

static void write_cfg(struct ctx *c, uint32_t off, const void *data, uint32_t len)
{
        virtio_dev_lock(c->dev);
        c->dev->ops->write_config(c->dev, off, data, len);
        virtio_dev_unlock(c->dev);
}

static void test_target_actual(void **state)
{
        struct ctx *c = *state;
        uint32_t v;
        uint8_t byte;

        assert_int_equal(c->dev->ops->config_size, 16);
        /* Before DRIVER_OK: stored, no interrupt (the driver reads it when it starts). */
        assert_int_equal(balloon_set_target(c->b, MiB + 100), 0);
        assert_int_equal(c->config_signals, 0);
        assert_int_equal(read_cfg32(c, 0), 256);
        assert_int_equal(state_of(c).target_bytes, MiB);

        start(c, 0);
        assert_int_equal(balloon_set_target(c->b, 4 * MiB), 0);
        assert_int_equal(c->config_signals, 1);
        assert_int_equal(read_cfg32(c, 0), 1024);
        assert_int_equal(balloon_set_target(c->b, 4 * MiB + 1), 0); /* same pages */
        assert_int_equal(c->config_signals, 1);
        assert_int_equal(balloon_set_target(c->b, RAM_SIZE + PG), -ERANGE);
        assert_int_equal(read_cfg32(c, 0), 1024);
        assert_int_equal(balloon_set_target(c->b, RAM_SIZE), 0);
        assert_int_equal(c->config_signals, 2);

        /* actual is the driver's; num_pages is not, and the rest reads as zero. */
        v = 700;
        write_cfg(c, 4, &v, 4);
        v = 5;
        write_cfg(c, 0, &v, 4);
        assert_int_equal(read_cfg32(c, 0), RAM_SIZE / PG);
        assert_int_equal(read_cfg32(c, 4), 700);
        assert_int_equal(read_cfg32(c, 8), 0);
        assert_int_equal(read_cfg32(c, 12), 0);
        assert_int_equal(state_of(c).actual_bytes, 700 * PG);
        byte = 1;
        write_cfg(c, 5, &byte, 1); /* 700 = 0x2bc → 0x1bc */
        assert_int_equal(read_cfg32(c, 4), 0x1bc);

        /* A lying driver: what we expose is clamped to the guest's RAM. */
        v = UINT32_MAX;
        write_cfg(c, 4, &v, 4);
        assert_int_equal(state_of(c).actual_bytes, RAM_SIZE);

        /* Reset: the new driver starts empty; the VMM's target stays. */
        virtio_dev_lock(c->dev);
        c->dev->ops->reset(c->dev);
        c->dev->status = 0;
        virtio_dev_unlock(c->dev);
        assert_int_equal(read_cfg32(c, 4), 0);
        assert_int_equal(state_of(c).target_bytes, RAM_SIZE);
        assert_int_equal(state_of(c).actual_bytes, 0);
}

/* ---- Stats ------------------------------------------------------------------------------ */

static void put_stat(uint8_t *p, uint16_t tag, uint64_t val)
{
        memcpy(p, &tag, 2);
        memcpy(p + 2, &val, 8);
}

static void post_stats(struct ctx *c, unsigned q, uint64_t memfree)
{
        uint8_t buf[3 * 10];

        put_stat(buf, BALLOON_STAT_MEMFREE, memfree);
        put_stat(buf + 10, BALLOON_STAT_MEMTOT, RAM_SIZE);
        put_stat(buf + 20, 99, 1); /* unknown, ignored */
        post_data(c, q, buf, sizeof(buf));
}

static void test_stats_held_and_returned(void **state)
{
        struct ctx *c = *state;
        struct balloon_state s;

        assert_false(state_of(c).stats_valid);
        start(c, F(VIRTIO_BALLOON_F_STATS_VQ) | F(VIRTIO_BALLOON_F_REPORTING));
        post_stats(c, 2, 5 * MiB);
        kick(c, 2);
        s = state_of(c);
        assert_true(s.stats_valid);
        assert_int_equal(s.stats_seq, 1);
        assert_int_equal(s.stats.val[BALLOON_STAT_MEMFREE], 5 * MiB);
        assert_int_equal(s.stats.val[BALLOON_STAT_MEMTOT], RAM_SIZE);
        assert_int_equal(s.stats.nr_unknown, 1);
        assert_true(s.stats_age_ns < 5000000000ull);
        /* Held: not returned, no interrupt, until the period. */
        assert_int_equal(used_idx(c, 2), 0);
        assert_int_equal(c->queue_signals[2], 0);

        /* Asked for before the period: returned at once, and only once. */
        balloon_request_stats(c->b);
        balloon_request_stats(c->b); /* nothing held any more: nothing to do */
        assert_int_equal(used_idx(c, 2), 1);
        assert_int_equal(c->queue_signals[2], 1);
        assert_int_equal(state_of(c).metrics.stats_requests, 1);

        /* The driver refills it. */
        post_stats(c, 2, 6 * MiB);
        kick(c, 2);
        s = state_of(c);
        assert_int_equal(s.stats_seq, 2);
        assert_int_equal(s.stats.val[BALLOON_STAT_MEMFREE], 6 * MiB);
        assert_int_equal(s.metrics.stats_updates, 2);

        /* The period's tick returns it the same way. */
        virtio_dev_lock(c->dev);
        balloon_stats_tick(c->b);
        balloon_stats_tick(c->b);
        virtio_dev_unlock(c->dev);
        assert_int_equal(used_idx(c, 2), 2);
        assert_int_equal(state_of(c).metrics.stats_requests, 2);
        post_stats(c, 2, 6 * MiB);
        kick(c, 2);

        /* A second buffer while one is held: the older one goes back at once. */
        post_stats(c, 2, 7 * MiB);
        kick(c, 2);
        assert_int_equal(used_idx(c, 2), 3);
        assert_int_equal(state_of(c).stats_seq, 4);
        assert_false(needs_reset(c));
}

static void quit_loop(void *opaque, uint32_t events)
{
        event_loop_quit(opaque);
}

/* Runs the loop for ms milliseconds. */
static void run_loop(struct event_loop *loop, unsigned ms)
{
        struct event_source *stop;

        assert_int_equal(event_loop_add_timer(loop, ms * 1000000ull, quit_loop, loop, &stop), 0);
        assert_int_equal(event_loop_run(loop), 0);
        event_source_free(stop);
}

static void test_stats_timer(void **state)
{
        struct ctx *c = ctx_new(NULL);
        struct event_loop *loop;

        assert_int_equal(event_loop_new(&loop), 0);
        c->dev->loop = loop;
        start(c, F(VIRTIO_BALLOON_F_STATS_VQ));
        assert_non_null(c->b->stats_timer);
        post_stats(c, 2, MiB);
        kick(c, 2);
        run_loop(loop, 1300); /* default period: 1 s */
        assert_int_equal(used_idx(c, 2), 1);
        assert_int_equal(c->queue_signals[2], 1);

        /* Period 0: the refilled buffer stays with the device. */
        assert_int_equal(balloon_set_stats_period(c->b, 0), 0);
        assert_int_equal(state_of(c).stats_period_s, 0);
        post_stats(c, 2, MiB);
        kick(c, 2);
        run_loop(loop, 1300);
        assert_int_equal(used_idx(c, 2), 1);
        assert_int_equal(balloon_set_stats_period(c->b, BALLOON_STATS_PERIOD_MAX_S + 1), -ERANGE);

        /* Back to 1 s: it comes back. */
        assert_int_equal(balloon_set_stats_period(c->b, 1), 0);
        run_loop(loop, 1300);
        assert_int_equal(used_idx(c, 2), 2);

        ctx_free(c); /* frees the timer source: before the loop goes */
        event_loop_free(loop);
        (void)state;
}

/* ---- Huge-page aware discards: open 2 MiB blocks ----------------------------------------- */

static void test_whole_blocks_punched_at_once(void **state)
{
        struct ctx *c = *state;
        uint64_t before;
        struct balloon_state s;

        start(c, 0);
        touch(c, 2 * MiB, 4 * MiB);
        /* Half of each of the blocks at 2 and 4 MiB: held. */
        inflate(c, 2 * MiB / PG, 256);
        inflate(c, 4 * MiB / PG, 256);
        assert_int_equal(state_of(c).metrics.discard_calls, 0);
        assert_int_equal(state_of(c).open_blocks, 2);
        assert_int_equal(*(uint8_t *)hva(c, 2 * MiB), 0xab);
        /* One request completes both: they touch, so one discard of 4 MiB. */
        {
                uint32_t pfns[512];

                for (unsigned i = 0; i < 256; i++) {
                        pfns[i] = 5 * MiB / PG + i;
                        pfns[256 + i] = 3 * MiB / PG + i;
                }
                post_data(c, 0, pfns, sizeof(pfns));
                before = blocks(c); /* after the driver wrote its buffer */
                kick(c, 0);
        }
        s = state_of(c);
        assert_int_equal(s.metrics.discard_calls, 1);
        assert_int_equal(s.metrics.discarded_bytes, 4 * MiB);
        assert_int_equal(s.metrics.deferred_pages, 0);
        assert_int_equal(s.pending_bytes, 0);
        assert_int_equal(s.open_blocks, 0);
        assert_true(before - blocks(c) >= 4 * MiB);
        assert_int_equal(*(uint8_t *)hva(c, 2 * MiB), 0);

        /* In high RAM too, and a later flush has nothing left to do. */
        inflate(c, 4 * GiB / PG + 512, 512);
        assert_int_equal(state_of(c).metrics.discard_calls, 2);
        write_actual(c, 0);
        assert_int_equal(state_of(c).metrics.discard_calls, 2);
        assert_false(needs_reset(c));
}

static void test_actual_reaching_target_flushes(void **state)
{
        struct ctx *c = *state;

        assert_int_equal(balloon_set_target(c->b, 1000 * PG), 0);
        start(c, 0);
        inflate(c, 1024, 100);
        write_actual(c, 100); /* still inflating */
        assert_int_equal(state_of(c).pending_bytes, 100 * PG);
        assert_int_equal(state_of(c).metrics.discard_calls, 0);
        inflate(c, 1124, 100);
        write_actual(c, 1000);
        assert_int_equal(state_of(c).pending_bytes, 0);
        assert_int_equal(state_of(c).metrics.discard_calls, 1); /* one run of 200 pages */
        assert_int_equal(state_of(c).metrics.discarded_bytes, 200 * PG);
}

static void test_reset_flushes(void **state)
{
        struct ctx *c = *state;

        start(c, 0);
        touch(c, 4 * MiB, MiB);
        inflate(c, 1024, 100);
        assert_int_equal(*(uint8_t *)hva(c, 4 * MiB), 0xab);
        virtio_dev_lock(c->dev);
        c->dev->ops->reset(c->dev);
        c->dev->status = 0;
        virtio_dev_unlock(c->dev);
        /* Punched before the new driver can use them, and never again. */
        assert_int_equal(*(uint8_t *)hva(c, 4 * MiB), 0);
        assert_int_equal(state_of(c).metrics.discard_calls, 1);
        assert_int_equal(state_of(c).pending_bytes, 0);
        assert_int_equal(state_of(c).inflated_bytes, 0);
        touch(c, 4 * MiB, MiB);
        start(c, 0);
        write_actual(c, 0);
        assert_int_equal(*(uint8_t *)hva(c, 4 * MiB), 0xab);
        assert_int_equal(state_of(c).metrics.discard_calls, 1);
}

static void test_free_flushes(void **state)
{
        struct ctx *c = ctx_new(NULL);
        uint64_t before;

        start(c, 0);
        touch(c, 4 * MiB, MiB);
        inflate(c, 1024, 256);
        before = blocks(c);
        virtio_dev_detach(c->dev);
        balloon_free(c->b);
        assert_true(before - blocks(c) >= MiB);
        guest_mem_release(&c->gm);
        free(c);
        (void)state;
}

static void test_flush_timer(void **state)
{
        struct ctx *c = ctx_new(NULL);
        struct event_loop *loop;

        assert_int_equal(event_loop_new(&loop), 0);
        c->dev->loop = loop;
        assert_int_equal(balloon_set_target(c->b, 1000 * PG), 0);
        start(c, 0);
        assert_non_null(c->b->flush_timer);
        assert_false(c->b->flush_armed);
        /* A whole block leaves nothing open: the timer stays disarmed. */
        inflate(c, 1024, 512);
        assert_false(c->b->flush_armed);
        inflate(c, 1536, 100);
        assert_true(c->b->flush_armed);
        assert_int_equal(state_of(c).pending_bytes, 100 * PG);
        /* Once inflation is quiet the held pages go back, and the timer is disarmed. */
        run_loop(loop, 700);
        assert_int_equal(state_of(c).pending_bytes, 0);
        assert_int_equal(state_of(c).metrics.discard_calls, 2);
        assert_int_equal(state_of(c).metrics.deferred_pages, 100);
        assert_false(c->b->flush_armed);

        ctx_free(c);
        event_loop_free(loop);
        (void)state;
}

static void test_hostile_report_over_open_block(void **state)
{
        struct ctx *c = *state;
        uint64_t gpa = 4 * MiB;
        uint32_t len = 2 * MiB;
        struct balloon_state s;

        start(c, F(VIRTIO_BALLOON_F_REPORTING));
        /* Ballooned pages, twice (counted once), then reported as free: a lie. */
        inflate(c, 1024, 100);
        inflate(c, 1024, 100);
        inflate(c, 1536 - 10, 10); /* the end of that block, held too */
        assert_int_equal(state_of(c).pending_bytes, 110 * PG);
        post(c, 2, &gpa, &len, 1, 1);
        kick(c, 2);
        s = state_of(c);
        assert_int_equal(s.metrics.discard_calls, 1);
        assert_int_equal(s.metrics.discarded_bytes, 2 * MiB);
        assert_int_equal(s.pending_bytes, 0);
        assert_int_equal(s.open_blocks, 0);
        /* Not punched (or counted) a second time by a flush; the balloon count is the guest's. */
        write_actual(c, 0);
        s = state_of(c);
        assert_int_equal(s.metrics.discard_calls, 1);
        assert_int_equal(s.metrics.discarded_bytes, 2 * MiB);
        assert_int_equal(s.metrics.deferred_pages, 0);
        assert_int_equal(s.inflated_bytes, 210 * PG);
        assert_false(needs_reset(c));
}

/* ---- Free page reporting ---------------------------------------------------------------- */

static void test_reporting_discards(void **state)
{
        struct ctx *c = *state;
        /* Two 2 MiB blocks that touch (one discard), one in high RAM, one unaligned (skipped). */
        const uint64_t gpas[] = {6 * MiB, 4 * MiB, 4 * GiB + 2 * MiB, 2 * MiB + 100};
        const uint32_t lens[] = {2 * MiB, 2 * MiB, 2 * MiB, PG};
        uint64_t before, after;
        struct balloon_state s;

        start(c, F(VIRTIO_BALLOON_F_STATS_VQ) | F(VIRTIO_BALLOON_F_REPORTING));
        touch(c, 4 * MiB, 4 * MiB);
        touch(c, 4 * GiB + 2 * MiB, 2 * MiB);
        post(c, 3, gpas, lens, 4, 0xf);
        before = blocks(c);
        kick(c, 3);
        after = blocks(c);

        s = state_of(c);
        assert_int_equal(used_idx(c, 3), 1);
        assert_int_equal(c->queue_signals[3], 1);
        assert_int_equal(s.metrics.report_requests, 1);
        assert_int_equal(s.metrics.reported_pages, 6 * MiB / PG);
        assert_int_equal(s.metrics.discard_calls, 2);
        assert_int_equal(s.metrics.discarded_bytes, 6 * MiB);
        assert_int_equal(s.metrics.skipped_reports, 1);
        assert_int_equal(s.inflated_bytes, 0); /* reports are not the balloon */
        assert_true(before - after >= 6 * MiB);
        assert_false(needs_reset(c));
}

/* ---- Hostile drivers -------------------------------------------------------------------- */

static void test_hostile_pfn_length(void **state)
{
        struct ctx *c = *state;
        uint32_t pfns[2] = {600, 601};

        start(c, 0);
        post_data(c, 0, pfns, 6); /* not a whole number of PFNs */
        kick(c, 0);
        assert_true(needs_reset(c));
        assert_int_equal(state_of(c).metrics.malformed_events, 1);
        assert_int_equal(state_of(c).metrics.discard_calls, 0);
        assert_false(state_of(c).driver_ok);

        /* A broken device serves nothing more. */
        post_data(c, 0, pfns, 8);
        kick(c, 0);
        assert_int_equal(state_of(c).metrics.inflate_requests, 0);
}

static void test_hostile_pfn_count(void **state)
{
        struct ctx *c = *state;
        uint64_t gpa = 2 * MiB;
        uint32_t len = (BALLOON_MAX_PFNS_PER_REQUEST + 1) * 4;

        start(c, 0);
        post(c, 0, &gpa, &len, 1, 0);
        kick(c, 0);
        assert_true(needs_reset(c));
        assert_int_equal(state_of(c).metrics.discard_calls, 0);
}

static void test_hostile_pfns_outside_ram(void **state)
{
        struct ctx *c = *state;
        const uint32_t hole = 3 * GiB / PG, end = (4 * GiB + 8 * MiB) / PG;
        uint32_t pfns[] = {hole, hole + 1, end, end + 7, UINT32_MAX, 8 * MiB / PG - 1};

        start(c, 0);
        post_data(c, 0, pfns, sizeof(pfns));
        kick(c, 0);
        assert_false(needs_reset(c)); /* skipped and counted, not fatal */
        assert_int_equal(state_of(c).metrics.out_of_range_pfns, 5);
        assert_int_equal(state_of(c).pending_bytes, PG);
        write_actual(c, 1);
        assert_int_equal(state_of(c).metrics.discard_calls, 1);
        assert_int_equal(state_of(c).metrics.out_of_range_pfns, 5); /* not counted again */
        assert_int_equal(state_of(c).inflated_bytes, PG);
        assert_int_equal(used_idx(c, 0), 1);
}

static void test_hostile_stats(void **state)
{
        struct ctx *c = *state;
        uint8_t buf[15] = {0};

        start(c, F(VIRTIO_BALLOON_F_STATS_VQ));
        post_data(c, 2, buf, sizeof(buf)); /* one and a half entries */
        kick(c, 2);
        assert_true(needs_reset(c));
        assert_false(state_of(c).stats_valid);
}

static void test_hostile_stats_oversized(void **state)
{
        struct ctx *c = *state;
        uint64_t gpa = 2 * MiB;
        uint32_t len = BALLOON_STATS_MAX_BYTES + 10;

        start(c, F(VIRTIO_BALLOON_F_STATS_VQ));
        post(c, 2, &gpa, &len, 1, 0);
        kick(c, 2);
        assert_true(needs_reset(c));
        assert_false(state_of(c).stats_valid);
}

static void test_hostile_ring(void **state)
{
        struct ctx *c = *state;
        uint64_t gpa = 4 * GiB + 8 * MiB - 2; /* runs past the end of RAM */
        uint32_t len = 8;

        start(c, F(VIRTIO_BALLOON_F_REPORTING));
        post(c, 2, &gpa, &len, 1, 1);
        kick(c, 2);
        assert_true(needs_reset(c));
        assert_int_equal(state_of(c).metrics.malformed_events, 1);
        assert_int_equal(state_of(c).metrics.discard_calls, 0);
}

static void test_hostile_bad_head(void **state)
{
        struct ctx *c = *state;

        start(c, 0);
        make_avail(c, 1, QSIZE + 3);
        kick(c, 1);
        assert_true(needs_reset(c));
}

static void test_queue_without_role(void **state)
{
        struct ctx *c = *state;
        struct virtq *vq = &c->dev->queues[2];
        uint32_t pfn = 600;

        start(c, 0);
        /* A driver enabling a third queue without negotiating STATS_VQ or REPORTING. */
        vq->mem = &c->gm;
        virtq_reset(vq);
        vq->size = QSIZE;
        vq->desc_gpa = desc_gpa(2);
        vq->avail_gpa = desc_gpa(2) + 0x400;
        vq->used_gpa = desc_gpa(2) + 0x800;
        vq->enabled = true;
        post_data(c, 2, &pfn, 4);
        kick(c, 2);
        assert_true(needs_reset(c));
        assert_int_equal(state_of(c).metrics.discard_calls, 0);
        kick(c, 7); /* past the queues: ignored */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_features_offered, setup, teardown),
                cmocka_unit_test(test_roles),
                cmocka_unit_test_setup_teardown(test_inflate_discards, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deflate, setup, teardown),
                cmocka_unit_test_setup_teardown(test_inflate_many_batches, setup, teardown),
                cmocka_unit_test_setup_teardown(test_whole_blocks_punched_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_actual_reaching_target_flushes, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_reset_flushes, setup, teardown),
                cmocka_unit_test(test_free_flushes),
                cmocka_unit_test(test_flush_timer),
                cmocka_unit_test_setup_teardown(test_hostile_report_over_open_block, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_target_actual, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stats_held_and_returned, setup, teardown),
                cmocka_unit_test(test_stats_timer),
                cmocka_unit_test_setup_teardown(test_reporting_discards, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_pfn_length, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_pfn_count, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_pfns_outside_ram, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_stats, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_stats_oversized, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_ring, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_bad_head, setup, teardown),
                cmocka_unit_test_setup_teardown(test_queue_without_role, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
