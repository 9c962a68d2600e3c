/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-rng (virtio 1.x, section 5.4): every device-writable buffer the driver queues is
 * filled from getrandom(). No config space, no device features besides EVENT_IDX.
 */
#include <errno.h>
#include <sys/random.h>

#include "tidal/macro.h"
#include "vmm/virtio/rng.h"

/* Bounds the time one request keeps the event loop busy; the driver asks again if it wants more. */
#define RNG_MAX_PER_REQUEST (64u * 1024)

static uint64_t rng_features(_unused_ struct virtio_dev *dev)
{
        return UINT64_C(1) << VIRTIO_F_EVENT_IDX;
}

/* Fills the chain's writable buffers; returns the bytes written. */
static uint32_t rng_fill(const struct virtq_chain *chain)
{
        uint32_t done = 0;

        for (unsigned i = 0; i < chain->nr_bufs && done < RNG_MAX_PER_REQUEST; i++) {
                const struct virtq_buf *buf = &chain->bufs[i];
                uint32_t want = MIN(buf->len, RNG_MAX_PER_REQUEST - done);
                ssize_t n;

                if (!buf->device_writable || want == 0)
                        continue;
                /* Non-blocking: this runs on the event loop; a short answer is valid virtio-rng. */
                n = getrandom(buf->hva, want, GRND_NONBLOCK);
                if (n <= 0)
                        break;
                done += n;
                if ((uint32_t)n < want)
                        break;
        }
        return done;
}

static void rng_queue_notify(struct virtio_dev *dev, unsigned idx)
{
        struct virtq *vq = &dev->queues[idx];
        struct virtq_chain chain;
        bool pushed = false;
        int r;

        while ((r = virtq_pop(vq, &chain)) > 0) {
                if (virtq_push(vq, chain.head, rng_fill(&chain)) < 0) {
                        r = -EBADMSG;
                        break;
                }
                pushed = true;
        }
        if (pushed)
                virtio_dev_signal_queue(dev, idx);
        if (r < 0)
                virtio_dev_needs_reset(dev, "malformed request queue");
}

static const struct virtio_dev_ops rng_ops = {
        .name = "rng",
        .device_id = VIRTIO_ID_RNG_DEVICE,
        .pci_class = 0xff0000, /* unclassified device, as other VMMs use for virtio-rng */
        .nr_queues = 1,
        .queue_max_size = VIRTIO_RNG_QUEUE_SIZE,
        .config_size = 0,
        .features = rng_features,
        .queue_notify = rng_queue_notify,
};

int virtio_rng_new(struct virtio_dev **ret)
{
        struct virtio_dev *dev = calloc(1, sizeof(*dev));

        if (!dev)
                return -ENOMEM;
        dev->ops = &rng_ops;
        *ret = dev;
        return 0;
}

void virtio_rng_free(struct virtio_dev *dev)
{
        free(dev);
}
