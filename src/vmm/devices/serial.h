/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * 16550A UART (COM1 at 0x3f8, IRQ 4): the guest console. Output goes to out_fd; bytes read from
 * in_fd (if any) arrive as received data. Input is flow-controlled: when the receive buffer is
 * full tidal stops reading in_fd until the guest drains it, so nothing typed is lost.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct kvm_vm;
struct event_loop;
struct event_source;

#define SERIAL_RX_SIZE 4096

struct serial {
        pthread_mutex_t lock;
        struct kvm_vm *kvm;
        unsigned irq;
        int in_fd, out_fd;
        struct event_loop *loop;
        struct event_source *in_src;
        bool in_eof;

        uint8_t ier, lcr, mcr, msr, scr, dll, dlm, fcr;
        bool thre_pending;
        bool irq_level;

        uint8_t rx[SERIAL_RX_SIZE];
        unsigned rx_head, rx_count;
};

/* in_fd < 0: no input. kvm may be NULL in tests that do not look at the IRQ line. */
int serial_init(struct serial *s, struct kvm_vm *kvm, unsigned irq, struct event_loop *loop,
                int in_fd, int out_fd);
void serial_destroy(struct serial *s);

/* struct bus handler for the 8 registers. */
void serial_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* Queues bytes as if they arrived on the line (used by the input path; handy in tests). */
unsigned serial_receive(struct serial *s, const uint8_t *buf, unsigned len);
