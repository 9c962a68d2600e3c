/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Split virtqueue against synthetic guest memory, including what a hostile driver could queue. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tidal/guest-mem.h"
#include "tidal/virtqueue.h"

#define RAM_GPA   0x10000ull
#define RAM_SIZE  0x40000ull /* 256 KiB */
#define DESC_GPA  (RAM_GPA + 0x0000)
#define AVAIL_GPA (RAM_GPA + 0x2000)
#define USED_GPA  (RAM_GPA + 0x3000)
#define DATA_GPA  (RAM_GPA + 0x10000)
#define QSIZE     16

#define F_NEXT     1
#define F_WRITE    2
#define F_INDIRECT 4

struct ctx {
        uint8_t *ram;
        struct guest_mem mem;
        struct virtq vq;
        uint16_t avail_idx; /* driver side */
};

static void *gpa(struct ctx *c, uint64_t addr)
{
        return c->ram + (addr - RAM_GPA);
}

static void set_desc(struct ctx *c, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
        uint8_t *d = gpa(c, DESC_GPA + 16ull * i);

        memcpy(d, &addr, 8);
        memcpy(d + 8, &len, 4);
        memcpy(d + 12, &flags, 2);
        memcpy(d + 14, &next, 2);
}

static uint16_t *avail_field(struct ctx *c, unsigned i) /* 0 flags, 1 idx, 2.. ring */
{
        return (uint16_t *)gpa(c, AVAIL_GPA) + i;
}

static uint16_t *used_event(struct ctx *c)
{
        return avail_field(c, 2 + c->vq.size);
}

static uint16_t used_idx(struct ctx *c)
{
        return ((uint16_t *)gpa(c, USED_GPA))[1];
}

static uint16_t avail_event(struct ctx *c)
{
        return *(uint16_t *)gpa(c, USED_GPA + 4 + 8ull * c->vq.size);
}

static void used_elem(struct ctx *c, uint16_t slot, uint32_t *id, uint32_t *len)
{
        uint32_t *e = gpa(c, USED_GPA + 4 + 8ull * slot);

        *id = e[0];
        *len = e[1];
}

static void make_avail(struct ctx *c, uint16_t head)
{
        *avail_field(c, 2 + c->avail_idx % c->vq.size) = head;
        c->avail_idx++;
        *avail_field(c, 1) = c->avail_idx;
}

static int setup_size(void **state, uint16_t size)
{
        struct ctx *c = calloc(1, sizeof(*c));

        assert_non_null(c);
        c->ram = aligned_alloc(4096, RAM_SIZE);
        assert_non_null(c->ram);
        memset(c->ram, 0, RAM_SIZE);
        c->mem.nr_regions = 1;
        c->mem.size = RAM_SIZE;
        c->mem.regions[0] =
                (struct guest_mem_region){.gpa = RAM_GPA, .size = RAM_SIZE, .hva = c->ram};

        c->vq.mem = &c->mem;
        virtq_reset(&c->vq);
        assert_ptr_equal(c->vq.mem, &c->mem);
        assert_int_equal(c->vq.msix_vector, 0xffff);
        c->vq.size = size;
        c->vq.desc_gpa = DESC_GPA;
        c->vq.avail_gpa = AVAIL_GPA;
        c->vq.used_gpa = USED_GPA;
        assert_int_equal(virtq_validate_rings(&c->vq), 0);
        c->vq.enabled = true;
        *state = c;
        return 0;
}

static int setup(void **state)
{
        return setup_size(state, QSIZE);
}

static int setup_big(void **state)
{
        return setup_size(state, 128);
}

static int teardown(void **state)
{
        struct ctx *c = *state;

        free(c->ram);
        free(c);
        return 0;
}

static void test_validate_rings(void **state)
{
        struct ctx *c = *state;
        struct virtq vq = c->vq;

        vq.desc_gpa = DESC_GPA + 8; /* descriptors need 16-byte alignment */
        assert_int_equal(virtq_validate_rings(&vq), -EINVAL);
        vq = c->vq;
        vq.avail_gpa = AVAIL_GPA + 1;
        assert_int_equal(virtq_validate_rings(&vq), -EINVAL);
        vq = c->vq;
        vq.used_gpa = USED_GPA + 2;
        assert_int_equal(virtq_validate_rings(&vq), -EINVAL);
        vq = c->vq;
        vq.desc_gpa = 0; /* below RAM */
        assert_int_equal(virtq_validate_rings(&vq), -EINVAL);
        vq = c->vq;
        vq.used_gpa = RAM_GPA + RAM_SIZE - 64; /* runs past the end of RAM */
        assert_int_equal(virtq_validate_rings(&vq), -EINVAL);
        vq = c->vq;
        vq.desc_gpa = UINT64_MAX - 15; /* wraps */
        assert_int_equal(virtq_validate_rings(&vq), -EINVAL);
        vq = c->vq;
        vq.size = 12;
        assert_int_equal(virtq_validate_rings(&vq), -EINVAL);
        vq.size = 0;
        assert_int_equal(virtq_validate_rings(&vq), -EINVAL);
        vq.size = 2048;
        assert_int_equal(virtq_validate_rings(&vq), -EINVAL);
}

