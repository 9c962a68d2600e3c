/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "vmm/devices/serial.h"
#include "vmm/kvm/irq.h"

/* Fake IOAPIC line: the test looks at the level the UART drives. */
static int irq_level = -1;

int kvm_irq_line(struct kvm_vm *vm, uint32_t gsi, bool level)
{
        assert_int_equal(gsi, 4);
        irq_level = level;
        return 0;
}

static uint8_t rd(struct serial *s, unsigned reg)
{
        uint8_t v;

        serial_io(s, reg, &v, 1, false);
        return v;
}

static void wr(struct serial *s, unsigned reg, uint8_t v)
{
        serial_io(s, reg, &v, 1, true);
}

struct fixture {
        struct serial s;
        int out[2];
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));

        assert_int_equal(pipe2(f->out, O_NONBLOCK), 0);
        assert_int_equal(serial_init(&f->s, (struct kvm_vm *)1, 4, NULL, -1, f->out[1]), 0);
        irq_level = -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        serial_destroy(&f->s);
        close(f->out[0]);
        close(f->out[1]);
        free(f);
        return 0;
}

static void transmit_goes_out(void **state)
{
        struct fixture *f = *state;
        char buf[8] = {0};

        wr(&f->s, 0, 'h');
        wr(&f->s, 0, 'i');
        assert_int_equal(read(f->out[0], buf, sizeof(buf)), 2);
        assert_string_equal(buf, "hi");
        assert_int_equal(rd(&f->s, 5) & 0x60, 0x60); /* THRE | TEMT */
}

static void thre_interrupt(void **state)
{
        struct fixture *f = *state;

        wr(&f->s, 4, 0x08); /* OUT2: route the interrupt */
        assert_int_equal(rd(&f->s, 2) & 0x0f, 0x01);
        wr(&f->s, 1, 0x02); /* enable THRI with an empty THR: fires at once */
        assert_int_equal(irq_level, 1);
        assert_int_equal(rd(&f->s, 2) & 0x0f, 0x02); /* reading IIR acknowledges it */
        assert_int_equal(irq_level, 0);
        assert_int_equal(rd(&f->s, 2) & 0x0f, 0x01);
        wr(&f->s, 0, 'x'); /* sent at once, so THRE again */
        assert_int_equal(irq_level, 1);
        wr(&f->s, 1, 0x00);
        assert_int_equal(irq_level, 0);
        char c;
        assert_int_equal(read(f->out[0], &c, 1), 1);
}

static void receive_and_rdi(void **state)
{
        struct fixture *f = *state;

        wr(&f->s, 4, 0x08);
        wr(&f->s, 1, 0x01);
        assert_int_equal(rd(&f->s, 5) & 0x01, 0);
        assert_int_equal(serial_receive(&f->s, (const uint8_t *)"ok", 2), 2);
        assert_int_equal(irq_level, 1);
        assert_int_equal(rd(&f->s, 2) & 0x0f, 0x04);
        assert_int_equal(rd(&f->s, 5) & 0x01, 1);
        assert_int_equal(rd(&f->s, 0), 'o');
        assert_int_equal(rd(&f->s, 0), 'k');
        assert_int_equal(irq_level, 0);
        assert_int_equal(rd(&f->s, 5) & 0x01, 0);
        assert_int_equal(rd(&f->s, 0), 0); /* empty reads are harmless */
}

static void no_irq_without_out2(void **state)
{
        struct fixture *f = *state;

        wr(&f->s, 1, 0x01);
        serial_receive(&f->s, (const uint8_t *)"x", 1);
        assert_int_not_equal(irq_level, 1);
        wr(&f->s, 4, 0x08);
        assert_int_equal(irq_level, 1);
}

static void rx_buffer_bounded(void **state)
{
        struct fixture *f = *state;
        static uint8_t big[SERIAL_RX_SIZE + 100];

        assert_int_equal(serial_receive(&f->s, big, sizeof(big)), SERIAL_RX_SIZE);
        assert_int_equal(serial_receive(&f->s, big, 1), 0);
        wr(&f->s, 2, 0x03); /* FCR: enable + clear receive FIFO */
        assert_int_equal(rd(&f->s, 5) & 0x01, 0);
        assert_int_equal(rd(&f->s, 2) & 0xc0, 0xc0);
}

static void dlab_and_loopback(void **state)
{
        struct fixture *f = *state;

        wr(&f->s, 3, 0x80);
        wr(&f->s, 0, 0x01);
        wr(&f->s, 1, 0x00);
        assert_int_equal(rd(&f->s, 0), 0x01);
        wr(&f->s, 3, 0x03);
        /* The 8250 driver's loopback probe: RTS|OUT2 reads back as CTS|DCD. */
        wr(&f->s, 4, 0x10 | 0x0a);
        assert_int_equal(rd(&f->s, 6) & 0xf0, 0x90);
        wr(&f->s, 0, 'L');
        assert_int_equal(rd(&f->s, 0), 'L');
        char c;
        assert_int_equal(read(f->out[0], &c, 1), -1); /* nothing went out */
        /* Out-of-range offsets and widths are ignored. */
        uint8_t data[4] = {0};
        serial_io(&f->s, 8, data, 1, false);
        assert_int_equal(data[0], 0xff);
        serial_io(&f->s, 0, data, 4, true);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(transmit_goes_out, setup, teardown),
                cmocka_unit_test_setup_teardown(thre_interrupt, setup, teardown),
                cmocka_unit_test_setup_teardown(receive_and_rdi, setup, teardown),
                cmocka_unit_test_setup_teardown(no_irq_without_out2, setup, teardown),
                cmocka_unit_test_setup_teardown(rx_buffer_bounded, setup, teardown),
                cmocka_unit_test_setup_teardown(dlab_and_loopback, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
