/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Split virtqueue (virtio 1.x, section 2.7), device side. The guest is untrusted: every index,
 * descriptor address, length and chain is validated against the queue size and guest RAM
 * before a device sees it. A malformed ring is reported as -EBADMSG; the transport then puts
 * the device into DEVICE_NEEDS_RESET.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tidal/guest-mem.h"

#define VIRTQ_MAX_SIZE  1024u /* largest queue size any tidal device offers */
#define VIRTQ_MAX_CHAIN 64u   /* longest descriptor chain accepted */

struct virtq_buf {
        uint64_t gpa;
        uint32_t len;
        bool device_writable; /* VIRTQ_DESC_F_WRITE */
        void *hva;            /* validated host pointer to [gpa, gpa + len) */
};

struct virtq_chain {
        uint16_t head;
        uint16_t nr_bufs;
        uint32_t out_bytes; /* total device-readable bytes */
        uint32_t in_bytes;  /* total device-writable bytes */
        struct virtq_buf bufs[VIRTQ_MAX_CHAIN];
};

struct virtq {
        /* Set by the driver through the transport. */
        uint16_t size;
        bool enabled;
        uint64_t desc_gpa, avail_gpa, used_gpa;
        uint16_t msix_vector;

        /* Device-side state. */
        const struct guest_mem *mem;
        uint16_t last_avail_idx;
        uint16_t used_idx;
        bool event_idx; /* VIRTIO_F_EVENT_IDX negotiated */
        uint16_t signalled_used;
        bool signalled_used_valid;
};

/* Resets the device-side state to "not set up". */
void virtq_reset(struct virtq *vq);

/*
 * Checks the rings lie in guest RAM with the required alignment and size. Called when the driver
 * enables the queue. 0 or -EINVAL.
 */
int virtq_validate_rings(const struct virtq *vq);

/*
 * Takes the next available chain. Returns 1 with *chain filled, 0 if the ring is empty, or
 * -EBADMSG if the driver put something malformed in the ring (bad index, descriptor outside RAM,
 * a loop, a chain longer than the queue or VIRTQ_MAX_CHAIN, a readable descriptor after a
 * writable one, an indirect descriptor that was not negotiated).
 */
int virtq_pop(struct virtq *vq, struct virtq_chain *chain);

/* Returns a chain to the driver with the number of bytes the device wrote. 0 or -EBADMSG. */
int virtq_push(struct virtq *vq, uint16_t head, uint32_t written);

/* Whether the driver wants an interrupt for what was pushed since the last call. */
bool virtq_needs_interrupt(struct virtq *vq);

/* Copies up to len device-readable bytes of the chain, starting at offset, into dst. */
uint32_t virtq_chain_read(const struct virtq_chain *chain, uint32_t offset, void *dst,
                          uint32_t len);
/* Copies up to len bytes into the chain's device-writable buffers. Returns bytes written. */
uint32_t virtq_chain_write(const struct virtq_chain *chain, const void *src, uint32_t len);
