/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: the virtio-mem request queue against whatever a hostile driver can put in
 * guest RAM. The input is a small header (queue size, a script of kicks, requested-size
 * changes, config accesses, resets and invariant checks) followed by an image of the first
 * 64 KiB of boot RAM, where the ring and the requests live; descriptors may point anywhere.
 * Guest memory is a real memfd with a real hot-plug region (PROT_NONE where unplugged), placed
 * right above boot RAM so that short inputs reach it: a write the device makes into an
 * unplugged block faults, and a wrong block count trips the checks below.
 *
 * Build and run: see "Fuzzing" in docs/virtio-mem.md.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tidal/log.h"
#include "virtio-mem/virtio-mem-internal.h"

#define RAM_SIZE   (2 * MiB)
#define HP_GPA     (4 * MiB)
#define NR_BLOCKS  16u
#define IMAGE_SIZE (64 * KiB)
/* Avail ring first, then the descriptor table, so short inputs reach the handler; used last. */
#define AVAIL_GPA 0x0u
#define DESC_GPA  0x110u
#define USED_GPA  0x2000u
#define NR_OPS    12

struct header {
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
        if (guest_mem_plan(&gm, RAM_SIZE, 3 * GiB) < 0 ||
            guest_mem_plan_hotplug(&gm, HP_GPA, NR_BLOCKS * VIRTIO_MEM_BLOCK_SIZE,
                                   VIRTIO_MEM_BLOCK_SIZE) < 0 ||
            guest_mem_map(&gm, "fuzz-virtio-mem") < 0)
                abort();
        return 0;
}

/* Every input starts from an empty region. */
static void unplug_everything(void)
{
        uint64_t first = 0, end;

        while ((first = guest_mem_find_block(&gm, first, NR_BLOCKS, true)) < NR_BLOCKS) {
                end = guest_mem_find_block(&gm, first, NR_BLOCKS, false);
                if (guest_mem_unplug(&gm, first, end - first) < 0)
                        abort();
                first = end;
        }
}

/* Negotiates like the transport would and enables the queue. */
static void start(struct virtio_dev *dev, const struct header *h)
{
        struct virtq *vq = &dev->queues[0];
        uint64_t features = (UINT64_C(1) << VIRTIO_F_VERSION_1) | dev->ops->features(dev);

        if (!dev->ops->features_ok(dev, features))
                abort();
        dev->driver_features = features;
        dev->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
        vq->mem = &gm;
        virtq_reset(vq);
        vq->size = 2u << (h->queue_size % 7);
        vq->desc_gpa = DESC_GPA;
        vq->avail_gpa = AVAIL_GPA;
        vq->used_gpa = USED_GPA;
        vq->enabled = virtq_validate_rings(vq) == 0;
        if (dev->ops->activate(dev, features) == 0)
                dev->status |= VIRTIO_STATUS_DRIVER_OK;
}

/* What must hold whatever the guest did. */
static void check(struct virtio_mem *m)
{
        struct virtio_mem_state st;
        uint64_t plugged = 0;

        virtio_mem_get_state(m, &st);
        for (uint64_t b = 0; b < NR_BLOCKS; b++) {
                bool p = guest_mem_block_plugged(&gm, b);
                uint64_t gpa = HP_GPA + b * VIRTIO_MEM_BLOCK_SIZE;

                plugged += p;
                if (p != (guest_mem_ptr(&gm, gpa, VIRTIO_MEM_BLOCK_SIZE) != NULL))
                        abort();
        }
        if (st.plugged_size != plugged * VIRTIO_MEM_BLOCK_SIZE ||
            st.plugged_size > st.region_size || st.requested_size > st.region_size ||
            st.metrics.plugged_blocks - st.metrics.unplugged_blocks != plugged)
                abort();
}

static void run_op(struct virtio_mem *m, const struct header *h, uint8_t op)
{
        struct virtio_dev *dev = virtio_mem_virtio_dev(m);
        uint32_t arg;
        uint8_t buf[8];

        memcpy(&arg, h->arg, sizeof(arg));
        switch (op % 8) {
        case 0 ... 2:
                virtio_dev_lock(dev);
                if (dev->queues[0].enabled && virtio_dev_running(dev))
                        dev->ops->queue_notify(dev, 0);
                virtio_dev_unlock(dev);
                break;
        case 3:
                (void)virtio_mem_set_requested(m, (uint64_t)(arg >> (op >> 3)) * (MiB / 2));
                break;
        case 4: {
                uint32_t len = 1u << (op >> 3 & 3), off = (op >> 5) * 8 % VIRTIO_MEM_CONFIG_SIZE;

                virtio_dev_lock(dev);
                dev->ops->read_config(dev, off, buf, len);
                dev->ops->write_config(dev, off, h->arg, len > 4 ? 4 : len);
                virtio_dev_unlock(dev);
                break;
        }
        case 5: /* the driver resets the device and starts again */
                virtio_dev_lock(dev);
                dev->ops->reset(dev);
                dev->status = 0;
                virtio_dev_unlock(dev);
                start(dev, h);
                break;
        default:
                check(m);
                break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct virtio_mem_options opts = {0};
        struct virtio_mem *m;
        struct virtio_dev *dev;
        struct header h;
        size_t image;

        if (size < sizeof(h))
                return -1;
        memcpy(&h, data, sizeof(h));
        data += sizeof(h);
        size -= sizeof(h);

        image = size < IMAGE_SIZE ? size : IMAGE_SIZE;
        memset(gm.regions[0].hva, 0, IMAGE_SIZE);
        memcpy(gm.regions[0].hva, data, image);
        unplug_everything();

        /* Start with something requested, so plugging is possible from the first kick. */
        opts.requested_size = (uint64_t)(h.arg[0] % (NR_BLOCKS + 1)) * VIRTIO_MEM_BLOCK_SIZE;
        if (virtio_mem_new(&opts, &gm, &m) < 0)
                abort();
        dev = virtio_mem_virtio_dev(m);
        if (virtio_dev_attach(dev, &virtio_transport_silent, NULL, &gm, NULL) < 0)
                abort();

        start(dev, &h);
        for (unsigned i = 0; i < NR_OPS; i++)
                run_op(m, &h, h.ops[i]);
        check(m);

        virtio_dev_detach(dev);
        virtio_mem_free(m);
        return 0;
}
