/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "tidal/event-loop.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "vmm/devices/serial.h"
#include "vmm/kvm/irq.h"

/* Register offsets and bits (PC16550D datasheet). */
enum {
        UART_RX = 0,
        UART_TX = 0,
        UART_DLL = 0,
        UART_IER = 1,
        UART_DLM = 1,
        UART_IIR = 2,
        UART_FCR = 2,
        UART_LCR = 3,
        UART_MCR = 4,
        UART_LSR = 5,
        UART_MSR = 6,
        UART_SCR = 7,
};
#define UART_IER_RDI        0x01
#define UART_IER_THRI       0x02
#define UART_IER_MSI        0x08
#define UART_IIR_NO_INT     0x01
#define UART_IIR_THRI       0x02
#define UART_IIR_RDI        0x04
#define UART_IIR_FIFO       0xc0
#define UART_FCR_ENABLE     0x01
#define UART_FCR_CLEAR_RCVR 0x02
#define UART_LCR_DLAB       0x80
#define UART_MCR_DTR        0x01
#define UART_MCR_RTS        0x02
#define UART_MCR_OUT1       0x04
#define UART_MCR_OUT2       0x08
#define UART_MCR_LOOP       0x10
#define UART_LSR_DR         0x01
#define UART_LSR_THRE       0x20
#define UART_LSR_TEMT       0x40
#define UART_MSR_CTS        0x10
#define UART_MSR_DSR        0x20
#define UART_MSR_RI         0x40
#define UART_MSR_DCD        0x80

static uint8_t serial_iir(const struct serial *s)
{
        uint8_t fifo = (s->fcr & UART_FCR_ENABLE) ? UART_IIR_FIFO : 0;

        if ((s->ier & UART_IER_RDI) && s->rx_count)
                return UART_IIR_RDI | fifo;
        if ((s->ier & UART_IER_THRI) && s->thre_pending)
                return UART_IIR_THRI | fifo;
        return UART_IIR_NO_INT | fifo;
}

/* On a PC the UART's interrupt reaches the IOAPIC only while OUT2 is set. */
static void update_irq(struct serial *s)
{
        bool level = !(serial_iir(s) & UART_IIR_NO_INT) && (s->mcr & UART_MCR_OUT2);

        if (level == s->irq_level)
                return;
        s->irq_level = level;
        if (s->kvm)
                kvm_irq_line(s->kvm, s->irq, level);
}

static void write_all(int fd, const uint8_t *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, buf, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return; /* console gone: drop output rather than stall the vCPU */
                buf += n;
                len -= (size_t)n;
        }
}

unsigned serial_receive(struct serial *s, const uint8_t *buf, unsigned len)
{
        unsigned n = 0;

        while (n < len && s->rx_count < SERIAL_RX_SIZE) {
                s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_SIZE] = buf[n++];
                s->rx_count++;
        }
        update_irq(s);
        return n;
}

static void input_ready(void *opaque, uint32_t events);

static void input_watch(struct serial *s, bool on)
{
        int r;

        if (on == (s->in_src != NULL) || s->in_eof || s->in_fd < 0 || !s->loop)
                return;
        if (!on) {
                event_source_free(s->in_src);
                s->in_src = NULL;
                return;
        }
        r = event_loop_add_fd(s->loop, s->in_fd, EPOLLIN, input_ready, s, &s->in_src);
        if (r < 0) {
                log_warn_errno(r, "serial: cannot watch console input, input disabled");
                s->in_eof = true;
        }
}

static void input_ready(void *opaque, uint32_t events)
{
        struct serial *s = opaque;
        uint8_t buf[256];
        ssize_t n;

        pthread_mutex_lock(&s->lock);
        if (!s->in_src)
                goto out;
        n = read(s->in_fd, buf, MIN(sizeof(buf), (size_t)(SERIAL_RX_SIZE - s->rx_count)));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                /* End of input: stop watching, the guest keeps running. */
                input_watch(s, false);
                s->in_eof = true;
                goto out;
        }
        if (n > 0)
                serial_receive(s, buf, (unsigned)n);
        if (s->rx_count == SERIAL_RX_SIZE)
                input_watch(s, false); /* resumed once the guest has read some */
out:
        pthread_mutex_unlock(&s->lock);
}

