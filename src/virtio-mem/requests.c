/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The guest-request queue: PLUG, UNPLUG, UNPLUG_ALL and STATE, answered as virtio 1.2 (5.15.6)
 * says. Everything here runs with the device lock held. The guest is untrusted: virtq_pop() has
 * checked the chain; this file checks the request (type, address, block count against the
 * usable region, block states) and answers ERROR, NACK or BUSY as the spec defines them. Only a
 * chain the device cannot even answer (too short, no room for the response, or a response
 * buffer the request itself unplugged) puts the device in DEVICE_NEEDS_RESET.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "tidal/clock.h"
#include "tidal/log.h"
#include "virtio-mem/virtio-mem-internal.h"

void virtio_mem_decode_req(const uint8_t raw[VIRTIO_MEM_REQ_SIZE], struct virtio_mem_req *req)
{
        uint16_t type, nb_blocks;
        uint64_t addr;

        /* The padding (bytes 2-7 and 18-23) is ignored, as the spec requires. */
        memcpy(&type, raw, sizeof(type));
        memcpy(&addr, raw + 8, sizeof(addr));
        memcpy(&nb_blocks, raw + 16, sizeof(nb_blocks));
        *req = (struct virtio_mem_req){
                .type = le16toh(type),
                .addr = le64toh(addr),
                .nb_blocks = le16toh(nb_blocks),
        };
}

void virtio_mem_encode_resp(const struct virtio_mem_resp *resp, uint8_t raw[VIRTIO_MEM_RESP_SIZE])
{
        uint16_t type = htole16(resp->type), state = htole16(resp->state);

        memset(raw, 0, VIRTIO_MEM_RESP_SIZE);
        memcpy(raw, &type, sizeof(type));
        memcpy(raw + 8, &state, sizeof(state));
}

static struct virtio_mem_resp answer(struct virtio_mem *m, uint16_t type)
{
        if (type == VIRTIO_MEM_RESP_NACK)
                m->metrics.nacks++;
        else if (type == VIRTIO_MEM_RESP_ERROR)
                m->metrics.errors++;
        else if (type == VIRTIO_MEM_RESP_BUSY)
                m->metrics.busy++;
        return (struct virtio_mem_resp){.type = type};
}

/*
 * addr must be block aligned, nb_blocks > 0, and every block inside the usable region. Sets
 * [*first, *end) to the block numbers. Written so that nothing can wrap.
 */
static bool range_ok(const struct virtio_mem *m, const struct virtio_mem_req *req, uint64_t *first,
                     uint64_t *end)
{
        uint64_t usable = virtio_mem_usable_size(m), off;

        if (req->nb_blocks == 0 || req->addr < m->region->gpa)
                return false;
        off = req->addr - m->region->gpa;
        if (!IS_ALIGNED(off, m->block_size) || off >= usable ||
            req->nb_blocks > (usable - off) / m->block_size)
                return false;
        *first = off / m->block_size;
        *end = *first + req->nb_blocks;
        return true;
}

/* Whether every block of [first, end) is plugged (or every one unplugged). */
static bool all_blocks(const struct virtio_mem *m, uint64_t first, uint64_t end, bool plugged)
{
        return guest_mem_find_block(m->mem, first, end, !plugged) == end;
}

/* The host could not change the mapping (ENOMEM: too many mappings); the guest may retry. */
static struct virtio_mem_resp busy(struct virtio_mem *m, int r, const char *what)
{
        if (!m->busy_logged) {
                m->busy_logged = true;
                log_warn_errno(r, "virtio-mem: cannot %s blocks, answering BUSY", what);
        }
        return answer(m, VIRTIO_MEM_RESP_BUSY);
}

/* One fallocate() for a run of blocks just unplugged. A failure is the host's, not the guest's. */
static void discard_blocks(struct virtio_mem *m, uint64_t first, uint64_t end)
{
        uint64_t gpa = m->region->gpa + first * m->block_size, len = (end - first) * m->block_size;
        int r;

        m->metrics.unplugged_blocks += end - first;
        m->metrics.discard_calls++;
        r = guest_mem_discard(m->mem, gpa, len);
        if (r < 0) {
                m->metrics.discard_errors++;
                if (!m->discard_error_logged) {
                        m->discard_error_logged = true;
                        log_warn_errno(r, "virtio-mem: cannot discard 0x%llx+0x%llx",
                                       (unsigned long long)gpa, (unsigned long long)len);
                }
                return;
        }
        m->metrics.discarded_bytes += len;
}

static struct virtio_mem_resp plug(struct virtio_mem *m, const struct virtio_mem_req *req)
{
        uint64_t first, end;
        int r;

        m->metrics.plug_requests++;
        if (!range_ok(m, req, &first, &end))
                return answer(m, VIRTIO_MEM_RESP_ERROR);
        /* NACK, not ERROR: the request is fine, the device just does not want more memory. */
        if ((uint64_t)req->nb_blocks * m->block_size >
            m->requested_size - MIN(m->requested_size, virtio_mem_plugged_size(m)))
                return answer(m, VIRTIO_MEM_RESP_NACK);
        if (!all_blocks(m, first, end, false))
                return answer(m, VIRTIO_MEM_RESP_ERROR);
        r = guest_mem_plug(m->mem, first, end - first);
        if (r < 0)
                return busy(m, r, "map plugged");
        m->metrics.plugged_blocks += end - first;
        return answer(m, VIRTIO_MEM_RESP_ACK);
}

