/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-pci modern transport, driven like a guest driver would: walk the capabilities, negotiate
 * features, set up queues, program MSI-X, kick queues. The KVM side (src/vmm/kvm/irq.h) is faked
 * here: routes, irqfds and ioeventfds are recorded, and an ioeventfd "fires" by the test writing
 * its eventfd the way KVM would.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>

#include <cmocka.h>
#include <linux/pci_regs.h>
#define VIRTIO_PCI_NO_LEGACY
#include <linux/virtio_pci.h>

#include "tidal/event-loop.h"
#include "tidal/guest-mem.h"
#include "tidal/virtio-dev.h"
#include "vmm/bus.h"
#include "vmm/kvm/irq.h"
#include "vmm/pci/pci.h"
#include "vmm/virtio/pci-modern.h"
#include "vmm/virtio/rng.h"

#define RAM_SIZE (1024 * 1024)
#define SLOT     1
#define NO_VEC   0xffff

/* ---- Fake KVM interrupt plumbing --------------------------------------------------------- */

#define FAKE_GSI_BASE 24
#define FAKE_MAX_GSI  64
#define FAKE_MAX_IOEV 16

static struct {
        pthread_mutex_t lock;
        unsigned next_gsi;
        bool used[FAKE_MAX_GSI];
        int irqfd[FAKE_MAX_GSI];
        struct msi_msg route[FAKE_MAX_GSI];
        unsigned route_sets[FAKE_MAX_GSI];
        unsigned nr_ioev;
        struct {
                uint64_t addr;
                int fd;
        } ioev[FAKE_MAX_IOEV];
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

int kvm_irq_line(struct kvm_vm *vm, uint32_t gsi, bool level)
{
        (void)vm;
        (void)gsi;
        (void)level;
        return 0;
}

int kvm_msi_route_alloc(struct kvm_vm *vm, uint32_t *ret_gsi)
{
        (void)vm;
        pthread_mutex_lock(&fake.lock);
        for (unsigned g = 0; g < FAKE_MAX_GSI; g++) {
                if (!fake.used[g]) {
                        fake.used[g] = true;
                        fake.irqfd[g] = -1;
                        fake.route_sets[g] = 0;
                        *ret_gsi = FAKE_GSI_BASE + g;
                        pthread_mutex_unlock(&fake.lock);
                        return 0;
                }
        }
        pthread_mutex_unlock(&fake.lock);
        return -ENOSPC;
}

int kvm_msi_route_set(struct kvm_vm *vm, uint32_t gsi, const struct msi_msg *msg)
{
        (void)vm;
        assert_true(gsi >= FAKE_GSI_BASE && gsi < FAKE_GSI_BASE + FAKE_MAX_GSI);
        pthread_mutex_lock(&fake.lock);
        assert_true(fake.used[gsi - FAKE_GSI_BASE]);
        fake.route[gsi - FAKE_GSI_BASE] = *msg;
        fake.route_sets[gsi - FAKE_GSI_BASE]++;
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

void kvm_msi_route_free(struct kvm_vm *vm, uint32_t gsi)
{
        (void)vm;
        pthread_mutex_lock(&fake.lock);
        assert_true(fake.used[gsi - FAKE_GSI_BASE]);
        fake.used[gsi - FAKE_GSI_BASE] = false;
        pthread_mutex_unlock(&fake.lock);
}

int kvm_irqfd(struct kvm_vm *vm, int eventfd, uint32_t gsi, bool assign)
{
        (void)vm;
        pthread_mutex_lock(&fake.lock);
        if (assign) {
                assert_int_equal(fake.irqfd[gsi - FAKE_GSI_BASE], -1);
                fake.irqfd[gsi - FAKE_GSI_BASE] = eventfd;
        } else {
                assert_int_equal(fake.irqfd[gsi - FAKE_GSI_BASE], eventfd);
                fake.irqfd[gsi - FAKE_GSI_BASE] = -1;
        }
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

int kvm_ioeventfd(struct kvm_vm *vm, uint64_t addr, uint32_t len, int eventfd, bool mmio,
                  bool assign)
{
        int r = 0;

        (void)vm;
        assert_int_equal(len, 0);
        assert_true(mmio);
        pthread_mutex_lock(&fake.lock);
        if (assign) {
                for (unsigned i = 0; i < fake.nr_ioev; i++)
                        if (fake.ioev[i].addr == addr)
                                r = -EEXIST;
                if (!r) {
                        assert_true(fake.nr_ioev < FAKE_MAX_IOEV);
                        fake.ioev[fake.nr_ioev].addr = addr;
                        fake.ioev[fake.nr_ioev++].fd = eventfd;
                }
        } else {
                r = -ENOENT;
                for (unsigned i = 0; i < fake.nr_ioev; i++) {
                        if (fake.ioev[i].addr == addr && fake.ioev[i].fd == eventfd) {
                                fake.ioev[i] = fake.ioev[--fake.nr_ioev];
                                r = 0;
                                break;
                        }
                }
        }
        pthread_mutex_unlock(&fake.lock);
        return r;
}

static int ioev_fd_at(uint64_t addr)
{
        int fd = -1;

        pthread_mutex_lock(&fake.lock);
        for (unsigned i = 0; i < fake.nr_ioev; i++)
                if (fake.ioev[i].addr == addr)
                        fd = fake.ioev[i].fd;
        pthread_mutex_unlock(&fake.lock);
        return fd;
}

/* ---- A fake device with two queues and 8 bytes of config --------------------------------- */

struct fake_dev {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned notified[2];
        unsigned activated, resets;
        uint64_t activated_features;
        uint8_t config[8];
};

static uint64_t fake_features(struct virtio_dev *dev)
{
        (void)dev;
        return 1u | UINT64_C(1) << VIRTIO_F_EVENT_IDX;
}

static void fake_read_config(struct virtio_dev *dev, uint32_t off, void *data, uint32_t len)
{
        struct fake_dev *f = dev->priv;

        assert_true(off + len <= sizeof(f->config));
        memcpy(data, f->config + off, len);
}

static void fake_write_config(struct virtio_dev *dev, uint32_t off, const void *data, uint32_t len)
{
        struct fake_dev *f = dev->priv;

        assert_true(off + len <= sizeof(f->config));
        memcpy(f->config + off, data, len);
}

static int fake_activate(struct virtio_dev *dev, uint64_t features)
{
        struct fake_dev *f = dev->priv;

        f->activated++;
        f->activated_features = features;
        return 0;
}

static void fake_queue_notify(struct virtio_dev *dev, unsigned idx)
{
        struct fake_dev *f = dev->priv;

        assert_true(idx < 2);
        pthread_mutex_lock(&f->lock);
        f->notified[idx]++;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
}

static void fake_reset(struct virtio_dev *dev)
{
        struct fake_dev *f = dev->priv;

        f->resets++;
}

static const struct virtio_dev_ops fake_ops = {
        .name = "fake",
        .device_id = 26,
        .pci_class = 0x058000,
        .nr_queues = 2,
        .queue_max_size = 64,
        .config_size = 8,
        .features = fake_features,
        .read_config = fake_read_config,
        .write_config = fake_write_config,
        .activate = fake_activate,
        .queue_notify = fake_queue_notify,
        .reset = fake_reset,
};

/* ---- Fixture ------------------------------------------------------------------------------ */

struct caps {
        int common, notify, isr, device, pci_cfg, msix; /* config offsets, 0 if absent */
        uint32_t common_off, common_len, notify_off, notify_len, notify_mult, isr_off, isr_len;
        uint32_t device_off, device_len;
};

struct ctx {
        struct bus pio, mmio;
        struct pci_bus pci;
        struct event_loop *loop;
        pthread_t thread;
        uint8_t *ram;
        struct guest_mem mem;
        struct virtio_dev *dev;
        struct fake_dev fake;
        bool is_rng;
        struct virtio_pci *vpci;
        uint64_t bar;
        struct caps caps;
};

static uint32_t pio_read(struct ctx *c, uint16_t port, uint32_t len)
{
        uint8_t b[4] = {0};
        uint32_t v = 0;

        bus_access(&c->pio, port, b, len, false);
        for (uint32_t i = 0; i < len; i++)
                v |= (uint32_t)b[i] << (8 * i);
        return v;
}

static void pio_write(struct ctx *c, uint16_t port, uint32_t len, uint32_t v)
{
        uint8_t b[4];

        for (uint32_t i = 0; i < 4; i++)
                b[i] = v >> (8 * i);
        bus_access(&c->pio, port, b, len, true);
}

static uint32_t cfg_read(struct ctx *c, unsigned reg, uint32_t len)
{
        pio_write(c, 0xcf8, 4, 0x80000000u | SLOT << 11 | (reg & 0xfc));
        return pio_read(c, 0xcfc + (reg & 3), len);
}

static void cfg_write(struct ctx *c, unsigned reg, uint32_t len, uint32_t v)
{
        pio_write(c, 0xcf8, 4, 0x80000000u | SLOT << 11 | (reg & 0xfc));
        pio_write(c, 0xcfc + (reg & 3), len, v);
}

static uint64_t bar_read(struct ctx *c, uint64_t off, uint32_t len)
{
        uint8_t b[8] = {0};
        uint64_t v = 0;

        assert_int_equal(bus_access(&c->mmio, c->bar + off, b, len, false), 0);
        for (uint32_t i = 0; i < len; i++)
                v |= (uint64_t)b[i] << (8 * i);
        return v;
}

static void bar_write(struct ctx *c, uint64_t off, uint32_t len, uint64_t v)
{
        uint8_t b[8];

        for (uint32_t i = 0; i < 8; i++)
                b[i] = v >> (8 * i);
        assert_int_equal(bus_access(&c->mmio, c->bar + off, b, len, true), 0);
}

static uint64_t common_read(struct ctx *c, unsigned field, uint32_t len)
{
        return bar_read(c, c->caps.common_off + field, len);
}

static void common_write(struct ctx *c, unsigned field, uint32_t len, uint64_t v)
{
        bar_write(c, c->caps.common_off + field, len, v);
}

static void *loop_thread(void *opaque)
{
        struct ctx *c = opaque;

        assert_int_equal(event_loop_run(c->loop), 0);
        return NULL;
}

/* Walks the capability list as virtio_pci_modern's probe does. */
static void find_caps(struct ctx *c)
{
        struct caps *k = &c->caps;
        unsigned n = 0;

        memset(k, 0, sizeof(*k));
        assert_true(cfg_read(c, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
        for (unsigned p = cfg_read(c, PCI_CAPABILITY_LIST, 1); p; p = cfg_read(c, p + 1, 1)) {
                unsigned id = cfg_read(c, p, 1);

                assert_true(p >= 0x40 && p < 0x100 && p % 4 == 0);
                assert_true(++n < 16);
                if (id == PCI_CAP_ID_MSIX) {
                        k->msix = p;
                        continue;
                }
                assert_int_equal(id, PCI_CAP_ID_VNDR);
                unsigned type = cfg_read(c, p + VIRTIO_PCI_CAP_CFG_TYPE, 1);
                uint32_t off = cfg_read(c, p + VIRTIO_PCI_CAP_OFFSET, 4);
                uint32_t len = cfg_read(c, p + VIRTIO_PCI_CAP_LENGTH, 4);
                unsigned cap_len = cfg_read(c, p + VIRTIO_PCI_CAP_LEN, 1);

                assert_int_equal(cfg_read(c, p + VIRTIO_PCI_CAP_BAR, 1), 0);
                assert_true((uint64_t)off + len <= VPCI_BAR_SIZE);
                switch (type) {
                case VIRTIO_PCI_CAP_COMMON_CFG:
                        assert_int_equal(k->common, 0);
                        assert_int_equal(cap_len, 16);
                        k->common = p, k->common_off = off, k->common_len = len;
                        break;
                case VIRTIO_PCI_CAP_NOTIFY_CFG:
                        assert_int_equal(k->notify, 0);
                        assert_int_equal(cap_len, 20);
                        k->notify = p, k->notify_off = off, k->notify_len = len;
                        k->notify_mult = cfg_read(c, p + VIRTIO_PCI_NOTIFY_CAP_MULT, 4);
                        break;
                case VIRTIO_PCI_CAP_ISR_CFG:
                        k->isr = p, k->isr_off = off, k->isr_len = len;
                        break;
                case VIRTIO_PCI_CAP_DEVICE_CFG:
                        k->device = p, k->device_off = off, k->device_len = len;
                        break;
                case VIRTIO_PCI_CAP_PCI_CFG:
                        assert_int_equal(cap_len, 20);
                        k->pci_cfg = p;
                        break;
                default:
                        fail_msg("unexpected virtio cap type %u", type);
                }
        }
}

static int setup_common(void **state, bool rng)
{
        struct ctx *c = calloc(1, sizeof(*c));

        assert_non_null(c);
        c->is_rng = rng;
        c->ram = aligned_alloc(4096, RAM_SIZE);
        assert_non_null(c->ram);
        memset(c->ram, 0, RAM_SIZE);
        c->mem.nr_regions = 1;
        c->mem.size = RAM_SIZE;
        c->mem.regions[0] = (struct guest_mem_region){.gpa = 0, .size = RAM_SIZE, .hva = c->ram};

        bus_init(&c->pio, "pio");
        bus_init(&c->mmio, "mmio");
        assert_int_equal(pci_bus_init(&c->pci, &c->pio, &c->mmio), 0);
        assert_int_equal(event_loop_new(&c->loop), 0);
        assert_int_equal(pthread_create(&c->thread, NULL, loop_thread, c), 0);

        if (rng) {
                assert_int_equal(virtio_rng_new(&c->dev), 0);
        } else {
                c->dev = calloc(1, sizeof(*c->dev));
                assert_non_null(c->dev);
                c->dev->ops = &fake_ops;
                c->dev->priv = &c->fake;
                pthread_mutex_init(&c->fake.lock, NULL);
                pthread_cond_init(&c->fake.cond, NULL);
                memcpy(c->fake.config, "tidal!\0\x07", 8);
        }
        assert_int_equal(virtio_pci_create(&c->pci, NULL, c->loop, &c->mem, c->dev, &c->vpci), 0);

        find_caps(c);
        c->bar = (cfg_read(c, PCI_BASE_ADDRESS_0, 4) & ~0xfull) |
                 (uint64_t)cfg_read(c, PCI_BASE_ADDRESS_1, 4) << 32;
        cfg_write(c, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
        *state = c;
        return 0;
}

static int setup_fake(void **state)
{
        return setup_common(state, false);
}

static int setup_rng(void **state)
{
        return setup_common(state, true);
}

static int teardown(void **state)
{
        struct ctx *c = *state;

        /* The loop stops first: transport teardown frees its event sources. */
        event_loop_quit(c->loop);
        assert_int_equal(pthread_join(c->thread, NULL), 0);
        pci_bus_destroy(&c->pci);
        /* Every GSI, irqfd and ioeventfd went back. */
        for (unsigned g = 0; g < FAKE_MAX_GSI; g++)
                assert_false(fake.used[g]);
        assert_int_equal(fake.nr_ioev, 0);
        if (c->is_rng) {
                virtio_rng_free(c->dev);
        } else {
                pthread_mutex_destroy(&c->fake.lock);
                pthread_cond_destroy(&c->fake.cond);
                free(c->dev);
        }
        event_loop_free(c->loop);
        bus_destroy(&c->pio);
        bus_destroy(&c->mmio);
        free(c->ram);
        free(c);
        return 0;
}

/* ---- Driver-side helpers ------------------------------------------------------------------ */

static uint8_t status(struct ctx *c)
{
        return common_read(c, VIRTIO_PCI_COMMON_STATUS, 1);
}

static void set_status(struct ctx *c, uint8_t s)
{
        common_write(c, VIRTIO_PCI_COMMON_STATUS, 1, s);
}

static uint8_t negotiate(struct ctx *c, uint64_t features)
{
        set_status(c, 0);
        set_status(c, VIRTIO_STATUS_ACKNOWLEDGE);
        set_status(c, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
        common_write(c, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
        common_write(c, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)features);
        common_write(c, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
        common_write(c, VIRTIO_PCI_COMMON_GF, 4, features >> 32);
        set_status(c, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
        return status(c);
}

#define STATUS_FEATURES_OK                                                                         \
        (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK)
#define F_VERSION_1 (UINT64_C(1) << VIRTIO_F_VERSION_1)
#define F_EVENT_IDX (UINT64_C(1) << VIRTIO_F_EVENT_IDX)

/* Rings of queue q at 0x10000 * (q + 1): desc, avail at +0x1000, used at +0x2000. */
static uint64_t ring_base(unsigned q)
{
        return 0x10000ull * (q + 1);
}

static void setup_queue(struct ctx *c, unsigned q, uint16_t size, uint16_t vector)
{
        uint64_t base = ring_base(q);

        common_write(c, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
        common_write(c, VIRTIO_PCI_COMMON_Q_SIZE, 2, size);
        common_write(c, VIRTIO_PCI_COMMON_Q_DESCLO, 4, (uint32_t)base);
        common_write(c, VIRTIO_PCI_COMMON_Q_DESCHI, 4, base >> 32);
        common_write(c, VIRTIO_PCI_COMMON_Q_AVAILLO, 4, (uint32_t)(base + 0x1000));
        common_write(c, VIRTIO_PCI_COMMON_Q_AVAILHI, 4, 0);
        common_write(c, VIRTIO_PCI_COMMON_Q_USEDLO, 8, base + 0x2000); /* one 64-bit write */
        common_write(c, VIRTIO_PCI_COMMON_Q_MSIX, 2, vector);
        common_write(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
}

static uint32_t msix_table(struct ctx *c)
{
        return cfg_read(c, c->caps.msix + PCI_MSIX_TABLE, 4) & ~7u;
}

static void msix_entry(struct ctx *c, unsigned v, uint64_t addr, uint32_t data, uint32_t ctrl)
{
        uint32_t e = msix_table(c) + 16 * v;

        bar_write(c, e + PCI_MSIX_ENTRY_LOWER_ADDR, 4, (uint32_t)addr);
        bar_write(c, e + PCI_MSIX_ENTRY_UPPER_ADDR, 4, addr >> 32);
        bar_write(c, e + PCI_MSIX_ENTRY_DATA, 4, data);
        bar_write(c, e + PCI_MSIX_ENTRY_VECTOR_CTRL, 4, ctrl);
}

static void msix_control(struct ctx *c, uint16_t flags)
{
        cfg_write(c, c->caps.msix + PCI_MSIX_FLAGS, 2, flags);
}

/* GSI the transport allocated for vector v: they are taken in order. */
static unsigned vec_slot(unsigned v)
{
        return v;
}

static int irqfd_of(unsigned v)
{
        return fake.irqfd[vec_slot(v)];
}

/* Waits up to timeout_ms for vector v's irqfd; returns the count (0 on timeout). */
static uint64_t wait_irq(unsigned v, int timeout_ms)
{
        struct pollfd p = {.fd = irqfd_of(v), .events = POLLIN};
        eventfd_t n = 0;

        if (poll(&p, 1, timeout_ms) == 1)
                assert_int_equal(eventfd_read(p.fd, &n), 0);
        return n;
}

static bool wait_notified(struct ctx *c, unsigned q, unsigned count, int timeout_ms)
{
        struct timespec ts;
        bool ok;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&c->fake.lock);
        while (c->fake.notified[q] < count)
                if (pthread_cond_timedwait(&c->fake.cond, &c->fake.lock, &ts) == ETIMEDOUT)
                        break;
        ok = c->fake.notified[q] >= count;
        pthread_mutex_unlock(&c->fake.lock);
        return ok;
}

/* ---- Tests -------------------------------------------------------------------------------- */

static void test_identity(void **state)
{
        struct ctx *c = *state;
        uint32_t lo, hi;

        assert_int_equal(cfg_read(c, PCI_VENDOR_ID, 2), 0x1af4);
        assert_int_equal(cfg_read(c, PCI_DEVICE_ID, 2), 0x1040 + 26);
        assert_int_equal(cfg_read(c, PCI_REVISION_ID, 1), 1);
        assert_int_equal(cfg_read(c, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
        assert_int_equal(cfg_read(c, PCI_SUBSYSTEM_ID, 2), 26);
        assert_int_equal(cfg_read(c, PCI_CLASS_REVISION, 4) >> 8, 0x058000);
        assert_int_equal(cfg_read(c, PCI_INTERRUPT_PIN, 1), 0);

        /* One 64-bit non-prefetchable BAR of 32 KiB. */
        cfg_write(c, PCI_COMMAND, 2, 0);
        lo = cfg_read(c, PCI_BASE_ADDRESS_0, 4);
        hi = cfg_read(c, PCI_BASE_ADDRESS_1, 4);
        assert_int_equal(lo & 0xf, PCI_BASE_ADDRESS_MEM_TYPE_64);
        cfg_write(c, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
        cfg_write(c, PCI_BASE_ADDRESS_1, 4, 0xffffffff);
        assert_int_equal(cfg_read(c, PCI_BASE_ADDRESS_0, 4), (uint32_t) ~(VPCI_BAR_SIZE - 1) | 4);
        assert_int_equal(cfg_read(c, PCI_BASE_ADDRESS_1, 4), 0xffffffff);
        cfg_write(c, PCI_BASE_ADDRESS_0, 4, lo);
        cfg_write(c, PCI_BASE_ADDRESS_1, 4, hi);
        for (unsigned b = 2; b < 6; b++)
                assert_int_equal(cfg_read(c, PCI_BASE_ADDRESS_0 + 4 * b, 4), 0);
}

static void test_caps_layout(void **state)
{
        struct ctx *c = *state;
        struct caps *k = &c->caps;
        uint16_t ctrl;

        assert_true(k->common && k->notify && k->isr && k->device && k->pci_cfg && k->msix);
        assert_true(k->common_len >= 56); /* sizeof(struct virtio_pci_common_cfg) */
        assert_int_equal(k->notify_mult, 4);
        assert_true(k->notify_len >= 4 * 2);
        assert_true(k->isr_len >= 1);
        assert_int_equal(k->device_len, 8);
        /* Structures do not overlap each other or the MSI-X pages. */
        assert_true(k->common_off + k->common_len <= k->isr_off);
        assert_true(k->isr_off + k->isr_len <= k->device_off);
        assert_true(k->device_off + k->device_len <= k->notify_off);

        ctrl = cfg_read(c, k->msix + PCI_MSIX_FLAGS, 2);
        assert_int_equal(ctrl & PCI_MSIX_FLAGS_QSIZE, 2); /* 3 vectors: 2 queues + config */
        assert_false(ctrl & PCI_MSIX_FLAGS_ENABLE);
        assert_int_equal(cfg_read(c, k->msix + PCI_MSIX_TABLE, 4) & 7, 0); /* BIR 0 */
        assert_int_equal(cfg_read(c, k->msix + PCI_MSIX_PBA, 4) & 7, 0);
        assert_int_equal(msix_table(c) % 4096, 0);
        assert_true(k->notify_off + k->notify_len <= msix_table(c));
        /* Table entries come out of reset masked. */
        assert_int_equal(bar_read(c, msix_table(c) + 12, 4), 1);
        /* Message Control: only enable and function mask are writable. */
        msix_control(c, 0xffff);
        assert_int_equal(cfg_read(c, k->msix + PCI_MSIX_FLAGS, 2),
                         PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL | 2);
        msix_control(c, 0);
        /* Cap payloads are read-only. */
        cfg_write(c, k->notify + VIRTIO_PCI_NOTIFY_CAP_MULT, 4, 0);
        assert_int_equal(cfg_read(c, k->notify + VIRTIO_PCI_NOTIFY_CAP_MULT, 4), 4);
}

static void test_rng_caps(void **state)
{
        struct ctx *c = *state;

        assert_int_equal(cfg_read(c, PCI_DEVICE_ID, 2), 0x1044);
        assert_int_equal(cfg_read(c, PCI_SUBSYSTEM_ID, 2), 4);
        assert_int_equal(c->caps.device, 0); /* no config space, no DEVICE_CFG */
        assert_true(c->caps.common && c->caps.notify && c->caps.isr && c->caps.pci_cfg);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_NUMQ, 2), 1);
        common_write(c, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_SIZE, 2), 256);
}

static void test_features(void **state)
{
        struct ctx *c = *state;

        common_write(c, VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_DF, 4), 1u | 1u << VIRTIO_F_EVENT_IDX);
        common_write(c, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_DF, 4), 1); /* VERSION_1 */
        common_write(c, VIRTIO_PCI_COMMON_DFSELECT, 4, 2);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_DF, 4), 0);
        common_write(c, VIRTIO_PCI_COMMON_DFSELECT, 4, 0xffffffff);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_DF, 4), 0);

        /* Refused: no VERSION_1 (a legacy driver), a bit never offered, a high bit. */
        assert_int_equal(negotiate(c, 1), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
        assert_int_equal(negotiate(c, F_VERSION_1 | 1u << VIRTIO_F_INDIRECT_DESC),
                         VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
        assert_int_equal(negotiate(c, F_VERSION_1 | UINT64_C(1) << 40),
                         VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
        /* DRIVER_OK without FEATURES_OK does not stick either. */
        set_status(c, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
        assert_false(status(c) & VIRTIO_STATUS_DRIVER_OK);
        assert_int_equal(c->fake.activated, 0);

        assert_int_equal(negotiate(c, F_VERSION_1 | F_EVENT_IDX | 1), STATUS_FEATURES_OK);
        assert_int_equal(c->dev->driver_features, F_VERSION_1 | F_EVENT_IDX | 1);
        /* Frozen after FEATURES_OK. */
        common_write(c, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
        common_write(c, VIRTIO_PCI_COMMON_GF, 4, 0);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_GF, 4), 1u | 1u << VIRTIO_F_EVENT_IDX);
        /* Clearing status bits without a reset is not possible. */
        set_status(c, VIRTIO_STATUS_ACKNOWLEDGE);
        assert_int_equal(status(c), STATUS_FEATURES_OK);

        set_status(c, STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
        assert_int_equal(status(c), STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
        assert_int_equal(c->fake.activated, 1);
        assert_int_equal(c->fake.activated_features, F_VERSION_1 | F_EVENT_IDX | 1);
        /* The driver cannot claim NEEDS_RESET. */
        set_status(c, 0xff & ~VIRTIO_STATUS_FAILED);
        assert_false(status(c) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

static void test_queue_setup(void **state)
{
        struct ctx *c = *state;

        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_NUMQ, 2), 2);
        common_write(c, VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_NOFF, 2), 1);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_MSIX, 2), NO_VEC);
        /* A queue that does not exist reads size 0 and ignores writes. */
        common_write(c, VIRTIO_PCI_COMMON_Q_SELECT, 2, 2);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
        common_write(c, VIRTIO_PCI_COMMON_Q_SIZE, 2, 16);
        common_write(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
        assert_int_equal(status(c), 0);

        /* Enabling before FEATURES_OK is a protocol violation. */
        setup_queue(c, 0, 16, 1);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
        assert_true(status(c) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);

        assert_int_equal(negotiate(c, F_VERSION_1), STATUS_FEATURES_OK);
        setup_queue(c, 0, 16, 1);
        setup_queue(c, 1, 64, 7); /* vector 7 does not exist */
        common_write(c, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_SIZE, 2), 16);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_DESCLO, 4), ring_base(0));
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_USEDLO, 8), ring_base(0) + 0x2000);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_USEDHI, 4), 0);
        /* Addresses are frozen while enabled. */
        common_write(c, VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x4000);
        common_write(c, VIRTIO_PCI_COMMON_Q_SIZE, 2, 32);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_DESCLO, 4), ring_base(0));
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_SIZE, 2), 16);
        assert_true(c->dev->queues[0].enabled);
        assert_int_equal(c->dev->queues[0].size, 16);

        common_write(c, VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_MSIX, 2), NO_VEC);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
        assert_int_equal(status(c), STATUS_FEATURES_OK);

        /* One ioeventfd per enabled queue, at its notify address. */
        assert_int_equal(fake.nr_ioev, 2);
        assert_true(ioev_fd_at(c->bar + c->caps.notify_off) >= 0);
        assert_true(ioev_fd_at(c->bar + c->caps.notify_off + 1 * c->caps.notify_mult) >= 0);

        /* Config vector: in range sticks, out of range reads NO_VECTOR. */
        common_write(c, VIRTIO_PCI_COMMON_MSIX, 2, 2);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_MSIX, 2), 2);
        common_write(c, VIRTIO_PCI_COMMON_MSIX, 2, 3);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_MSIX, 2), NO_VEC);

        /* Odd widths and misaligned accesses are ignored, not misinterpreted. */
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_NUMQ, 4), 0);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_SELECT + 1, 1), 0);
        common_write(c, VIRTIO_PCI_COMMON_STATUS, 2, 0); /* not a reset */
        assert_int_equal(status(c), STATUS_FEATURES_OK);
}