static void test_empty(void **state)
{
        struct ctx *c = *state;
        struct virtq_chain chain;

        assert_int_equal(virtq_pop(&c->vq, &chain), 0);
        c->vq.enabled = false;
        make_avail(c, 0);
        assert_int_equal(virtq_pop(&c->vq, &chain), 0); /* disabled queues are never read */
}

static void test_chain(void **state)
{
        struct ctx *c = *state;
        struct virtq_chain chain;
        uint8_t out[12], in[20];
        const char *msg = "hello, world";

        memcpy(gpa(c, DATA_GPA), msg, 5);
        memcpy(gpa(c, DATA_GPA + 0x100), msg + 5, 7);
        set_desc(c, 3, DATA_GPA, 5, F_NEXT, 7);
        set_desc(c, 7, DATA_GPA + 0x100, 7, F_NEXT, 1);
        set_desc(c, 1, DATA_GPA + 0x200, 10, F_NEXT | F_WRITE, 2);
        set_desc(c, 2, DATA_GPA + 0x300, 10, F_WRITE, 0);
        make_avail(c, 3);

        assert_int_equal(virtq_pop(&c->vq, &chain), 1);
        assert_int_equal(chain.head, 3);
        assert_int_equal(chain.nr_bufs, 4);
        assert_int_equal(chain.out_bytes, 12);
        assert_int_equal(chain.in_bytes, 20);
        assert_false(chain.bufs[1].device_writable);
        assert_true(chain.bufs[2].device_writable);
        assert_ptr_equal(chain.bufs[2].hva, gpa(c, DATA_GPA + 0x200));
        assert_int_equal(chain.bufs[3].gpa, DATA_GPA + 0x300);

        assert_int_equal(virtq_chain_read(&chain, 0, out, sizeof(out)), 12);
        assert_memory_equal(out, msg, 12);
        assert_int_equal(virtq_chain_read(&chain, 3, out, 4), 4);
        assert_memory_equal(out, msg + 3, 4);
        assert_int_equal(virtq_chain_read(&chain, 11, out, 10), 1); /* stops at writable bufs */

        memset(in, 0x5a, sizeof(in));
        assert_int_equal(virtq_chain_write(&chain, in, 15), 15);
        assert_int_equal(((uint8_t *)gpa(c, DATA_GPA + 0x309))[0], 0);
        assert_int_equal(((uint8_t *)gpa(c, DATA_GPA + 0x304))[0], 0x5a);
        assert_int_equal(virtq_chain_write(&chain, in, 100), 20);

        assert_int_equal(virtq_push(&c->vq, chain.head, 15), 0);
        assert_int_equal(used_idx(c), 1);
        uint32_t id, len;
        used_elem(c, 0, &id, &len);
        assert_int_equal(id, 3);
        assert_int_equal(len, 15);
        assert_int_equal(virtq_pop(&c->vq, &chain), 0);
        assert_int_equal(virtq_push(&c->vq, QSIZE, 0), -EBADMSG);
}

/* Queues chain head and expects pop to refuse it without consuming it. */
static void expect_bad(struct ctx *c, uint16_t head)
{
        struct virtq_chain chain;
        uint16_t last = c->vq.last_avail_idx;

        make_avail(c, head);
        assert_int_equal(virtq_pop(&c->vq, &chain), -EBADMSG);
        assert_int_equal(c->vq.last_avail_idx, last);
        /* Driver side rewind, so the next case starts clean. */
        c->avail_idx--;
        *avail_field(c, 1) = c->avail_idx;
}

