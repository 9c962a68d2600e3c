/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-mem through the real virtqueue code on a real guest memfd with a hot-plug region: the
 * test plays the transport (lock, status, queue setup, a fake interrupt sink) and the driver
 * (rings and requests in boot RAM), and checks the answers, the block states, what reaches the
 * host (punched holes, PROT_NONE) and the counters.
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "tidal/guest-mem.h"
#include "tidal/log.h"
#include "virtio-mem/virtio-mem-internal.h"
#include "vmm/layout.h"
#include "vmm/vm-virtio-mem.h"

#define RAM_SIZE  (16 * MiB)
#define HP_GPA    (4 * GiB)
#define BS        (2 * MiB)
#define NR_BLOCKS 32u
#define HP_SIZE   (NR_BLOCKS * BS)
#define RING_BASE 0x10000ull /* desc at +0, avail at +1K, used at +2K */
#define DATA_GPA  0x100000ull
#define QSIZE     64

#define F_NEXT  1
#define F_WRITE 2

#define F(bit) (UINT64_C(1) << (bit))

struct ctx {
        struct guest_mem gm;
        struct virtio_mem *m;
        struct virtio_dev *dev;
        unsigned queue_signals;
        unsigned config_signals;
        uint16_t avail_idx;
        uint16_t next_desc;
        uint64_t data_next; /* bump allocator for driver buffers */
};