static void test_queue_bad_rings(void **state)
{
        struct ctx *c = *state;

        assert_int_equal(negotiate(c, F_VERSION_1), STATUS_FEATURES_OK);
        common_write(c, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
        common_write(c, VIRTIO_PCI_COMMON_Q_DESCLO, 4, RAM_SIZE - 16); /* past the end of RAM */
        common_write(c, VIRTIO_PCI_COMMON_Q_AVAILLO, 4, 0x1000);
        common_write(c, VIRTIO_PCI_COMMON_Q_USEDLO, 4, 0x2000);
        common_write(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
        assert_true(status(c) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        assert_int_equal(fake.nr_ioev, 0);

        /* Not a power of two; then larger than the device's maximum. */
        assert_int_equal(negotiate(c, F_VERSION_1), STATUS_FEATURES_OK);
        setup_queue(c, 0, 24, 0);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
        assert_true(status(c) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        assert_int_equal(negotiate(c, F_VERSION_1), STATUS_FEATURES_OK);
        setup_queue(c, 0, 128, 0);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
        assert_true(status(c) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        /* A smaller power of two is fine. */
        assert_int_equal(negotiate(c, F_VERSION_1), STATUS_FEATURES_OK);
        setup_queue(c, 0, 2, 0);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
}

static void test_reset(void **state)
{
        struct ctx *c = *state;

        msix_control(c, PCI_MSIX_FLAGS_ENABLE);
        msix_entry(c, 1, 0xfee01000, 0x41, 0);
        assert_int_equal(negotiate(c, F_VERSION_1 | F_EVENT_IDX), STATUS_FEATURES_OK);
        setup_queue(c, 0, 16, 1);
        common_write(c, VIRTIO_PCI_COMMON_MSIX, 2, 0);
        set_status(c, STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
        assert_int_equal(fake.nr_ioev, 1);

        unsigned resets = c->fake.resets;
        set_status(c, 0);
        assert_int_equal(status(c), 0);
        assert_int_equal(c->fake.resets, resets + 1);
        assert_int_equal(c->dev->driver_features, 0);
        common_write(c, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_GF, 4), 0);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_MSIX, 2), NO_VEC);
        common_write(c, VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_MSIX, 2), NO_VEC);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0);
        assert_int_equal(fake.nr_ioev, 0);
        /* MSI-X is PCI function state: the table and the enable bit stay. */
        assert_int_equal(bar_read(c, msix_table(c) + 16 + PCI_MSIX_ENTRY_LOWER_ADDR, 4),
                         0xfee01000);
        assert_int_equal(bar_read(c, msix_table(c) + 16 + PCI_MSIX_ENTRY_DATA, 4), 0x41);
        assert_true(cfg_read(c, c->caps.msix + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_ENABLE);

        /* And the device can be brought up again. */
        assert_int_equal(negotiate(c, F_VERSION_1), STATUS_FEATURES_OK);
        setup_queue(c, 0, 16, 1);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
        /* VMM-side reset too. */
        virtio_pci_reset(c->vpci);
        assert_int_equal(status(c), 0);
        assert_int_equal(fake.nr_ioev, 0);
}

static void test_bar_move(void **state)
{
        struct ctx *c = *state;
        uint64_t old = c->bar, moved = c->bar + 0x100000;
        uint64_t notify0 = c->caps.notify_off;

        assert_int_equal(negotiate(c, F_VERSION_1), STATUS_FEATURES_OK);
        setup_queue(c, 0, 16, 0);
        assert_true(ioev_fd_at(old + notify0) >= 0);

        cfg_write(c, PCI_BASE_ADDRESS_0, 4, (uint32_t)moved);
        assert_int_equal(fake.nr_ioev, 1);
        assert_int_equal(ioev_fd_at(old + notify0), -1);
        assert_true(ioev_fd_at(moved + notify0) >= 0);
        c->bar = moved;
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);

        /* Decoding off: no ioeventfd (KVM would catch writes to nothing). */
        cfg_write(c, PCI_COMMAND, 2, 0);
        assert_int_equal(fake.nr_ioev, 0);
        cfg_write(c, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
        assert_true(ioev_fd_at(moved + notify0) >= 0);
        /* Queue 1 was never enabled. */
        assert_int_equal(ioev_fd_at(moved + notify0 + 4), -1);
}

static void test_msix_routes(void **state)
{
        struct ctx *c = *state;
        unsigned g0 = vec_slot(0), g1 = vec_slot(1);

        /* Disabled: table writes are stored but no route is made. */
        msix_entry(c, 0, 0xfee00000, 0x30, 1);
        assert_int_equal(fake.route_sets[g0], 0);
        assert_int_equal(bar_read(c, msix_table(c) + PCI_MSIX_ENTRY_DATA, 4), 0x30);

        /* Enabling programs every vector's route. */
        msix_control(c, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
        assert_int_equal(fake.route_sets[g0], 1);
        assert_int_equal(fake.route[g0].address, 0xfee00000);
        assert_int_equal(fake.route[g0].data, 0x30);

        /* A table write while enabled updates the route; same value again does not. */
        msix_entry(c, 1, 0x1fee02000ull, 0x4041, 0);
        assert_int_equal(fake.route[g1].address, 0x1fee02000ull);
        assert_int_equal(fake.route[g1].data, 0x4041);
        unsigned sets = fake.route_sets[g1];
        msix_entry(c, 1, 0x1fee02000ull, 0x4041, 0);
        assert_int_equal(fake.route_sets[g1], sets);
        /* A 64-bit write of the address. */
        bar_write(c, msix_table(c) + 16, 8, 0xfee03000);
        assert_int_equal(fake.route[g1].address, 0xfee03000);

        /* Vector Control: only the mask bit is writable. */
        bar_write(c, msix_table(c) + 16 + 12, 4, 0xffffffff);
        assert_int_equal(bar_read(c, msix_table(c) + 16 + 12, 4), 1);

        /* Beyond the table, and the PBA, are not writable; reads there are harmless. */
        bar_write(c, msix_table(c) + 16 * 3, 4, 0xdead);
        assert_int_equal(bar_read(c, msix_table(c) + 16 * 3, 4), 0);
        bar_write(c, msix_table(c) + 16 * 2 + 12, 8, 0); /* straddles the end */
        bar_write(c, VPCI_MSIX_PBA_OFF, 8, ~0ull);
        assert_int_equal(bar_read(c, VPCI_MSIX_PBA_OFF, 8), 0);
}

static void signal_queue(struct ctx *c, unsigned q)
{
        virtio_dev_lock(c->dev);
        c->dev->transport->signal_queue(c->dev, q);
        virtio_dev_unlock(c->dev);
}

static void test_msix_mask_pending(void **state)
{
        struct ctx *c = *state;
        eventfd_t n;

        assert_int_equal(negotiate(c, F_VERSION_1), STATUS_FEATURES_OK);
        setup_queue(c, 0, 16, 1);
        common_write(c, VIRTIO_PCI_COMMON_MSIX, 2, 0);
        set_status(c, STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
        msix_control(c, PCI_MSIX_FLAGS_ENABLE);
        msix_entry(c, 1, 0xfee00000, 0x51, 1); /* masked */

        signal_queue(c, 0);
        assert_int_equal(eventfd_read(irqfd_of(1), &n), -1); /* nothing delivered */
        assert_int_equal(bar_read(c, VPCI_MSIX_PBA_OFF, 8), 1u << 1);
        /* Unmasking delivers it and clears the pending bit. */
        bar_write(c, msix_table(c) + 16 + 12, 4, 0);
        assert_int_equal(wait_irq(1, 0), 1);
        assert_int_equal(bar_read(c, VPCI_MSIX_PBA_OFF, 8), 0);

        /* Function mask. */
        msix_control(c, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
        signal_queue(c, 0);
        assert_int_equal(wait_irq(1, 0), 0);
        assert_int_equal(bar_read(c, VPCI_MSIX_PBA_OFF, 1), 1u << 1);
        msix_control(c, PCI_MSIX_FLAGS_ENABLE);
        assert_int_equal(wait_irq(1, 0), 1);

        /* Unmasked: straight through. */
        signal_queue(c, 0);
        assert_int_equal(wait_irq(1, 0), 1);

        /* MSI-X disabled: nothing, not even pending (no INTx either). */
        msix_control(c, 0);
        signal_queue(c, 0);
        assert_int_equal(wait_irq(1, 0), 0);
        assert_int_equal(bar_read(c, VPCI_MSIX_PBA_OFF, 8), 0);

        /* ISR: queue bit set, read clears. */
        assert_int_equal(bar_read(c, c->caps.isr_off, 1), 1);
        assert_int_equal(bar_read(c, c->caps.isr_off, 1), 0);

        /* Config change: generation bumps, config vector fires, ISR bit 1. */
        msix_control(c, PCI_MSIX_FLAGS_ENABLE);
        msix_entry(c, 0, 0xfee00000, 0x52, 0);
        uint8_t gen = common_read(c, VIRTIO_PCI_COMMON_CFGGENERATION, 1);
        virtio_dev_lock(c->dev);
        virtio_dev_signal_config(c->dev);
        virtio_dev_unlock(c->dev);
        assert_int_equal(common_read(c, VIRTIO_PCI_COMMON_CFGGENERATION, 1), (uint8_t)(gen + 1));
        assert_int_equal(wait_irq(0, 0), 1);
        assert_int_equal(bar_read(c, c->caps.isr_off, 1), 2);

        /* needs_reset: status bit, config interrupt, logged once. */
        virtio_dev_lock(c->dev);
        virtio_dev_needs_reset(c->dev, "test");
        virtio_dev_needs_reset(c->dev, "test again");
        virtio_dev_unlock(c->dev);
        assert_true(status(c) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        assert_true(c->dev->needs_reset_logged);
        assert_int_equal(wait_irq(0, 0), 1);
}

static void test_notify(void **state)
{
        struct ctx *c = *state;
        uint64_t n0 = c->caps.notify_off, n1 = n0 + c->caps.notify_mult;

        assert_int_equal(negotiate(c, F_VERSION_1), STATUS_FEATURES_OK);
        setup_queue(c, 0, 16, 1);
        setup_queue(c, 1, 16, 2);

        /* Before DRIVER_OK a kick is not passed on... */
        bar_write(c, n1, 2, 1);
        assert_false(wait_notified(c, 1, 1, 100));
        /* ...but DRIVER_OK looks at every queue once. */
        set_status(c, STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
        assert_true(wait_notified(c, 0, 1, 5000));
        assert_true(wait_notified(c, 1, 1, 5000));

        /* A notify write that exited to user space (no ioeventfd there). */
        bar_write(c, n1, 2, 1);
        assert_true(wait_notified(c, 1, 2, 5000));
        /* KVM signalling the ioeventfd. */
        assert_int_equal(eventfd_write(ioev_fd_at(c->bar + n0), 1), 0);
        assert_true(wait_notified(c, 0, 2, 5000));

        /* Outside the notify area: nothing. */
        bar_write(c, n0 + 2 * c->caps.notify_mult, 2, 2);
        assert_false(wait_notified(c, 0, 3, 100));
        assert_int_equal(c->fake.notified[1], 2);

        /* After a reset, stale kicks are dropped. */
        set_status(c, 0);
        bar_write(c, n1, 2, 1);
        assert_false(wait_notified(c, 1, 3, 100));
}

static void test_device_config(void **state)
{
        struct ctx *c = *state;
        uint64_t d = c->caps.device_off;

        assert_int_equal(bar_read(c, d, 4), 0x61646974); /* "tida" */
        assert_int_equal(bar_read(c, d + 6, 2), 0x0700);
        assert_int_equal(bar_read(c, d + 4, 8), 0); /* crosses the end: not passed on */
        assert_int_equal(bar_read(c, d + 8, 1), 0);
        bar_write(c, d + 1, 2, 0x5858);
        assert_memory_equal(c->fake.config, "tXXal!", 6);
        bar_write(c, d + 7, 4, 0xffffffff); /* crosses the end: dropped */
        assert_int_equal(c->fake.config[7], 7);
}

static void test_pci_cfg_window(void **state)
{
        struct ctx *c = *state;
        unsigned p = c->caps.pci_cfg;

        cfg_write(c, p + VIRTIO_PCI_CAP_BAR, 1, 0);
        cfg_write(c, p + VIRTIO_PCI_CAP_OFFSET, 4, c->caps.common_off + VIRTIO_PCI_COMMON_NUMQ);
        cfg_write(c, p + VIRTIO_PCI_CAP_LENGTH, 4, 2);
        assert_int_equal(cfg_read(c, p + 16, 2), 2);

        cfg_write(c, p + VIRTIO_PCI_CAP_OFFSET, 4, c->caps.common_off + VIRTIO_PCI_COMMON_STATUS);
        cfg_write(c, p + VIRTIO_PCI_CAP_LENGTH, 4, 1);
        cfg_write(c, p + 16, 1, VIRTIO_STATUS_ACKNOWLEDGE);
        assert_int_equal(status(c), VIRTIO_STATUS_ACKNOWLEDGE);
        assert_int_equal(cfg_read(c, p + 16, 1), VIRTIO_STATUS_ACKNOWLEDGE);

        /* Hostile windows: wrong BAR, odd length, misaligned, beyond the BAR. */
        cfg_write(c, p + VIRTIO_PCI_CAP_BAR, 1, 3);
        cfg_write(c, p + 16, 1, 0);
        cfg_write(c, p + VIRTIO_PCI_CAP_BAR, 1, 0);
        cfg_write(c, p + VIRTIO_PCI_CAP_LENGTH, 4, 3);
        cfg_write(c, p + 16, 1, 0);
        cfg_write(c, p + VIRTIO_PCI_CAP_LENGTH, 4, 2);
        cfg_write(c, p + 16, 1, 0);
        cfg_write(c, p + VIRTIO_PCI_CAP_OFFSET, 4, 0xfffffffc);
        cfg_write(c, p + VIRTIO_PCI_CAP_LENGTH, 4, 4);
        cfg_write(c, p + 16, 4, 0);
        (void)cfg_read(c, p + 16, 4);
        assert_int_equal(status(c), VIRTIO_STATUS_ACKNOWLEDGE);
}

/* Puts one chain of a single device-writable buffer in queue 0's avail ring. */
static void rng_request(struct ctx *c, uint16_t desc, uint64_t buf, uint32_t len, uint16_t *avail)
{
        uint8_t *ring = c->ram + ring_base(0);
        uint16_t flags = 2; /* VIRTQ_DESC_F_WRITE */
        uint16_t next = 0;

        memcpy(ring + 16 * desc, &buf, 8);
        memcpy(ring + 16 * desc + 8, &len, 4);
        memcpy(ring + 16 * desc + 12, &flags, 2);
        memcpy(ring + 16 * desc + 14, &next, 2);
        memcpy(ring + 0x1000 + 4 + 2 * (*avail % 16), &desc, 2);
        (*avail)++;
        __atomic_store_n((uint16_t *)(ring + 0x1000 + 2), *avail, __ATOMIC_RELEASE);
}

static uint16_t used_idx(struct ctx *c)
{
        return __atomic_load_n((uint16_t *)(c->ram + ring_base(0) + 0x2000 + 2), __ATOMIC_ACQUIRE);
}

static bool all_zero(const uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

static void test_rng(void **state)
{
        struct ctx *c = *state;
        uint8_t *ring = c->ram + ring_base(0);
        uint64_t notify = c->caps.notify_off;
        uint16_t avail = 0;
        uint32_t used_len;

        msix_control(c, PCI_MSIX_FLAGS_ENABLE);
        msix_entry(c, 0, 0xfee00000, 0x60, 0);
        msix_entry(c, 1, 0xfee00000, 0x61, 0);
        assert_int_equal(negotiate(c, F_VERSION_1 | F_EVENT_IDX), STATUS_FEATURES_OK);
        setup_queue(c, 0, 16, 1);
        common_write(c, VIRTIO_PCI_COMMON_MSIX, 2, 0);
        set_status(c, STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);

        /* A kick through an MMIO exit. */
        rng_request(c, 0, 0x80000, 64, &avail);
        bar_write(c, notify, 2, 0);
        assert_int_equal(wait_irq(1, 5000), 1);
        assert_int_equal(used_idx(c), 1);
        memcpy(&used_len, ring + 0x2000 + 4 + 4, 4);
        assert_int_equal(used_len, 64);
        assert_false(all_zero(c->ram + 0x80000, 64));
        assert_true(all_zero(c->ram + 0x80000 + 64, 64)); /* not a byte more */
        /* EVENT_IDX: the device asked to be told about avail entry 1. */
        assert_int_equal(*(uint16_t *)(ring + 0x2000 + 4 + 8 * 16), 1);

        /* A kick through the ioeventfd, with used_event asking for entry 1. */
        *(uint16_t *)(ring + 0x1000 + 4 + 2 * 16) = 1;
        rng_request(c, 3, 0x90000, 4096, &avail);
        assert_int_equal(eventfd_write(ioev_fd_at(c->bar + notify), 1), 0);
        assert_int_equal(wait_irq(1, 5000), 1);
        assert_int_equal(used_idx(c), 2);
        assert_false(all_zero(c->ram + 0x90000 + 4000, 96));

        /* A malformed chain: NEEDS_RESET and a config interrupt, nothing consumed. */
        rng_request(c, 0, RAM_SIZE - 8, 64, &avail);
        bar_write(c, notify, 2, 0);
        assert_int_equal(wait_irq(0, 5000), 1);
        assert_true(status(c) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        assert_int_equal(used_idx(c), 2);

        /* Reset recovers. */
        set_status(c, 0);
        assert_int_equal(status(c), 0);
}

/* Random BAR and config traffic: must not crash or leak (run under ASan). */
static void test_fuzz(void **state)
{
        struct ctx *c = *state;
        unsigned seed = 4242;

        for (unsigned i = 0; i < 100000; i++) {
                uint8_t b[8];
                uint32_t len = rand_r(&seed) % 9;
                uint64_t off = rand_r(&seed) % VPCI_BAR_SIZE;

                for (unsigned j = 0; j < sizeof(b); j++)
                        b[j] = rand_r(&seed);
                if (rand_r(&seed) % 8 == 0)
                        off = c->caps.common_off + rand_r(&seed) % 64;
                if (rand_r(&seed) % 16 == 0) {
                        unsigned reg = 0x40 + rand_r(&seed) % 0xc0;

                        pio_write(c, 0xcf8, 4, 0x80000000u | SLOT << 11 | (reg & 0xfc));
                        bus_access(&c->pio, 0xcfc + (reg & 3), b, 1 + rand_r(&seed) % 4,
                                   rand_r(&seed) % 2);
                        continue;
                }
                bus_access(&c->mmio, c->bar + off, b, len, rand_r(&seed) % 2);
        }
        /* The device is still usable after a reset. */
        set_status(c, 0);
        assert_int_equal(negotiate(c, F_VERSION_1), STATUS_FEATURES_OK);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_identity, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_caps_layout, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_rng_caps, setup_rng, teardown),
                cmocka_unit_test_setup_teardown(test_features, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_queue_setup, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_queue_bad_rings, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_reset, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_bar_move, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_msix_routes, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_msix_mask_pending, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_notify, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_device_config, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_pci_cfg_window, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_rng, setup_rng, teardown),
                cmocka_unit_test_setup_teardown(test_fuzz, setup_fake, teardown),
                cmocka_unit_test_setup_teardown(test_fuzz, setup_rng, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
