/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The virtio-mem device's state, shared by virtio-mem.c (the device: features, config space,
 * the VMM API) and requests.c (what the driver asks on the request queue). Not for other
 * components; the unit tests and the fuzzer use it to drive the handlers directly.
 */
#pragma once

#include "virtio-mem/virtio-mem.h"

#define VIRTIO_MEM_NR_QUEUES 1 /* guest-request */
/* Linux has one request in flight at a time; room for more costs nothing. */
#define VIRTIO_MEM_QUEUE_SIZE 128

/* Request and response types, and STATE answers (virtio 1.2, 5.15.6). */
#define VIRTIO_MEM_REQ_PLUG       0
#define VIRTIO_MEM_REQ_UNPLUG     1
#define VIRTIO_MEM_REQ_UNPLUG_ALL 2
#define VIRTIO_MEM_REQ_STATE      3

#define VIRTIO_MEM_RESP_ACK   0
#define VIRTIO_MEM_RESP_NACK  1
#define VIRTIO_MEM_RESP_BUSY  2
#define VIRTIO_MEM_RESP_ERROR 3

#define VIRTIO_MEM_STATE_PLUGGED   0
#define VIRTIO_MEM_STATE_UNPLUGGED 1
#define VIRTIO_MEM_STATE_MIXED     2

/* Every request is 24 bytes (le16 type, 6 padding, le64 addr, le16 nb_blocks, 6 padding). */
#define VIRTIO_MEM_REQ_SIZE 24
/* Every response is 10 bytes (le16 type, 6 padding, le16 state). */
#define VIRTIO_MEM_RESP_SIZE 10

/* struct virtio_mem_config: six le64 fields and node_id (le16) with padding, 56 bytes. */
#define VIRTIO_MEM_CONFIG_BLOCK_SIZE  0
#define VIRTIO_MEM_CONFIG_NODE_ID     8
#define VIRTIO_MEM_CONFIG_ADDR        16
#define VIRTIO_MEM_CONFIG_REGION_SIZE 24
#define VIRTIO_MEM_CONFIG_USABLE_SIZE 32
#define VIRTIO_MEM_CONFIG_PLUGGED     40
#define VIRTIO_MEM_CONFIG_REQUESTED   48
#define VIRTIO_MEM_CONFIG_SIZE        56

/* A request as decoded from the wire, in host byte order; padding dropped. */
struct virtio_mem_req {
        uint16_t type;
        uint64_t addr;
        uint16_t nb_blocks;
};

struct virtio_mem_resp {
        uint16_t type;
        uint16_t state; /* STATE answers only */
};

struct virtio_mem {
        struct virtio_dev dev; /* dev.priv == this */
        struct guest_mem *mem;
        const struct guest_mem_region *region; /* mem's hot-plug region */
        uint64_t block_size;
        uint64_t requested_size; /* VMM-owned, a multiple of block_size */
        struct virtio_mem_metrics metrics;
        int behind;               /* -1 unplug pending, +1 plug pending, 0 caught up */
        uint64_t behind_since_ns; /* when behind last changed to non-zero */
        bool features_refused_logged;
        bool busy_logged;
        bool discard_error_logged;
};

static inline uint64_t virtio_mem_plugged_size(const struct virtio_mem *m)
{
        return m->mem->hotplug.nr_plugged * m->block_size;
}

/* The driver may plug anywhere in the region: tidal never grows or shrinks the usable part. */
static inline uint64_t virtio_mem_usable_size(const struct virtio_mem *m)
{
        return m->region->size;
}

/* virtio-mem.c: after requested, plugged or the driver changed, restarts the clocks. Locked. */
void virtio_mem_track_behind(struct virtio_mem *m);

/* requests.c */
void virtio_mem_decode_req(const uint8_t raw[VIRTIO_MEM_REQ_SIZE], struct virtio_mem_req *req);
void virtio_mem_encode_resp(const struct virtio_mem_resp *resp, uint8_t raw[VIRTIO_MEM_RESP_SIZE]);
/* Carries out one request and says what to answer. Locked. */
struct virtio_mem_resp virtio_mem_handle_request(struct virtio_mem *m,
                                                 const struct virtio_mem_req *req);
void virtio_mem_queue_notify(struct virtio_dev *dev, unsigned idx);