static void fake_signal_queue(struct virtio_dev *dev, unsigned idx)
{
        struct ctx *c = dev->transport_priv;

        c->queue_signals++;
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

static void *hva(struct ctx *c, uint64_t gpa, uint64_t len)
{
        void *p = guest_mem_ptr(&c->gm, gpa, len);

        assert_non_null(p);
        return p;
}

static uint64_t blk(uint64_t i)
{
        return HP_GPA + i * BS;
}

static struct ctx *ctx_new(void)
{
        struct ctx *c = calloc(1, sizeof(*c));

        assert_non_null(c);
        assert_int_equal(guest_mem_plan(&c->gm, RAM_SIZE, 3 * GiB), 0);
        assert_int_equal(guest_mem_plan_hotplug(&c->gm, HP_GPA, HP_SIZE, BS), 0);
        assert_int_equal(guest_mem_map(&c->gm, "test-virtio-mem"), 0);
        assert_int_equal(virtio_mem_new(NULL, &c->gm, &c->m), 0);
        c->dev = virtio_mem_virtio_dev(c->m);
        assert_int_equal(virtio_dev_attach(c->dev, &fake_transport, c, &c->gm, NULL), 0);
        c->data_next = DATA_GPA;
        return c;
}

static void ctx_free(struct ctx *c)
{
        virtio_dev_detach(c->dev);
        virtio_mem_free(c->m);
        guest_mem_release(&c->gm);
        free(c);
}

static int setup(void **state)
{
        log_set_level(LOG_LEVEL_ERROR); /* the hostile cases warn on purpose */
        *state = ctx_new();
        return 0;
}

static int teardown(void **state)
{
        ctx_free(*state);
        return 0;
}

/* Feature negotiation, queue 0 set up, DRIVER_OK: what Linux does. */
static void start(struct ctx *c)
{
        struct virtio_dev *dev = c->dev;
        struct virtq *vq = &dev->queues[0];

        dev->driver_features = F(VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE) | F(VIRTIO_F_VERSION_1);
        assert_true(dev->ops->features_ok(dev, dev->driver_features));
        dev->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
        vq->mem = &c->gm;
        memset(hva(c, RING_BASE, 0x1000), 0, 0x1000); /* a new driver starts with fresh rings */
        virtq_reset(vq);
        vq->size = QSIZE;
        vq->desc_gpa = RING_BASE;
        vq->avail_gpa = RING_BASE + 0x400;
        vq->used_gpa = RING_BASE + 0x800;
        assert_int_equal(virtq_validate_rings(vq), 0);
        vq->enabled = true;
        c->avail_idx = c->next_desc = 0;
        virtio_dev_lock(dev);
        assert_int_equal(dev->ops->activate(dev, dev->driver_features), 0);
        dev->status |= VIRTIO_STATUS_DRIVER_OK;
        virtio_dev_unlock(dev);
}

static int setup_started(void **state)
{
        setup(state);
        start(*state);
        return 0;
}

/* A device reset by the driver, as the transport does it. */
static void reset(struct ctx *c)
{
        virtio_dev_lock(c->dev);
        c->dev->ops->reset(c->dev);
        virtq_reset(&c->dev->queues[0]);
        c->dev->status = 0;
        c->dev->driver_features = 0;
        virtio_dev_unlock(c->dev);
}

static void set_desc(struct ctx *c, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
        uint8_t *d = hva(c, RING_BASE + 16ull * i, 16);

        memcpy(d, &addr, 8);
        memcpy(d + 8, &len, 4);
        memcpy(d + 12, &flags, 2);
        memcpy(d + 14, &next, 2);
}

/* Queues one chain of n buffers (writable ones flagged in write_mask). */
static void post(struct ctx *c, const uint64_t *gpas, const uint32_t *lens, unsigned n,
                 uint32_t write_mask)
{
        uint16_t head = c->next_desc, *avail = hva(c, RING_BASE + 0x400, 6 + 2 * QSIZE);

        for (unsigned i = 0; i < n; i++) {
                uint16_t slot = (head + i) % QSIZE, next = (head + i + 1) % QSIZE;
                uint16_t flags = (i + 1 < n ? F_NEXT : 0) | (write_mask >> i & 1 ? F_WRITE : 0);

                set_desc(c, slot, gpas[i], lens[i], flags, next);
        }
        c->next_desc = (head + n) % QSIZE;
        avail[2 + c->avail_idx % QSIZE] = head;
        avail[1] = ++c->avail_idx;
}

static uint16_t used_idx(struct ctx *c)
{
        return ((uint16_t *)hva(c, RING_BASE + 0x800, 4))[1];
}

static uint32_t last_used_len(struct ctx *c)
{
        uint32_t *elem = hva(c, RING_BASE + 0x800 + 4 + 8 * ((used_idx(c) - 1) % QSIZE), 8);

        return elem[1];
}

static uint64_t alloc_data(struct ctx *c, uint32_t len)
{
        uint64_t gpa = c->data_next;

        c->data_next = ALIGN_UP(gpa + len + 1, 64);
        assert_true(c->data_next < 2 * MiB);
        return gpa;
}

static void encode_req(uint8_t raw[VIRTIO_MEM_REQ_SIZE], uint16_t type, uint64_t addr,
                       uint16_t nb_blocks)
{
        uint16_t t = htole16(type), nb = htole16(nb_blocks);
        uint64_t a = htole64(addr);

        /* Padding filled with junk: the device must ignore it. */
        memset(raw, 0xee, VIRTIO_MEM_REQ_SIZE);
        memcpy(raw, &t, 2);
        memcpy(raw + 8, &a, 8);
        memcpy(raw + 16, &nb, 2);
}

static void kick(struct ctx *c)
{
        virtio_dev_lock(c->dev);
        c->dev->ops->queue_notify(c->dev, 0);
        virtio_dev_unlock(c->dev);
}

/* Sends one request as Linux does (24 readable bytes, 10 writable); returns the answer. */
static uint16_t request(struct ctx *c, uint16_t type, uint64_t addr, uint16_t nb, uint16_t *state)
{
        uint64_t gpas[2] = {alloc_data(c, VIRTIO_MEM_REQ_SIZE), alloc_data(c, 16)};
        uint32_t lens[2] = {VIRTIO_MEM_REQ_SIZE, VIRTIO_MEM_RESP_SIZE};
        uint16_t before = used_idx(c), resp[5];
        uint8_t *out;

        encode_req(hva(c, gpas[0], VIRTIO_MEM_REQ_SIZE), type, addr, nb);
        out = hva(c, gpas[1], 16);
        memset(out, 0xff, 16);
        post(c, gpas, lens, 2, 2);
        kick(c);
        assert_int_equal(used_idx(c), (uint16_t)(before + 1));
        assert_int_equal(last_used_len(c), VIRTIO_MEM_RESP_SIZE);
        assert_int_equal(out[10], 0xff); /* nothing past the 10-byte response */
        memcpy(resp, out, sizeof(resp));
        assert_int_equal(resp[1] | resp[2] | resp[3], 0); /* padding zeroed */
        if (state)
                *state = le16toh(resp[4]);
        return le16toh(resp[0]);
}

static uint16_t plug(struct ctx *c, uint64_t first, uint16_t nb)
{
        return request(c, VIRTIO_MEM_REQ_PLUG, blk(first), nb, NULL);
}

static uint16_t unplug(struct ctx *c, uint64_t first, uint16_t nb)
{
        return request(c, VIRTIO_MEM_REQ_UNPLUG, blk(first), nb, NULL);
}

static struct virtio_mem_state state_of(struct ctx *c)
{
        struct virtio_mem_state s;

        virtio_mem_get_state(c->m, &s);
        return s;
}

static bool needs_reset(struct ctx *c)
{
        return c->dev->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET;
}

static uint64_t memfd_bytes(struct ctx *c)
{
        struct stat st;

        assert_int_equal(fstat(c->gm.memfd, &st), 0);
        return (uint64_t)st.st_blocks * 512;
}

static uint64_t read_config(struct ctx *c, uint32_t off, uint32_t len)
{
        uint64_t v = 0;

        virtio_dev_lock(c->dev);
        c->dev->ops->read_config(c->dev, off, &v, len);
        virtio_dev_unlock(c->dev);
        return le64toh(v);
}

static void set_requested(struct ctx *c, uint64_t bytes)
{
        assert_int_equal(virtio_mem_set_requested(c->m, bytes), 0);
}

/* ---- Device, features, config space -------------------------------------------------------- */

static void test_device(void **state)
{
        struct ctx *c = *state;
        const struct virtio_dev_ops *ops = c->dev->ops;
        uint64_t f = ops->features(c->dev);
        struct virtio_mem_options opts = {.requested_size = HP_SIZE + 1};
        struct guest_mem plain;
        struct virtio_mem *m;

        assert_int_equal(ops->device_id, 24);
        assert_int_equal(ops->nr_queues, 1);
        assert_true(ops->queue_max_size >= 1);
        assert_int_equal(ops->config_size, 56);
        assert_true(f & F(VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE));
        assert_false(f & F(VIRTIO_MEM_F_ACPI_PXM));
        /* A driver that may read unplugged memory is refused: that memory is PROT_NONE. */
        assert_false(ops->features_ok(c->dev, F(VIRTIO_F_VERSION_1)));
        assert_true(ops->features_ok(c->dev, F(VIRTIO_F_VERSION_1) |
                                                     F(VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE)));

        /* No hot-plug region, the wrong block size, more requested than the region. */
        assert_int_equal(guest_mem_init(&plain, "t", RAM_SIZE, 3 * GiB), 0);
        assert_int_equal(virtio_mem_new(NULL, &plain, &m), -EINVAL);
        guest_mem_release(&plain);
        assert_int_equal(virtio_mem_new(NULL, NULL, &m), -EINVAL);
        assert_int_equal(virtio_mem_new(&opts, &c->gm, &m), -EINVAL);
        assert_int_equal(guest_mem_plan(&plain, RAM_SIZE, 3 * GiB), 0);
        assert_int_equal(guest_mem_plan_hotplug(&plain, HP_GPA, HP_SIZE, 4 * MiB), 0);
        assert_int_equal(virtio_mem_new(NULL, &plain, &m), -EINVAL);
        /* A starting request is rounded up to blocks. */
        opts.requested_size = 3 * MiB;
        assert_int_equal(virtio_mem_new(&opts, &c->gm, &m), 0);
        virtio_mem_get_state(m, &(struct virtio_mem_state){0});
        assert_int_equal(m->requested_size, 4 * MiB);
        virtio_mem_free(m);
        virtio_mem_free(NULL);
}

static void test_config_space(void **state)
{
        struct ctx *c = *state;
        uint8_t junk[8];

        set_requested(c, 6 * MiB);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_BLOCK_SIZE, 8), BS);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_NODE_ID, 2), 0);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_ADDR, 8), HP_GPA);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_REGION_SIZE, 8), HP_SIZE);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_USABLE_SIZE, 8), HP_SIZE);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_PLUGGED, 8), 0);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_REQUESTED, 8), 6 * MiB);
        /* Narrower accesses see the same bytes (little endian). */
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_ADDR + 4, 4), HP_GPA >> 32);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_ADDR, 4), 0);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_BLOCK_SIZE + 2, 1), 0x20);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_NODE_ID + 2, 4), 0); /* padding */

        start(c);
        assert_int_equal(plug(c, 0, 3), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_PLUGGED, 8), 6 * MiB);
        /* Every field is read-only for the driver: writes change nothing, at any width. */
        memset(junk, 0x55, sizeof(junk));
        virtio_dev_lock(c->dev);
        for (uint32_t off = 0; off + 8 <= VIRTIO_MEM_CONFIG_SIZE; off += 4)
                c->dev->ops->write_config(c->dev, off, junk, off % 8 ? 4 : 8);
        c->dev->ops->write_config(c->dev, VIRTIO_MEM_CONFIG_SIZE - 1, junk, 1);
        virtio_dev_unlock(c->dev);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_BLOCK_SIZE, 8), BS);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_ADDR, 8), HP_GPA);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_REGION_SIZE, 8), HP_SIZE);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_PLUGGED, 8), 6 * MiB);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_REQUESTED, 8), 6 * MiB);
        assert_int_equal(state_of(c).plugged_size, 6 * MiB);
        assert_false(needs_reset(c));
}