static uint8_t read_rx(struct serial *s)
{
        uint8_t c;

        if (!s->rx_count)
                return 0;
        c = s->rx[s->rx_head];
        s->rx_head = (s->rx_head + 1) % SERIAL_RX_SIZE;
        s->rx_count--;
        if (s->rx_count < SERIAL_RX_SIZE / 2)
                input_watch(s, true);
        return c;
}

/* In loopback the modem outputs feed the modem inputs; the 8250 driver probes this. */
static uint8_t read_msr(const struct serial *s)
{
        uint8_t msr = 0;

        if (!(s->mcr & UART_MCR_LOOP))
                return UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
        if (s->mcr & UART_MCR_RTS)
                msr |= UART_MSR_CTS;
        if (s->mcr & UART_MCR_DTR)
                msr |= UART_MSR_DSR;
        if (s->mcr & UART_MCR_OUT1)
                msr |= UART_MSR_RI;
        if (s->mcr & UART_MCR_OUT2)
                msr |= UART_MSR_DCD;
        return msr;
}

static uint8_t serial_read(struct serial *s, unsigned reg)
{
        bool dlab = s->lcr & UART_LCR_DLAB;
        uint8_t v;

        switch (reg) {
        case UART_RX:
                return dlab ? s->dll : read_rx(s);
        case UART_IER:
                return dlab ? s->dlm : s->ier;
        case UART_IIR:
                v = serial_iir(s);
                /* Reading IIR while it reports THRE acknowledges that interrupt. */
                if ((v & 0x0f) == UART_IIR_THRI)
                        s->thre_pending = false;
                return v;
        case UART_LCR:
                return s->lcr;
        case UART_MCR:
                return s->mcr;
        case UART_LSR:
                return UART_LSR_THRE | UART_LSR_TEMT | (s->rx_count ? UART_LSR_DR : 0);
        case UART_MSR:
                return read_msr(s);
        default:
                return s->scr;
        }
}

static void transmit(struct serial *s, uint8_t c)
{
        if (s->mcr & UART_MCR_LOOP)
                serial_receive(s, &c, 1);
        else
                write_all(s->out_fd, &c, 1);
        /* Sent at once: the holding register is empty again. */
        s->thre_pending = true;
}

static void serial_write(struct serial *s, unsigned reg, uint8_t v)
{
        bool dlab = s->lcr & UART_LCR_DLAB;

        switch (reg) {
        case UART_TX:
                if (dlab)
                        s->dll = v;
                else
                        transmit(s, v);
                break;
        case UART_IER:
                if (dlab) {
                        s->dlm = v;
                        break;
                }
                /* Enabling THRI with an empty holding register raises it straight away. */
                if (!(s->ier & UART_IER_THRI) && (v & UART_IER_THRI))
                        s->thre_pending = true;
                s->ier = v & 0x0f;
                break;
        case UART_FCR:
                s->fcr = v & 0xc9;
                if (v & UART_FCR_CLEAR_RCVR)
                        s->rx_count = 0;
                break;
        case UART_LCR:
                s->lcr = v;
                break;
        case UART_MCR:
                s->mcr = v & 0x1f;
                break;
        case UART_SCR:
                s->scr = v;
                break;
        default:
                break; /* LSR and MSR are read-only */
        }
}

void serial_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
        struct serial *s = opaque;

        if (offset >= 8 || len != 1) {
                if (!is_write)
                        memset(data, 0xff, len);
                return;
        }
        pthread_mutex_lock(&s->lock);
        if (is_write)
                serial_write(s, (unsigned)offset, data[0]);
        else
                data[0] = serial_read(s, (unsigned)offset);
        update_irq(s);
        pthread_mutex_unlock(&s->lock);
}

int serial_init(struct serial *s, struct kvm_vm *kvm, unsigned irq, struct event_loop *loop,
                int in_fd, int out_fd)
{
        memset(s, 0, sizeof(*s));
        pthread_mutex_init(&s->lock, NULL);
        s->kvm = kvm;
        s->irq = irq;
        s->loop = loop;
        s->in_fd = in_fd;
        s->out_fd = out_fd;
        s->lcr = 0x03; /* 8N1 */
        s->dll = 0x0c; /* 9600 baud */
        if (in_fd < 0)
                s->in_eof = true;
        pthread_mutex_lock(&s->lock);
        input_watch(s, true);
        pthread_mutex_unlock(&s->lock);
        return 0;
}

void serial_destroy(struct serial *s)
{
        pthread_mutex_lock(&s->lock);
        input_watch(s, false);
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_destroy(&s->lock);
}
