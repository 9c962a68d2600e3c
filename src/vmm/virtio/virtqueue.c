/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Split virtqueue, device side (virtio 1.x, section 2.7).
 *
 * The rings live in guest memory that the guest may change at any time, from any vCPU. Every
 * shared field is therefore read exactly once with an atomic load into a local, and only the
 * local is validated and used: a descriptor cannot change between its check and its use.
 * Ordering follows the spec's memory model: the avail index is read with acquire semantics
 * before the ring entries and descriptors it publishes; used entries are written before the
 * used index is published with release semantics; the EVENT_IDX and NO_INTERRUPT checks are
 * preceded by a full barrier so they see the driver's latest state after our used index.
 *
 * virtio 1.x rings are little-endian; le*toh() keeps that explicit (no-ops on x86).
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "tidal/macro.h"
#include "tidal/virtio-dev.h"
#include "tidal/virtqueue.h"

#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4

#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

#define VIRTIO_MSI_NO_VECTOR 0xffff

/* Ring layouts (section 2.7.5, 2.7.6, 2.7.8); only used for offsets and sizes. */
struct vring_desc {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
        uint16_t next;
};

struct vring_avail {
        uint16_t flags;
        uint16_t idx;
        uint16_t ring[]; /* size entries, then used_event */
};

struct vring_used_elem {
        uint32_t id;
        uint32_t len;
};

struct vring_used {
        uint16_t flags;
        uint16_t idx;
        struct vring_used_elem ring[]; /* size entries, then avail_event */
};

static uint64_t desc_table_size(uint16_t size)
{
        return (uint64_t)size * sizeof(struct vring_desc);
}

static uint64_t avail_ring_size(uint16_t size)
{
        return sizeof(struct vring_avail) + 2ull * size + 2; /* + used_event */
}

static uint64_t used_ring_size(uint16_t size)
{
        return sizeof(struct vring_used) + 8ull * size + 2; /* + avail_event */
}

void virtq_reset(struct virtq *vq)
{
        const struct guest_mem *mem = vq->mem;

        memset(vq, 0, sizeof(*vq));
        vq->mem = mem; /* which RAM the queue lives in does not change across a reset */
        vq->msix_vector = VIRTIO_MSI_NO_VECTOR;
}

static int check_ring(const struct guest_mem *mem, uint64_t gpa, uint64_t len, uint64_t align)
{
        uint64_t end;

        if (!IS_ALIGNED(gpa, align) || add_overflows_u64(gpa, len, &end))
                return -EINVAL;
        return guest_mem_ptr(mem, gpa, len) ? 0 : -EINVAL;
}

int virtq_validate_rings(const struct virtq *vq)
{
        uint16_t size = vq->size;

        if (!vq->mem || size == 0 || (size & (size - 1)) || size > VIRTQ_MAX_SIZE)
                return -EINVAL;
        if (check_ring(vq->mem, vq->desc_gpa, desc_table_size(size), 16) < 0 ||
            check_ring(vq->mem, vq->avail_gpa, avail_ring_size(size), 2) < 0 ||
            check_ring(vq->mem, vq->used_gpa, used_ring_size(size), 4) < 0)
                return -EINVAL;
        return 0;
}

/*
 * The rings were checked when the queue was enabled, but looking them up again costs little
 * and keeps this file free of cached host pointers that could outlive a reset.
 */
static struct vring_avail *avail_ring(const struct virtq *vq)
{
        return guest_mem_ptr(vq->mem, vq->avail_gpa, avail_ring_size(vq->size));
}

static struct vring_used *used_ring(const struct virtq *vq)
{
        return guest_mem_ptr(vq->mem, vq->used_gpa, used_ring_size(vq->size));
}

static struct vring_desc *desc_table(const struct virtq *vq)
{
        return guest_mem_ptr(vq->mem, vq->desc_gpa, desc_table_size(vq->size));
}

static uint16_t load16(const uint16_t *p, int order)
{
        return le16toh(__atomic_load_n(p, order));
}

static void store16(uint16_t *p, uint16_t v, int order)
{
        __atomic_store_n(p, htole16(v), order);
}

/* One fetch of each field: the guest may rewrite the descriptor while we look at it. */
static struct vring_desc desc_fetch(const struct vring_desc *d)
{
        return (struct vring_desc){
                .addr = le64toh(__atomic_load_n(&d->addr, __ATOMIC_RELAXED)),
                .len = le32toh(__atomic_load_n(&d->len, __ATOMIC_RELAXED)),
                .flags = le16toh(__atomic_load_n(&d->flags, __ATOMIC_RELAXED)),
                .next = le16toh(__atomic_load_n(&d->next, __ATOMIC_RELAXED)),
        };
}

static int chain_add(const struct virtq *vq, struct virtq_chain *chain, const struct vring_desc *d)
{
        bool writable = d->flags & VIRTQ_DESC_F_WRITE;
        struct virtq_buf *buf = &chain->bufs[chain->nr_bufs];
        uint32_t *total = writable ? &chain->in_bytes : &chain->out_bytes;
        uint64_t end;

        /* Device-readable buffers come first (2.7.4.2), so the writable ones are a suffix. */
        if (chain->nr_bufs > 0 && !writable && chain->bufs[chain->nr_bufs - 1].device_writable)
                return -EBADMSG;
        if (add_overflows_u64(d->addr, d->len, &end) ||
            __builtin_add_overflow(*total, d->len, total))
                return -EBADMSG;

        *buf = (struct virtq_buf){.gpa = d->addr, .len = d->len, .device_writable = writable};
        if (d->len > 0) {
                buf->hva = guest_mem_ptr(vq->mem, d->addr, d->len);
                if (!buf->hva)
                        return -EBADMSG;
        }
        chain->nr_bufs++;
        return 0;
}