static void test_set_requested(void **state)
{
        struct ctx *c = *state;

        /* Before DRIVER_OK the driver reads it at start: no interrupt. */
        set_requested(c, 10 * MiB);
        assert_int_equal(c->config_signals, 0);
        start(c);
        set_requested(c, 10 * MiB);
        assert_int_equal(c->config_signals, 0); /* unchanged */
        set_requested(c, 11 * MiB);
        assert_int_equal(c->config_signals, 1);
        assert_int_equal(state_of(c).requested_size, 12 * MiB); /* rounded up to blocks */
        set_requested(c, 12 * MiB);
        assert_int_equal(c->config_signals, 1);
        set_requested(c, HP_SIZE);
        assert_int_equal(state_of(c).requested_size, HP_SIZE);
        assert_int_equal(virtio_mem_set_requested(c->m, HP_SIZE + 1), -ERANGE);
        assert_int_equal(virtio_mem_set_requested(c->m, UINT64_MAX), -ERANGE);
        assert_int_equal(state_of(c).requested_size, HP_SIZE);
        set_requested(c, 0);
        assert_int_equal(c->config_signals, 3);
        assert_int_equal(state_of(c).requested_size, 0);
}

/* ---- Requests ----------------------------------------------------------------------------- */

static void test_plug_unplug(void **state)
{
        struct ctx *c = *state;
        struct virtio_mem_state s;
        uint64_t before = memfd_bytes(c);
        uint8_t *p;

        set_requested(c, 8 * MiB);
        assert_int_equal(plug(c, 4, 2), VIRTIO_MEM_RESP_ACK);
        assert_true(c->queue_signals > 0);
        s = state_of(c);
        assert_int_equal(s.plugged_size, 4 * MiB);
        assert_int_equal(s.metrics.plug_requests, 1);
        assert_int_equal(s.metrics.plugged_blocks, 2);
        /* Plugged blocks are RAM for devices (and the guest) now. */
        p = hva(c, blk(4), 2 * BS);
        memset(p, 0xab, 2 * BS);
        assert_true(memfd_bytes(c) >= before + 4 * MiB);
        assert_null(guest_mem_ptr(&c->gm, blk(6), 1));

        assert_int_equal(unplug(c, 4, 2), VIRTIO_MEM_RESP_ACK);
        s = state_of(c);
        assert_int_equal(s.plugged_size, 0);
        assert_int_equal(s.metrics.unplug_requests, 1);
        assert_int_equal(s.metrics.unplugged_blocks, 2);
        assert_int_equal(s.metrics.discard_calls, 1);
        assert_int_equal(s.metrics.discarded_bytes, 4 * MiB);
        assert_int_equal(s.metrics.discard_errors, 0);
        assert_true(memfd_bytes(c) <= before + 64 * KiB);
        assert_null(guest_mem_ptr(&c->gm, blk(4), 1));
        /* Plugged again, it reads zeroes: nothing of the old contents is left. */
        assert_int_equal(plug(c, 4, 1), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(((uint8_t *)hva(c, blk(4), BS))[BS - 1], 0);
        assert_int_equal(state_of(c).metrics.errors + state_of(c).metrics.nacks, 0);
        assert_false(needs_reset(c));
}

static void test_range_errors(void **state)
{
        struct ctx *c = *state;
        static const uint16_t types[] = {VIRTIO_MEM_REQ_PLUG, VIRTIO_MEM_REQ_UNPLUG,
                                         VIRTIO_MEM_REQ_STATE};
        static const struct {
                uint64_t addr;
                uint16_t nb;
        } bad[] = {
                {HP_GPA + 4096, 1},                     /* misaligned */
                {HP_GPA + BS / 2, 1},                   /* misaligned by half a block */
                {HP_GPA, 0},                            /* no blocks */
                {HP_GPA - BS, 1},                       /* below the region */
                {HP_GPA - BS, 2},                       /* straddling its start */
                {HP_GPA + HP_SIZE, 1},                  /* right after it */
                {HP_GPA + HP_SIZE - BS, 2},             /* straddling its end */
                {HP_GPA, NR_BLOCKS + 1},                /* one block too many */
                {HP_GPA, UINT16_MAX},                   /* far too many */
                {0, 1},                                 /* boot RAM */
                {UINT64_MAX - BS + 1, 1},               /* aligned, at the top */
                {UINT64_MAX - BS + 1, UINT16_MAX},      /* addr + size wraps */
                {(UINT64_MAX - BS + 1) - HP_GPA, 1000}, /* offset arithmetic near the top */
        };

        set_requested(c, HP_SIZE);
        for (size_t t = 0; t < ARRAY_SIZE(types); t++)
                for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                        assert_int_equal(request(c, types[t], bad[i].addr, bad[i].nb, NULL),
                                         VIRTIO_MEM_RESP_ERROR);
        assert_int_equal(state_of(c).metrics.errors, 3 * ARRAY_SIZE(bad));
        assert_int_equal(state_of(c).plugged_size, 0);
        /* The whole region at once is fine. */
        assert_int_equal(plug(c, 0, NR_BLOCKS), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(unplug(c, 0, NR_BLOCKS), VIRTIO_MEM_RESP_ACK);
        assert_false(needs_reset(c));
}

static void test_plug_rules(void **state)
{
        struct ctx *c = *state;
        struct virtio_mem_state s;

        /* Nothing requested: NACK, not ERROR. */
        assert_int_equal(plug(c, 0, 1), VIRTIO_MEM_RESP_NACK);
        set_requested(c, 6 * MiB);
        assert_int_equal(plug(c, 0, 4), VIRTIO_MEM_RESP_NACK); /* beyond requested */
        assert_int_equal(plug(c, 0, 2), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(plug(c, 1, 1), VIRTIO_MEM_RESP_ERROR); /* already plugged */
        assert_int_equal(plug(c, 2, 2), VIRTIO_MEM_RESP_NACK);  /* one block too many */
        assert_int_equal(plug(c, 2, 1), VIRTIO_MEM_RESP_ACK);   /* exactly requested */
        assert_int_equal(plug(c, 3, 1), VIRTIO_MEM_RESP_NACK);  /* at requested already */
        set_requested(c, 10 * MiB);
        assert_int_equal(plug(c, 2, 2), VIRTIO_MEM_RESP_ERROR); /* partly plugged */
        /* The VMM asks for less: plugging stops, unplugging is what the driver should do. */
        set_requested(c, 2 * MiB);
        assert_int_equal(plug(c, 10, 1), VIRTIO_MEM_RESP_NACK);
        assert_int_equal(unplug(c, 1, 2), VIRTIO_MEM_RESP_ACK);
        s = state_of(c);
        assert_int_equal(s.plugged_size, 2 * MiB);
        assert_int_equal(s.metrics.nacks, 5);
        assert_int_equal(s.metrics.errors, 2);
        assert_int_equal(s.metrics.plug_requests, 9);
        assert_false(needs_reset(c));
}

static void test_unplug_rules(void **state)
{
        struct ctx *c = *state;

        set_requested(c, 8 * MiB);
        assert_int_equal(unplug(c, 0, 1), VIRTIO_MEM_RESP_ERROR); /* never plugged */
        assert_int_equal(plug(c, 2, 2), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(unplug(c, 1, 2), VIRTIO_MEM_RESP_ERROR); /* partly plugged */
        assert_int_equal(unplug(c, 3, 2), VIRTIO_MEM_RESP_ERROR);
        assert_int_equal(unplug(c, 3, 1), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(unplug(c, 3, 1), VIRTIO_MEM_RESP_ERROR); /* again */
        assert_int_equal(state_of(c).plugged_size, 2 * MiB);
        assert_non_null(guest_mem_ptr(&c->gm, blk(2), BS));
        assert_int_equal(state_of(c).metrics.errors, 4);
        assert_int_equal(state_of(c).metrics.discard_calls, 1);
}

/* UNPLUG_ALL frees each contiguous run of plugged blocks with one discard. */
static void test_unplug_all_coalesces(void **state)
{
        struct ctx *c = *state;
        static const struct {
                uint64_t first;
                uint16_t nb;
        } runs[] = {{0, 3}, {5, 1}, {7, 2}, {30, 2}};
        uint64_t before = memfd_bytes(c), touched = 0;
        struct virtio_mem_state s;

        set_requested(c, HP_SIZE);
        for (size_t i = 0; i < ARRAY_SIZE(runs); i++) {
                assert_int_equal(plug(c, runs[i].first, runs[i].nb), VIRTIO_MEM_RESP_ACK);
                memset(hva(c, blk(runs[i].first), runs[i].nb * BS), 1, runs[i].nb * BS);
                touched += runs[i].nb * BS;
        }
        assert_true(memfd_bytes(c) >= before + touched);
        assert_int_equal(request(c, VIRTIO_MEM_REQ_UNPLUG_ALL, 0xdeadbeef, 0, NULL),
                         VIRTIO_MEM_RESP_ACK);
        s = state_of(c);
        assert_int_equal(s.plugged_size, 0);
        assert_int_equal(s.metrics.unplug_all_requests, 1);
        assert_int_equal(s.metrics.discard_calls, ARRAY_SIZE(runs));
        assert_int_equal(s.metrics.discarded_bytes, touched);
        assert_int_equal(s.metrics.unplugged_blocks, touched / BS);
        assert_true(memfd_bytes(c) <= before + 64 * KiB);
        for (uint64_t b = 0; b < NR_BLOCKS; b++)
                assert_null(guest_mem_ptr(&c->gm, blk(b), 1));
        /* With nothing plugged: ACK, no discard. */
        assert_int_equal(request(c, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0, NULL), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(state_of(c).metrics.discard_calls, ARRAY_SIZE(runs));
        /* The whole region plugged is one run. */
        assert_int_equal(plug(c, 0, NR_BLOCKS), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(request(c, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0, NULL), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(state_of(c).metrics.discard_calls, ARRAY_SIZE(runs) + 1);
}

static void test_state(void **state)
{
        struct ctx *c = *state;
        uint16_t st = 99;

        set_requested(c, 8 * MiB);
        assert_int_equal(plug(c, 4, 2), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(plug(c, 31, 1), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(request(c, VIRTIO_MEM_REQ_STATE, blk(4), 2, &st), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(st, VIRTIO_MEM_STATE_PLUGGED);
        assert_int_equal(request(c, VIRTIO_MEM_REQ_STATE, blk(0), 4, &st), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(st, VIRTIO_MEM_STATE_UNPLUGGED);
        assert_int_equal(request(c, VIRTIO_MEM_REQ_STATE, blk(3), 2, &st), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(st, VIRTIO_MEM_STATE_MIXED);
        assert_int_equal(request(c, VIRTIO_MEM_REQ_STATE, blk(5), 2, &st), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(st, VIRTIO_MEM_STATE_MIXED);
        assert_int_equal(request(c, VIRTIO_MEM_REQ_STATE, blk(0), NR_BLOCKS, &st),
                         VIRTIO_MEM_RESP_ACK);
        assert_int_equal(st, VIRTIO_MEM_STATE_MIXED);
        assert_int_equal(request(c, VIRTIO_MEM_REQ_STATE, blk(31), 1, &st), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(st, VIRTIO_MEM_STATE_PLUGGED);
        assert_int_equal(state_of(c).metrics.state_requests, 6);
        /* STATE changes nothing. */
        assert_int_equal(state_of(c).plugged_size, 6 * MiB);
}

static void test_unknown_type(void **state)
{
        struct ctx *c = *state;

        assert_int_equal(request(c, 4, HP_GPA, 1, NULL), VIRTIO_MEM_RESP_ERROR);
        assert_int_equal(request(c, UINT16_MAX, HP_GPA, 1, NULL), VIRTIO_MEM_RESP_ERROR);
        assert_int_equal(state_of(c).metrics.errors, 2);
        assert_false(needs_reset(c));
        assert_int_equal(state_of(c).driver, VIRTIO_MEM_DRIVER_RUNNING);
}

/* The request and the response may each be split over several descriptors. */
static void test_split_buffers(void **state)
{
        struct ctx *c = *state;
        uint64_t gpas[4] = {alloc_data(c, 8), alloc_data(c, 16), alloc_data(c, 3),
                            alloc_data(c, 7)};
        uint32_t lens[4] = {8, 16, 3, 7};
        uint8_t raw[VIRTIO_MEM_REQ_SIZE], out[10];
        uint16_t type;

        set_requested(c, 2 * MiB);
        encode_req(raw, VIRTIO_MEM_REQ_PLUG, blk(9), 1);
        memcpy(hva(c, gpas[0], 8), raw, 8);
        memcpy(hva(c, gpas[1], 16), raw + 8, 16);
        post(c, gpas, lens, 4, 0xc);
        kick(c);
        assert_int_equal(last_used_len(c), VIRTIO_MEM_RESP_SIZE);
        memcpy(out, hva(c, gpas[2], 3), 3);
        memcpy(out + 3, hva(c, gpas[3], 7), 7);
        memcpy(&type, out, 2);
        assert_int_equal(le16toh(type), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(state_of(c).plugged_size, 2 * MiB);
        /* More readable bytes than 24 are ignored. */
        gpas[0] = alloc_data(c, 64);
        gpas[1] = alloc_data(c, 10);
        lens[0] = 64;
        lens[1] = 10;
        encode_req(hva(c, gpas[0], 64), VIRTIO_MEM_REQ_UNPLUG, blk(9), 1);
        post(c, gpas, lens, 2, 2);
        kick(c);
        assert_int_equal(state_of(c).plugged_size, 0);
        assert_false(needs_reset(c));
}

/* ---- Hostile chains ----------------------------------------------------------------------- */

static void post_raw(struct ctx *c, uint32_t req_len, uint32_t resp_len)
{
        uint64_t gpas[2] = {alloc_data(c, 32), alloc_data(c, 32)};
        uint32_t lens[2] = {req_len, resp_len};

        encode_req(hva(c, gpas[0], VIRTIO_MEM_REQ_SIZE), VIRTIO_MEM_REQ_STATE, HP_GPA, 1);
        if (resp_len)
                post(c, gpas, lens, 2, 2);
        else
                post(c, gpas, lens, 1, 0);
}

static void test_malformed_chains(void **state)
{
        static const struct {
                uint32_t req_len, resp_len;
        } cases[] = {{23, 10}, {0, 10}, {24, 9}, {24, 0}, {2, 0}};

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct ctx *c = ctx_new();
                uint16_t before;

                start(c);
                before = used_idx(c);
                post_raw(c, cases[i].req_len, cases[i].resp_len);
                kick(c);
                assert_true(needs_reset(c));
                assert_int_equal(used_idx(c), before);
                assert_int_equal(state_of(c).metrics.malformed_events, 1);
                assert_int_equal(state_of(c).driver, VIRTIO_MEM_DRIVER_NEEDS_RESET);
                /* A broken device serves nothing until it is reset. */
                kick(c);
                assert_int_equal(state_of(c).metrics.malformed_events, 1);
                reset(c);
                assert_int_equal(state_of(c).driver, VIRTIO_MEM_DRIVER_NONE);
                start(c);
                assert_int_equal(request(c, VIRTIO_MEM_REQ_STATE, HP_GPA, 1, NULL),
                                 VIRTIO_MEM_RESP_ACK);
                ctx_free(c);
        }
}

/*
 * The guest puts the response buffer inside the very block it asks to unplug: by the time the
 * device answers, that memory is PROT_NONE. Writing the answer would crash tidal; the device
 * must notice and give up on the chain instead.
 */
static void test_response_in_unplugged_block(void **state)
{
        struct ctx *c = *state;
        uint64_t gpas[2] = {alloc_data(c, VIRTIO_MEM_REQ_SIZE), blk(3) + 100};
        uint32_t lens[2] = {VIRTIO_MEM_REQ_SIZE, VIRTIO_MEM_RESP_SIZE};
        uint16_t before;

        set_requested(c, 4 * MiB);
        assert_int_equal(plug(c, 3, 1), VIRTIO_MEM_RESP_ACK);
        before = used_idx(c);
        encode_req(hva(c, gpas[0], VIRTIO_MEM_REQ_SIZE), VIRTIO_MEM_REQ_UNPLUG, blk(3), 1);
        post(c, gpas, lens, 2, 2);
        kick(c); /* must not fault */
        assert_true(needs_reset(c));
        assert_int_equal(used_idx(c), before);
        assert_int_equal(state_of(c).plugged_size, 0); /* the unplug itself happened */
        assert_null(guest_mem_ptr(&c->gm, blk(3), 1));
}

/* Rings in unplugged hot-plug memory are refused like rings outside RAM. */
static void test_ring_in_unplugged_block(void **state)
{
        struct ctx *c = *state;
        struct virtq *vq = &c->dev->queues[0];

        vq->desc_gpa = blk(0);
        assert_int_equal(virtq_validate_rings(vq), -EINVAL);
        vq->desc_gpa = RING_BASE;
        set_requested(c, 2 * MiB);
        assert_int_equal(plug(c, 0, 1), VIRTIO_MEM_RESP_ACK);
        vq->desc_gpa = blk(0);
        assert_int_equal(virtq_validate_rings(vq), 0);
        vq->desc_gpa = RING_BASE;
        /* A request read from a block that is then unplugged by an earlier request. */
        assert_int_equal(unplug(c, 0, 1), VIRTIO_MEM_RESP_ACK);
        {
                uint64_t gpas[2] = {blk(0), alloc_data(c, 10)};
                uint32_t lens[2] = {VIRTIO_MEM_REQ_SIZE, VIRTIO_MEM_RESP_SIZE};

                post(c, gpas, lens, 2, 2);
                kick(c);
                assert_true(needs_reset(c));
        }
}

/* ---- Reset -------------------------------------------------------------------------------- */

static void test_reset_keeps_blocks(void **state)
{
        struct ctx *c = *state;
        unsigned signals;

        set_requested(c, 8 * MiB);
        assert_int_equal(plug(c, 0, 2), VIRTIO_MEM_RESP_ACK);
        memset(hva(c, blk(0), BS), 0x77, BS);
        reset(c);
        /* Blocks and their contents survive a device reset (5.15.5.1); so does the request. */
        assert_int_equal(state_of(c).plugged_size, 4 * MiB);
        assert_int_equal(state_of(c).requested_size, 8 * MiB);
        assert_int_equal(state_of(c).driver, VIRTIO_MEM_DRIVER_NONE);
        assert_int_equal(((uint8_t *)hva(c, blk(0), BS))[0], 0x77);
        assert_int_equal(read_config(c, VIRTIO_MEM_CONFIG_PLUGGED, 8), 4 * MiB);
        /* No config interrupt while no driver runs. */
        signals = c->config_signals;
        set_requested(c, 2 * MiB);
        assert_int_equal(c->config_signals, signals);
        /* Requests are not served before DRIVER_OK. */
        {
                uint64_t gpas[2] = {alloc_data(c, 24), alloc_data(c, 10)};
                uint32_t lens[2] = {24, 10};
                uint16_t before = used_idx(c);

                c->dev->queues[0].enabled = true;
                encode_req(hva(c, gpas[0], 24), VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0);
                post(c, gpas, lens, 2, 2);
                kick(c);
                assert_int_equal(used_idx(c), before);
        }
        /* A new driver finds memory plugged and unplugs it all first, as Linux does. */
        start(c);
        assert_int_equal(request(c, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0, NULL), VIRTIO_MEM_RESP_ACK);
        assert_int_equal(state_of(c).plugged_size, 0);
}

/* ---- Metrics ------------------------------------------------------------------------------ */

#define MS 1000000ull

static void pause_ms(unsigned ms)
{
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(ms * MS)};

        while (nanosleep(&ts, &ts) < 0)
                ;
}

/* The behind clocks run exactly while a running driver has plugging or unplugging to do. */
static void test_behind_clocks(void **state)
{
        struct ctx *c = *state;
        struct virtio_mem_state s = state_of(c);
        uint64_t plug_ns, unplug_ns;

        assert_int_equal(s.metrics.plug_behind_ns + s.metrics.unplug_behind_ns, 0);
        set_requested(c, 4 * MiB);
        pause_ms(2);
        assert_true(state_of(c).metrics.plug_behind_ns >= 2 * MS); /* counted while running */
        assert_int_equal(plug(c, 0, 2), VIRTIO_MEM_RESP_ACK);
        plug_ns = state_of(c).metrics.plug_behind_ns;
        pause_ms(2);
        assert_int_equal(state_of(c).metrics.plug_behind_ns, plug_ns); /* caught up: stopped */

        set_requested(c, 0);
        pause_ms(2);
        assert_int_equal(unplug(c, 1, 1), VIRTIO_MEM_RESP_ACK); /* 2 MiB still to go */
        pause_ms(2);
        assert_int_equal(unplug(c, 0, 1), VIRTIO_MEM_RESP_ACK);
        s = state_of(c);
        unplug_ns = s.metrics.unplug_behind_ns;
        assert_true(unplug_ns >= 4 * MS);
        assert_int_equal(s.metrics.plug_behind_ns, plug_ns);
        /* Every request was served while behind: the host's share is part of those clocks. */
        assert_true(s.metrics.request_ns > 0);
        assert_true(s.metrics.request_ns <= plug_ns + unplug_ns);

        /* No driver, no clock: a reset stops it, and so does asking while none runs. */
        set_requested(c, 4 * MiB);
        reset(c);
        s = state_of(c);
        pause_ms(2);
        assert_int_equal(state_of(c).metrics.plug_behind_ns, s.metrics.plug_behind_ns);
        set_requested(c, 6 * MiB);
        pause_ms(2);
        assert_int_equal(state_of(c).metrics.plug_behind_ns, s.metrics.plug_behind_ns);
        assert_int_equal(state_of(c).metrics.unplug_behind_ns, unplug_ns);
}

static void test_get_state(void **state)
{
        struct ctx *c = *state;
        struct virtio_mem_state s = state_of(c);

        assert_int_equal(s.driver, VIRTIO_MEM_DRIVER_NONE);
        assert_int_equal(s.block_size, BS);
        assert_int_equal(s.addr, HP_GPA);
        assert_int_equal(s.region_size, HP_SIZE);
        assert_int_equal(s.usable_region_size, HP_SIZE);
        assert_int_equal(s.requested_size, 0);
        assert_int_equal(s.plugged_size, 0);
        start(c);
        s = state_of(c);
        assert_int_equal(s.driver, VIRTIO_MEM_DRIVER_RUNNING);
        assert_int_equal(s.features,
                         F(VIRTIO_F_VERSION_1) | F(VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE));
}

/* ---- The VM's side: region size and place, kernel command line ----------------------------- */

static void test_vm_wiring(void **state)
{
        struct vm_config cfg = {.cmdline = "console=ttyS0", .memory = 256 * MiB};
        char *s;

        /* Static memory: no region, the command line untouched. */
        cfg.mem_ceiling = 4 * GiB;
        assert_int_equal(vm_hotplug_region_size(&cfg), 0);
        s = vm_guest_cmdline(&cfg);
        assert_string_equal(s, "console=ttyS0");
        free(s);

        cfg.mem.dynamic = true;
        assert_int_equal(vm_hotplug_region_size(&cfg), 3840 * MiB);
        cfg.mem_ceiling = 356 * MiB; /* rounded up to Linux's 128 MiB memory blocks */
        assert_int_equal(vm_hotplug_region_size(&cfg), 128 * MiB);
        s = vm_guest_cmdline(&cfg);
        assert_string_equal(s, "console=ttyS0 memhp_default_state=online "
                               "memory_hotplug.online_policy=auto-movable");
        free(s);
        cfg.cmdline = "";
        s = vm_guest_cmdline(&cfg);
        assert_string_equal(s,
                            "memhp_default_state=online memory_hotplug.online_policy=auto-movable");
        free(s);
        /* The user's choice stands. */
        cfg.cmdline = "quiet memhp_default_state=online";
        s = vm_guest_cmdline(&cfg);
        assert_string_equal(s, "quiet memhp_default_state=online");
        free(s);
        /* No room above startup: no region, nothing added. */
        cfg.mem_ceiling = cfg.memory;
        assert_int_equal(vm_hotplug_region_size(&cfg), 0);
        cfg.cmdline = "console=ttyS0";
        s = vm_guest_cmdline(&cfg);
        assert_string_equal(s, "console=ttyS0");
        free(s);

        /* Above all RAM and the PCI hole, 1 GiB aligned. */
        assert_int_equal(LAYOUT_HOTPLUG_BASE(256 * MiB), 4 * GiB);
        assert_int_equal(LAYOUT_HOTPLUG_BASE(3 * GiB), 4 * GiB);
        assert_int_equal(LAYOUT_HOTPLUG_BASE(4 * GiB + 512 * MiB), 5 * GiB);
        assert_int_equal(LAYOUT_HOTPLUG_BASE(5 * GiB), 5 * GiB);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_device, setup, teardown),
                cmocka_unit_test_setup_teardown(test_config_space, setup, teardown),
                cmocka_unit_test_setup_teardown(test_set_requested, setup, teardown),
                cmocka_unit_test_setup_teardown(test_plug_unplug, setup_started, teardown),
                cmocka_unit_test_setup_teardown(test_range_errors, setup_started, teardown),
                cmocka_unit_test_setup_teardown(test_plug_rules, setup_started, teardown),
                cmocka_unit_test_setup_teardown(test_unplug_rules, setup_started, teardown),
                cmocka_unit_test_setup_teardown(test_unplug_all_coalesces, setup_started, teardown),
                cmocka_unit_test_setup_teardown(test_state, setup_started, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_type, setup_started, teardown),
                cmocka_unit_test_setup_teardown(test_split_buffers, setup_started, teardown),
                cmocka_unit_test(test_malformed_chains),
                cmocka_unit_test_setup_teardown(test_response_in_unplugged_block, setup_started,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_ring_in_unplugged_block, setup_started,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_reset_keeps_blocks, setup_started, teardown),
                cmocka_unit_test_setup_teardown(test_behind_clocks, setup_started, teardown),
                cmocka_unit_test_setup_teardown(test_get_state, setup, teardown),
                cmocka_unit_test(test_vm_wiring),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