static void test_hostile_descriptors(void **state)
{
        struct ctx *c = *state;

        set_desc(c, 0, RAM_GPA + RAM_SIZE, 16, 0, 0); /* just past RAM */
        expect_bad(c, 0);
        set_desc(c, 0, RAM_GPA - 8, 16, 0, 0); /* straddles the start */
        expect_bad(c, 0);
        set_desc(c, 0, RAM_GPA + RAM_SIZE - 8, 16, 0, 0); /* straddles the end */
        expect_bad(c, 0);
        set_desc(c, 0, UINT64_MAX - 4, 16, 0, 0); /* addr + len wraps */
        expect_bad(c, 0);
        set_desc(c, 0, DATA_GPA, UINT32_MAX, 0, 0); /* too long */
        expect_bad(c, 0);

        set_desc(c, 0, DATA_GPA, 16, F_NEXT, QSIZE); /* next out of range */
        expect_bad(c, 0);
        expect_bad(c, QSIZE);  /* head out of range */
        expect_bad(c, 0xffff); /* ditto */

        set_desc(c, 0, DATA_GPA, 16, F_NEXT, 1); /* loop 0 -> 1 -> 0 */
        set_desc(c, 1, DATA_GPA, 16, F_NEXT, 0);
        expect_bad(c, 0);
        set_desc(c, 0, DATA_GPA, 16, F_NEXT, 0); /* self loop */
        expect_bad(c, 0);

        set_desc(c, 0, DATA_GPA, 16, F_WRITE | F_NEXT, 1); /* readable after writable */
        set_desc(c, 1, DATA_GPA, 16, 0, 0);
        expect_bad(c, 0);
        set_desc(c, 0, DATA_GPA, 0, F_WRITE | F_NEXT, 1); /* even after an empty writable one */
        expect_bad(c, 0);

        set_desc(c, 0, DATA_GPA, 16, F_INDIRECT, 0); /* not negotiated */
        expect_bad(c, 0);

        /* The queue still works after all of that. */
        struct virtq_chain chain;
        set_desc(c, 0, DATA_GPA, 16, 0, 0);
        make_avail(c, 0);
        assert_int_equal(virtq_pop(&c->vq, &chain), 1);
}

static void test_avail_idx_runaway(void **state)
{
        struct ctx *c = *state;
        struct virtq_chain chain;

        set_desc(c, 0, DATA_GPA, 16, 0, 0);
        *avail_field(c, 1) = QSIZE + 1; /* more entries than the ring can hold */
        assert_int_equal(virtq_pop(&c->vq, &chain), -EBADMSG);
        *avail_field(c, 1) = 0xffff; /* "behind" us, i.e. 65535 ahead */
        assert_int_equal(virtq_pop(&c->vq, &chain), -EBADMSG);
        *avail_field(c, 1) = QSIZE; /* exactly full is fine */
        for (unsigned i = 0; i < QSIZE; i++)
                *avail_field(c, 2 + i) = 0;
        for (unsigned i = 0; i < QSIZE; i++)
                assert_int_equal(virtq_pop(&c->vq, &chain), 1);
        assert_int_equal(virtq_pop(&c->vq, &chain), 0);
}

static void test_index_wrap(void **state)
{
        struct ctx *c = *state;
        struct virtq_chain chain;

        c->vq.last_avail_idx = 0xfffe;
        c->vq.used_idx = 0xfffe;
        c->avail_idx = 0xfffe;
        set_desc(c, 5, DATA_GPA, 16, F_WRITE, 0);
        for (unsigned i = 0; i < 4; i++) {
                make_avail(c, 5);
                assert_int_equal(virtq_pop(&c->vq, &chain), 1);
                assert_int_equal(chain.head, 5);
                assert_int_equal(virtq_push(&c->vq, 5, 16), 0);
        }
        assert_int_equal(c->vq.last_avail_idx, 2);
        assert_int_equal(used_idx(c), 2);
}

static void test_long_chains(void **state)
{
        struct ctx *c = *state; /* queue of 128 */
        struct virtq_chain chain;

        for (unsigned i = 0; i < 127; i++)
                set_desc(c, i, DATA_GPA + i, 1, F_NEXT, i + 1);
        /* VIRTQ_MAX_CHAIN descriptors: accepted. */
        set_desc(c, VIRTQ_MAX_CHAIN - 1, DATA_GPA, 1, 0, 0);
        make_avail(c, 0);
        assert_int_equal(virtq_pop(&c->vq, &chain), 1);
        assert_int_equal(chain.nr_bufs, VIRTQ_MAX_CHAIN);
        assert_int_equal(chain.out_bytes, VIRTQ_MAX_CHAIN);

        /* One more: refused although the queue is bigger. */
        set_desc(c, VIRTQ_MAX_CHAIN - 1, DATA_GPA, 1, F_NEXT, VIRTQ_MAX_CHAIN);
        set_desc(c, VIRTQ_MAX_CHAIN, DATA_GPA, 1, 0, 0);
        expect_bad(c, 0);
        /* A loop through the whole table. */
        set_desc(c, 127, DATA_GPA, 1, F_NEXT, 0);
        expect_bad(c, 0);
}