static int chain_walk(const struct virtq *vq, uint16_t head, struct virtq_chain *chain)
{
        const struct vring_desc *table = desc_table(vq);
        uint16_t idx = head;
        int r;

        if (!table)
                return -EBADMSG;
        *chain = (struct virtq_chain){.head = head};

        for (;;) {
                struct vring_desc d;

                /* A chain longer than the queue necessarily revisits a descriptor: a loop. */
                if (chain->nr_bufs >= vq->size || chain->nr_bufs >= VIRTQ_MAX_CHAIN)
                        return -EBADMSG;
                d = desc_fetch(&table[idx]);
                /* VIRTIO_F_INDIRECT_DESC is never offered: struct virtq has no flag for it. */
                if (d.flags & VIRTQ_DESC_F_INDIRECT)
                        return -EBADMSG;
                r = chain_add(vq, chain, &d);
                if (r < 0)
                        return r;
                if (!(d.flags & VIRTQ_DESC_F_NEXT))
                        return 0;
                if (d.next >= vq->size)
                        return -EBADMSG;
                idx = d.next;
        }
}

/* EVENT_IDX: ask to be notified when the driver makes entry last_avail_idx available. */
static void set_avail_event(struct virtq *vq, struct vring_used *used)
{
        store16((uint16_t *)&used->ring[vq->size], vq->last_avail_idx, __ATOMIC_RELAXED);
}

int virtq_pop(struct virtq *vq, struct virtq_chain *chain)
{
        struct vring_avail *avail;
        struct vring_used *used;
        uint16_t avail_idx, head;
        int r;

        if (!vq->enabled)
                return 0;
        avail = avail_ring(vq);
        used = used_ring(vq);
        if (!avail || !used)
                return -EBADMSG;

        avail_idx = load16(&avail->idx, __ATOMIC_ACQUIRE);
        if (avail_idx == vq->last_avail_idx && vq->event_idx) {
                /*
                 * About to go idle: publish avail_event, then look again, so a buffer the driver
                 * added before seeing it is not left without a notification (2.7.10).
                 */
                set_avail_event(vq, used);
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                avail_idx = load16(&avail->idx, __ATOMIC_ACQUIRE);
        }
        if (avail_idx == vq->last_avail_idx)
                return 0;
        if ((uint16_t)(avail_idx - vq->last_avail_idx) > vq->size)
                return -EBADMSG;

        head = load16(&avail->ring[vq->last_avail_idx & (vq->size - 1)], __ATOMIC_RELAXED);
        if (head >= vq->size)
                return -EBADMSG;
        r = chain_walk(vq, head, chain);
        if (r < 0)
                return r;

        vq->last_avail_idx++;
        if (vq->event_idx)
                set_avail_event(vq, used);
        return 1;
}

int virtq_push(struct virtq *vq, uint16_t head, uint32_t written)
{
        struct vring_used *used;
        struct vring_used_elem *elem;

        if (!vq->enabled || head >= vq->size)
                return -EBADMSG;
        used = used_ring(vq);
        if (!used)
                return -EBADMSG;

        elem = &used->ring[vq->used_idx & (vq->size - 1)];
        __atomic_store_n(&elem->id, htole32(head), __ATOMIC_RELAXED);
        __atomic_store_n(&elem->len, htole32(written), __ATOMIC_RELAXED);
        vq->used_idx++;
        /* The element must be visible before the index that hands it to the driver. */
        store16(&used->idx, vq->used_idx, __ATOMIC_RELEASE);
        return 0;
}

/* vring_need_event() of the spec: did new_idx move past used_event since old? */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
        return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool virtq_needs_interrupt(struct virtq *vq)
{
        struct vring_avail *avail;
        uint16_t old = vq->signalled_used;
        bool valid = vq->signalled_used_valid;

        if (!vq->enabled)
                return false;
        avail = avail_ring(vq);
        if (!avail)
                return false;

        /* Our used idx store must be ordered before reading the driver's suppression state. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);

        if (!vq->event_idx)
                return !(load16(&avail->flags, __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);

        vq->signalled_used = vq->used_idx;
        vq->signalled_used_valid = true;
        if (!valid)
                return true;
        return need_event(load16(&avail->ring[vq->size], __ATOMIC_RELAXED), vq->used_idx, old);
}

uint32_t virtq_chain_read(const struct virtq_chain *chain, uint32_t offset, void *dst, uint32_t len)
{
        uint8_t *out = dst;
        uint32_t done = 0;

        for (unsigned i = 0; i < chain->nr_bufs && done < len; i++) {
                const struct virtq_buf *buf = &chain->bufs[i];
                uint32_t n;

                if (buf->device_writable)
                        break;
                if (offset >= buf->len) {
                        offset -= buf->len;
                        continue;
                }
                n = MIN(buf->len - offset, len - done);
                memcpy(out + done, (const uint8_t *)buf->hva + offset, n);
                done += n;
                offset = 0;
        }
        return done;
}

uint32_t virtq_chain_write(const struct virtq_chain *chain, const void *src, uint32_t len)
{
        const uint8_t *in = src;
        uint32_t done = 0;

        for (unsigned i = 0; i < chain->nr_bufs && done < len; i++) {
                const struct virtq_buf *buf = &chain->bufs[i];
                uint32_t n;

                if (!buf->device_writable || buf->len == 0)
                        continue;
                n = MIN(buf->len, len - done);
                memcpy(buf->hva, in + done, n);
                done += n;
        }
        return done;
}
