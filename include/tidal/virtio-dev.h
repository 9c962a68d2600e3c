/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * How a virtio device plugs into a transport. A device (rng, balloon, mem, ...) is a small
 * module that fills a struct virtio_dev_ops; the transport (virtio-pci modern) owns feature
 * negotiation, queue setup, interrupts and notifications, and calls the device back.
 *
 * Locking: the transport holds dev->lock around every callback. Code a device runs on its own
 * (timers on the event loop, requests from the control socket) takes it with virtio_dev_lock().
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "tidal/guest-mem.h"
#include "tidal/virtqueue.h"

struct event_loop;

/* Feature bits common to all devices (virtio 1.x, section 6). */
#define VIRTIO_F_INDIRECT_DESC   28
#define VIRTIO_F_EVENT_IDX       29
#define VIRTIO_F_VERSION_1       32
#define VIRTIO_F_ACCESS_PLATFORM 33

/* Device status bits (section 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE        1
#define VIRTIO_STATUS_DRIVER             2
#define VIRTIO_STATUS_DRIVER_OK          4
#define VIRTIO_STATUS_FEATURES_OK        8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED             128

#define VIRTIO_MAX_QUEUES 8

struct virtio_dev;

struct virtio_dev_ops {
        const char *name;   /* short, for logs: "rng", "balloon" */
        uint16_t device_id; /* virtio device ID: 4 rng, 5 balloon, 24 mem */
        uint32_t pci_class; /* 24-bit PCI class code for the function */
        uint16_t nr_queues;
        uint16_t queue_max_size;
        uint32_t config_size; /* bytes of device-specific config space */

        /* Features the device offers, VIRTIO_F_VERSION_1 included by the transport. */
        uint64_t (*features)(struct virtio_dev *dev);

        /*
         * Optional: whether the device can work with what the driver accepted (checked when the
         * driver sets FEATURES_OK, after the transport's own checks). false leaves FEATURES_OK
         * clear, and the driver gives up (3.1.1).
         */
        bool (*features_ok)(struct virtio_dev *dev, uint64_t features);

        /* Device config space accesses; off + len <= config_size is guaranteed. */
        void (*read_config)(struct virtio_dev *dev, uint32_t off, void *data, uint32_t len);
        void (*write_config)(struct virtio_dev *dev, uint32_t off, const void *data, uint32_t len);

        /* The driver set DRIVER_OK with these features; queues are set up. 0 or -errno. */
        int (*activate)(struct virtio_dev *dev, uint64_t features);

        /* The driver kicked queue idx (runs on the event-loop thread). */
        void (*queue_notify)(struct virtio_dev *dev, unsigned idx);

        /* Device reset by the driver or by the VMM (reboot). Drop all driver-visible state. */
        void (*reset)(struct virtio_dev *dev);
};

struct virtio_transport_ops {
        /* Raise the interrupt for queue idx if the driver wants one. */
        void (*signal_queue)(struct virtio_dev *dev, unsigned idx);
        /* Config space changed: bump config generation, raise the config interrupt. */
        void (*signal_config)(struct virtio_dev *dev);
};

struct virtio_dev {
        const struct virtio_dev_ops *ops;
        void *priv; /* the device's own state */

        /* Filled by the transport. */
        const struct virtio_transport_ops *transport;
        void *transport_priv;
        const struct guest_mem *mem;
        struct event_loop *loop;
        pthread_mutex_t lock;
        uint64_t driver_features; /* negotiated */
        uint8_t status;
        bool needs_reset_logged;
        struct virtq queues[VIRTIO_MAX_QUEUES];
};

static inline void virtio_dev_lock(struct virtio_dev *dev)
{
        pthread_mutex_lock(&dev->lock);
}

static inline void virtio_dev_unlock(struct virtio_dev *dev)
{
        pthread_mutex_unlock(&dev->lock);
}

static inline bool virtio_dev_has_feature(const struct virtio_dev *dev, unsigned bit)
{
        return dev->driver_features & (UINT64_C(1) << bit);
}

static inline bool virtio_dev_running(const struct virtio_dev *dev)
{
        return (dev->status & VIRTIO_STATUS_DRIVER_OK) &&
               !(dev->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

/* Device helpers implemented by the transport-independent core (src/vmm/virtio/virtio-dev.c). */

/*
 * Binds a device to its transport: the fields every transport (or a test or fuzzer standing in
 * for one) fills in before the driver sees the device. 0 or a negative errno.
 */
int virtio_dev_attach(struct virtio_dev *dev, const struct virtio_transport_ops *transport,
                      void *transport_priv, const struct guest_mem *mem, struct event_loop *loop);
/* Undoes virtio_dev_attach(). */
void virtio_dev_detach(struct virtio_dev *dev);
/* A transport that raises no interrupt: for a device driven by a test or a fuzzer. */
extern const struct virtio_transport_ops virtio_transport_silent;

/* The guest broke the protocol: set DEVICE_NEEDS_RESET, log once with the reason. */
void virtio_dev_needs_reset(struct virtio_dev *dev, const char *reason);

/*
 * Serves one available chain: 1 when it went back to the driver, 0 when the device keeps it,
 * or a negative errno with *why saying how the guest broke the protocol.
 */
typedef int (*virtio_chain_fn)(void *opaque, unsigned idx, const struct virtq_chain *chain,
                               const char **why);

/*
 * Serves every chain the driver made available on queue idx while the device runs, signals
 * the queue once if any went back, and on a broken ring or request sets DEVICE_NEEDS_RESET
 * (logged once). 0, or -EBADMSG when the guest broke the protocol (for the device's
 * counters). Call with dev->lock held.
 */
int virtio_dev_serve_queue(struct virtio_dev *dev, unsigned idx, virtio_chain_fn fn, void *opaque);

/* Pushes used buffers' interrupt if the driver wants one (call with dev->lock held). */
void virtio_dev_signal_queue(struct virtio_dev *dev, unsigned idx);
void virtio_dev_signal_config(struct virtio_dev *dev);