static void test_queue_size_bound(void **state)
{
        struct ctx *c = *state; /* queue of 16: a 17-long chain cannot exist without a loop */

        for (unsigned i = 0; i < QSIZE; i++)
                set_desc(c, i, DATA_GPA, 1, F_NEXT, (i + 1) % QSIZE);
        expect_bad(c, 0);
}

static void test_no_interrupt_flag(void **state)
{
        struct ctx *c = *state;
        struct virtq_chain chain;

        set_desc(c, 0, DATA_GPA, 16, F_WRITE, 0);
        make_avail(c, 0);
        assert_int_equal(virtq_pop(&c->vq, &chain), 1);
        assert_int_equal(virtq_push(&c->vq, 0, 0), 0);
        assert_true(virtq_needs_interrupt(&c->vq));
        *avail_field(c, 0) = 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT */
        assert_false(virtq_needs_interrupt(&c->vq));
}

static void test_event_idx(void **state)
{
        struct ctx *c = *state;
        struct virtq_chain chain;

        c->vq.event_idx = true;
        set_desc(c, 0, DATA_GPA, 16, F_WRITE, 0);
        *avail_field(c, 0) = 1; /* NO_INTERRUPT is ignored with EVENT_IDX */

        /* Going idle publishes avail_event = where we stopped. */
        *(uint16_t *)gpa(c, USED_GPA + 4 + 8ull * c->vq.size) = 0xdead;
        assert_int_equal(virtq_pop(&c->vq, &chain), 0);
        assert_int_equal(avail_event(c), 0);
        make_avail(c, 0);
        make_avail(c, 0);
        assert_int_equal(virtq_pop(&c->vq, &chain), 1);
        assert_int_equal(avail_event(c), 1);
        assert_int_equal(virtq_pop(&c->vq, &chain), 1);
        assert_int_equal(virtq_pop(&c->vq, &chain), 0);
        assert_int_equal(avail_event(c), 2);

        /* The driver wants an interrupt once used entry 0 is there. */
        *used_event(c) = 0;
        assert_int_equal(virtq_push(&c->vq, 0, 1), 0);
        assert_true(virtq_needs_interrupt(&c->vq)); /* first call: nothing signalled yet */
        assert_int_equal(virtq_push(&c->vq, 0, 1), 0);
        assert_false(virtq_needs_interrupt(&c->vq)); /* entry 1 is past used_event */

        /* Now it asks for entry 3: entry 2 stays quiet, entry 3 interrupts. */
        *used_event(c) = 3;
        make_avail(c, 0);
        make_avail(c, 0);
        assert_int_equal(virtq_pop(&c->vq, &chain), 1);
        assert_int_equal(virtq_push(&c->vq, 0, 1), 0);
        assert_false(virtq_needs_interrupt(&c->vq));
        assert_int_equal(virtq_pop(&c->vq, &chain), 1);
        assert_int_equal(virtq_push(&c->vq, 0, 1), 0);
        assert_true(virtq_needs_interrupt(&c->vq));

        /* Several pushes before one check: interrupt if used_event was crossed by any. */
        *used_event(c) = 4;
        for (unsigned i = 0; i < 3; i++) {
                make_avail(c, 0);
                assert_int_equal(virtq_pop(&c->vq, &chain), 1);
                assert_int_equal(virtq_push(&c->vq, 0, 1), 0);
        }
        assert_true(virtq_needs_interrupt(&c->vq));
        assert_false(virtq_needs_interrupt(&c->vq)); /* nothing new since */
}

static void test_reset(void **state)
{
        struct ctx *c = *state;

        c->vq.last_avail_idx = 7;
        c->vq.msix_vector = 2;
        virtq_reset(&c->vq);
        assert_false(c->vq.enabled);
        assert_int_equal(c->vq.size, 0);
        assert_int_equal(c->vq.last_avail_idx, 0);
        assert_int_equal(c->vq.msix_vector, 0xffff);
        assert_ptr_equal(c->vq.mem, &c->mem);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_validate_rings, setup, teardown),
                cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
                cmocka_unit_test_setup_teardown(test_chain, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_descriptors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_avail_idx_runaway, setup, teardown),
                cmocka_unit_test_setup_teardown(test_index_wrap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_chains, setup_big, teardown),
                cmocka_unit_test_setup_teardown(test_queue_size_bound, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_interrupt_flag, setup, teardown),
                cmocka_unit_test_setup_teardown(test_event_idx, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