static struct virtio_mem_resp unplug(struct virtio_mem *m, const struct virtio_mem_req *req)
{
        uint64_t first, end;
        int r;

        m->metrics.unplug_requests++;
        if (!range_ok(m, req, &first, &end) || !all_blocks(m, first, end, true))
                return answer(m, VIRTIO_MEM_RESP_ERROR);
        r = guest_mem_unplug(m->mem, first, end - first);
        if (r < 0)
                return busy(m, r, "unmap unplugged");
        discard_blocks(m, first, end);
        return answer(m, VIRTIO_MEM_RESP_ACK);
}

/* Every run of plugged blocks goes with one unmap and one discard. */
static struct virtio_mem_resp unplug_all(struct virtio_mem *m)
{
        uint64_t nr = m->mem->hotplug.nr_blocks, first = 0, end;
        int r;

        m->metrics.unplug_all_requests++;
        while ((first = guest_mem_find_block(m->mem, first, nr, true)) < nr) {
                end = guest_mem_find_block(m->mem, first, nr, false);
                r = guest_mem_unplug(m->mem, first, end - first);
                if (r < 0)
                        return busy(m, r, "unmap unplugged"); /* plugged_size tells what is left */
                discard_blocks(m, first, end);
                first = end;
        }
        return answer(m, VIRTIO_MEM_RESP_ACK);
}

static struct virtio_mem_resp state(struct virtio_mem *m, const struct virtio_mem_req *req)
{
        struct virtio_mem_resp resp = {.type = VIRTIO_MEM_RESP_ACK};
        uint64_t first, end;

        m->metrics.state_requests++;
        if (!range_ok(m, req, &first, &end))
                return answer(m, VIRTIO_MEM_RESP_ERROR);
        if (all_blocks(m, first, end, true))
                resp.state = VIRTIO_MEM_STATE_PLUGGED;
        else if (all_blocks(m, first, end, false))
                resp.state = VIRTIO_MEM_STATE_UNPLUGGED;
        else
                resp.state = VIRTIO_MEM_STATE_MIXED;
        return resp;
}

struct virtio_mem_resp virtio_mem_handle_request(struct virtio_mem *m,
                                                 const struct virtio_mem_req *req)
{
        switch (req->type) {
        case VIRTIO_MEM_REQ_PLUG:
                return plug(m, req);
        case VIRTIO_MEM_REQ_UNPLUG:
                return unplug(m, req);
        case VIRTIO_MEM_REQ_UNPLUG_ALL:
                return unplug_all(m);
        case VIRTIO_MEM_REQ_STATE:
                return state(m, req);
        default:
                /* Not in the spec; ERROR lets a newer driver find out without breaking us. */
                return answer(m, VIRTIO_MEM_RESP_ERROR);
        }
}

/*
 * The chain's buffers were checked when it was popped; the request may since have unplugged
 * the memory the response goes to. Writing there would fault (PROT_NONE): look them up again.
 */
static bool response_still_mapped(const struct virtio_mem *m, const struct virtq_chain *chain)
{
        for (unsigned i = 0; i < chain->nr_bufs; i++) {
                const struct virtq_buf *b = &chain->bufs[i];

                if (b->device_writable && b->len && guest_mem_ptr(m->mem, b->gpa, b->len) != b->hva)
                        return false;
        }
        return true;
}

/* Serves one chain: 1 if it went back to the driver, or -EBADMSG with *why set. */
static int handle_chain(void *opaque, unsigned idx, const struct virtq_chain *chain,
                        const char **why)
{
        struct virtio_mem *m = opaque;
        uint8_t raw[VIRTIO_MEM_REQ_SIZE], out[VIRTIO_MEM_RESP_SIZE];
        struct virtio_mem_req req;
        struct virtio_mem_resp resp;
        uint64_t start_ns;
        uint32_t written;

        if (chain->out_bytes < VIRTIO_MEM_REQ_SIZE) {
                *why = "request shorter than 24 bytes";
                return -EBADMSG;
        }
        if (chain->in_bytes < VIRTIO_MEM_RESP_SIZE) {
                *why = "no room for the 10-byte response";
                return -EBADMSG;
        }
        virtq_chain_read(chain, 0, raw, sizeof(raw));
        virtio_mem_decode_req(raw, &req);
        start_ns = monotonic_ns();
        resp = virtio_mem_handle_request(m, &req);
        m->metrics.request_ns += monotonic_ns() - start_ns;
        virtio_mem_track_behind(m);
        if (!response_still_mapped(m, chain)) {
                *why = "response buffer in memory the request unplugged";
                return -EBADMSG;
        }
        virtio_mem_encode_resp(&resp, out);
        written = virtq_chain_write(chain, out, sizeof(out));
        if (virtq_push(&m->dev.queues[0], chain->head, written) < 0) {
                *why = "malformed used ring";
                return -EBADMSG;
        }
        return 1;
}

void virtio_mem_queue_notify(struct virtio_dev *dev, unsigned idx)
{
        struct virtio_mem *m = dev->priv;

        if (idx >= VIRTIO_MEM_NR_QUEUES)
                return;
        if (virtio_dev_serve_queue(dev, idx, handle_chain, m) < 0)
                m->metrics.malformed_events++;
}
