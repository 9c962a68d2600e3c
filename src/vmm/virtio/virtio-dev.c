/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Transport-independent helpers for virtio devices: what a device calls when the guest broke
 * the protocol, or when it has something to tell the driver.
 */
#include "tidal/virtio-dev.h"
#include "tidal/log.h"

int virtio_dev_attach(struct virtio_dev *dev, const struct virtio_transport_ops *transport,
                      void *transport_priv, const struct guest_mem *mem, struct event_loop *loop)
{
        int r = pthread_mutex_init(&dev->lock, NULL);

        if (r)
                return -r;
        dev->transport = transport;
        dev->transport_priv = transport_priv;
        dev->mem = mem;
        dev->loop = loop;
        dev->status = 0;
        dev->driver_features = 0;
        return 0;
}

void virtio_dev_detach(struct virtio_dev *dev)
{
        pthread_mutex_destroy(&dev->lock);
        dev->transport = NULL;
        dev->transport_priv = NULL;
}

static void signal_queue_silent(struct virtio_dev *dev, unsigned idx)
{
        (void)dev;
        (void)idx;
}

static void signal_config_silent(struct virtio_dev *dev)
{
        (void)dev;
}

const struct virtio_transport_ops virtio_transport_silent = {
        .signal_queue = signal_queue_silent,
        .signal_config = signal_config_silent,
};

void virtio_dev_needs_reset(struct virtio_dev *dev, const char *reason)
{
        bool was_running = dev->status & VIRTIO_STATUS_DRIVER_OK;

        if (dev->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
                return;
        dev->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;

        /* A hostile guest could otherwise flood the log with one line per kick. */
        if (!dev->needs_reset_logged) {
                dev->needs_reset_logged = true;
                log_warn("virtio-%s: %s, device needs reset", dev->ops->name, reason);
        }

        /* 2.1.2: with DRIVER_OK set, NEEDS_RESET comes with a config change notification. */
        if (was_running)
                virtio_dev_signal_config(dev);
}

int virtio_dev_serve_queue(struct virtio_dev *dev, unsigned idx, virtio_chain_fn fn, void *opaque)
{
        struct virtq_chain chain;
        const char *why = "malformed ring";
        bool pushed = false;
        int r = 0;

        while (virtio_dev_running(dev) && (r = virtq_pop(&dev->queues[idx], &chain)) > 0) {
                r = fn(opaque, idx, &chain, &why);
                if (r < 0)
                        break;
                pushed |= r > 0;
        }
        if (pushed)
                virtio_dev_signal_queue(dev, idx);
        if (r >= 0)
                return 0;
        virtio_dev_needs_reset(dev, why);
        return -EBADMSG;
}

void virtio_dev_signal_queue(struct virtio_dev *dev, unsigned idx)
{
        if (idx >= dev->ops->nr_queues || idx >= VIRTIO_MAX_QUEUES || !dev->transport)
                return;
        if (!virtq_needs_interrupt(&dev->queues[idx]))
                return;
        dev->transport->signal_queue(dev, idx);
}

void virtio_dev_signal_config(struct virtio_dev *dev)
{
        if (dev->transport)
                dev->transport->signal_config(dev);
}
