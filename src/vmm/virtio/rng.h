/* SPDX-License-Identifier: GPL-2.0-or-later */
/* virtio-rng (device ID 4): one queue the driver fills with buffers for the host's randomness. */
#pragma once

#include "tidal/virtio-dev.h"

#define VIRTIO_ID_RNG_DEVICE  4
#define VIRTIO_RNG_QUEUE_SIZE 256

/* Allocates an unplugged device; hand it to virtio_pci_create(). 0 or -ENOMEM. */
int virtio_rng_new(struct virtio_dev **ret);
/* Frees it; after pci_bus_destroy() if it was plugged. NULL is fine. */
void virtio_rng_free(struct virtio_dev *dev);
