/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: the balloon's queue handlers against whatever a hostile driver can put in
 * guest RAM. The input is a small header (negotiated features, queue size, a script of kicks,
 * stats ticks, config writes and target changes) followed by an image of the first 64 KiB of
 * guest RAM, where the rings of all four queues live; descriptors may point anywhere. Guest RAM
 * is a real memfd split around a "PCI hole", so discards really punch holes.
 *
 * Build and run: see "Fuzzing" in docs/balloon.md.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tidal/log.h"
#include "virtio-balloon/balloon-internal.h"

#define RAM_SIZE   (4 * MiB) /* [0, 2 MiB) and [4 GiB, 4 GiB + 2 MiB) */
#define HOLE       (2 * MiB)
#define IMAGE_SIZE (64 * KiB)
/*
 * Avail rings first, then descriptor tables, so that short inputs already reach the handlers;
 * used rings (written by the device) last. Sized for the largest queue (128).
 */
#define AVAIL_GPA(q) (0x110u * (q))
#define DESC_GPA(q)  (0x440u + 0x800u * (q))
#define USED_GPA(q)  (0x2440u + 0x410u * (q))
#define NR_OPS       8

struct header {
        uint8_t features;   /* bit 0 STATS_VQ, 1 REPORTING, 2 EVENT_IDX, 3 DEFLATE_ON_OOM */
        uint8_t queue_size; /* 2 << (n % 7): 2 .. 128 */
        uint8_t ops[NR_OPS];
        uint8_t arg[4];
};

static struct guest_mem gm;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        log_set_level(LOG_LEVEL_ERROR); /* needs-reset warnings are the expected outcome */
        if (guest_mem_init(&gm, "fuzz-balloon", RAM_SIZE, HOLE) < 0)
                abort();
        return 0;
}

/* Negotiates like the transport would and enables every queue (extra ones have no role). */
static void start(struct virtio_dev *dev, const struct header *h)
{
        uint64_t features = UINT64_C(1) << VIRTIO_F_VERSION_1;

        if (h->features & 1)
                features |= UINT64_C(1) << VIRTIO_BALLOON_F_STATS_VQ;
        if (h->features & 2)
                features |= UINT64_C(1) << VIRTIO_BALLOON_F_REPORTING;
        if (h->features & 4)
                features |= UINT64_C(1) << VIRTIO_F_EVENT_IDX;
        features &= dev->ops->features(dev) | (UINT64_C(1) << VIRTIO_F_VERSION_1);
        dev->driver_features = features;
        dev->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
        for (unsigned q = 0; q < BALLOON_NR_QUEUES; q++) {
                struct virtq *vq = &dev->queues[q];

                vq->mem = &gm;
                virtq_reset(vq);
                vq->size = 2u << (h->queue_size % 7);
                vq->desc_gpa = DESC_GPA(q);
                vq->avail_gpa = AVAIL_GPA(q);
                vq->used_gpa = USED_GPA(q);
                vq->event_idx = features & (UINT64_C(1) << VIRTIO_F_EVENT_IDX);
                vq->enabled = virtq_validate_rings(vq) == 0;
        }
        if (dev->ops->activate(dev, features) == 0)
                dev->status |= VIRTIO_STATUS_DRIVER_OK;
}

static void run_op(struct balloon *b, const struct header *h, uint8_t op)
{
        struct virtio_dev *dev = balloon_virtio_dev(b);
        struct balloon_state st;
        uint32_t arg;

        memcpy(&arg, h->arg, sizeof(arg));
        switch (op % 8) {
        case 0 ... 3:
                virtio_dev_lock(dev);
                if (dev->queues[op % 4].enabled && virtio_dev_running(dev))
                        dev->ops->queue_notify(dev, op % 4);
                virtio_dev_unlock(dev);
                break;
        case 4:
                virtio_dev_lock(dev);
                balloon_stats_tick(b);
                virtio_dev_unlock(dev);
                break;
        case 5:
                (void)balloon_set_target(b, (uint64_t)arg * GUEST_PAGE_SIZE);
                break;
        case 6: {
                uint32_t len = 1u << (op >> 3 & 3) % 3, off = (op >> 5) * len % 16;

                virtio_dev_lock(dev);
                dev->ops->write_config(dev, off, h->arg, len);
                dev->ops->read_config(dev, off, &arg, len);
                virtio_dev_unlock(dev);
                break;
        }
        default:
                balloon_get_state(b, &st);
                if (st.actual_bytes > RAM_SIZE || st.inflated_bytes > RAM_SIZE ||
                    st.pending_bytes > RAM_SIZE)
                        abort();
                break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct balloon_options opts;
        struct header h;
        struct balloon *b;
        struct virtio_dev *dev;
        size_t image;

        if (size < sizeof(h))
                return -1;
        memcpy(&h, data, sizeof(h));
        data += sizeof(h);
        size -= sizeof(h);

        image = size < IMAGE_SIZE ? size : IMAGE_SIZE;
        memset(gm.regions[0].hva, 0, IMAGE_SIZE);
        memcpy(gm.regions[0].hva, data, image);

        balloon_options_default(&opts);
        opts.deflate_on_oom = h.features & 8;
        if (balloon_new(&opts, &gm, &b) < 0)
                abort();
        dev = balloon_virtio_dev(b);
        if (virtio_dev_attach(dev, &virtio_transport_silent, NULL, &gm, NULL) < 0)
                abort();

        start(dev, &h);
        for (unsigned i = 0; i < NR_OPS; i++)
                run_op(b, &h, h.ops[i]);

        virtio_dev_detach(dev);
        balloon_free(b);
        return 0;
}
