/* SPDX-License-Identifier: GPL-2.0-or-later */
/* PCI bus 0: type-1 config accesses, write masks, capabilities, BAR sizing and placement. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <linux/pci_regs.h>

#include "vmm/bus.h"
#include "vmm/layout.h"
#include "vmm/pci/pci.h"

#define BAR0_SIZE 0x4000u /* 64-bit */
#define BAR2_SIZE 0x1000u /* 32-bit */

struct fake_dev {
        struct pci_device pci;
        unsigned moved_calls;
        bool last_mapped;
        uint64_t last_addr;
        unsigned last_bar;
        uint64_t last_access_off;
        unsigned last_access_bar;
        unsigned accesses;
        unsigned config_writes;
        bool destroyed;
};

struct ctx {
        struct bus pio, mmio;
        struct pci_bus pci;
        struct fake_dev dev;
};

static void fake_bar_access(struct pci_device *pdev, unsigned bar, uint64_t off, uint8_t *data,
                            uint32_t len, bool is_write)
{
        struct fake_dev *d = pdev->opaque;

        d->accesses++;
        d->last_access_bar = bar;
        d->last_access_off = off;
        if (!is_write)
                memset(data, 0xa5, len);
}

static void fake_bar_moved(struct pci_device *pdev, unsigned bar, bool mapped, uint64_t addr)
{
        struct fake_dev *d = pdev->opaque;

        d->moved_calls++;
        d->last_bar = bar;
        d->last_mapped = mapped;
        d->last_addr = addr;
}

static void fake_config_write(struct pci_device *pdev, uint32_t off, uint32_t len)
{
        struct fake_dev *d = pdev->opaque;

        (void)off;
        (void)len;
        d->config_writes++;
}

static void fake_destroy(struct pci_device *pdev)
{
        struct fake_dev *d = pdev->opaque;

        d->destroyed = true;
}

static const struct pci_device_ops fake_ops = {
        .bar_access = fake_bar_access,
        .bar_moved = fake_bar_moved,
        .config_write = fake_config_write,
        .destroy = fake_destroy,
};

static int setup(void **state)
{
        struct ctx *c = calloc(1, sizeof(*c));
        const struct pci_device_id id = {
                .vendor = 0x1234,
                .device = 0x5678,
                .subsys_vendor = 0x1af4,
                .subsys_id = 0x42,
                .class_code = 0xff0000,
                .revision = 3,
        };
        uint8_t cap_a[8] = {0x09, 0, 8, 0xaa, 0xbb, 0xcc, 0xdd, 0xee};
        uint8_t cap_b[6] = {0x11, 0, 1, 2, 3, 4};
        uint8_t off;

        assert_non_null(c);
        bus_init(&c->pio, "pio");
        bus_init(&c->mmio, "mmio");
        assert_int_equal(pci_bus_init(&c->pci, &c->pio, &c->mmio), 0);

        pci_device_init(&c->dev.pci, &fake_ops, &c->dev, &id);
        assert_int_equal(pci_device_set_bar(&c->dev.pci, 0, BAR0_SIZE, PCI_BAR_F_64BIT), 0);
        assert_int_equal(pci_device_set_bar(&c->dev.pci, 2, BAR2_SIZE, 0), 0);
        assert_int_equal(pci_device_add_cap(&c->dev.pci, cap_a, sizeof(cap_a), &off), 0);
        assert_int_equal(off, 0x40);
        assert_int_equal(pci_device_add_cap(&c->dev.pci, cap_b, sizeof(cap_b), &off), 0);
        assert_int_equal(off, 0x48);
        assert_int_equal(pci_bus_add(&c->pci, &c->dev.pci), 0);
        assert_int_equal(c->dev.pci.slot, 1);
        *state = c;
        return 0;
}

static int teardown(void **state)
{
        struct ctx *c = *state;

        pci_bus_destroy(&c->pci);
        assert_true(c->dev.destroyed);
        bus_destroy(&c->pio);
        bus_destroy(&c->mmio);
        free(c);
        return 0;
}

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

static uint32_t cfg_addr(unsigned bus, unsigned slot, unsigned fn, unsigned reg)
{
        return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t cfg_read(struct ctx *c, unsigned slot, unsigned reg, uint32_t len)
{
        pio_write(c, 0xcf8, 4, cfg_addr(0, slot, 0, reg));
        return pio_read(c, 0xcfc + (reg & 3), len);
}

static void cfg_write(struct ctx *c, unsigned slot, unsigned reg, uint32_t len, uint32_t v)
{
        pio_write(c, 0xcf8, 4, cfg_addr(0, slot, 0, reg));
        pio_write(c, 0xcfc + (reg & 3), len, v);
}

static void test_host_bridge(void **state)
{
        struct ctx *c = *state;

        assert_int_equal(cfg_read(c, 0, PCI_VENDOR_ID, 2), PCI_HOST_BRIDGE_VENDOR);
        assert_int_equal(cfg_read(c, 0, PCI_DEVICE_ID, 2), PCI_HOST_BRIDGE_DEVICE);
        assert_int_equal(cfg_read(c, 0, PCI_CLASS_REVISION, 4) >> 8, 0x060000);
        assert_int_equal(cfg_read(c, 0, PCI_HEADER_TYPE, 1), 0);
}

static void test_nothing_behind(void **state)
{
        struct ctx *c = *state;

        /* Empty slot, function 1 of a present device, another bus. */
        assert_int_equal(cfg_read(c, 7, 0, 4), 0xffffffff);
        pio_write(c, 0xcf8, 4, cfg_addr(0, 1, 1, 0));
        assert_int_equal(pio_read(c, 0xcfc, 4), 0xffffffff);
        pio_write(c, 0xcf8, 4, cfg_addr(1, 1, 0, 0));
        assert_int_equal(pio_read(c, 0xcfc, 4), 0xffffffff);
        assert_int_equal(pio_read(c, 0xcfe, 2), 0xffff);
        /* Enable bit clear. */
        pio_write(c, 0xcf8, 4, cfg_addr(0, 1, 0, 0) & ~0x80000000u);
        assert_int_equal(pio_read(c, 0xcfc, 4), 0xffffffff);
        /* Writes there go nowhere and do not crash. */
        pio_write(c, 0xcf8, 4, cfg_addr(0, 9, 0, PCI_COMMAND));
        pio_write(c, 0xcfc, 4, 0xffffffff);
        assert_int_equal(cfg_read(c, 9, PCI_COMMAND, 2), 0xffff);
}

static void test_widths_and_offsets(void **state)
{
        struct ctx *c = *state;

        assert_int_equal(cfg_read(c, 1, 0, 4), 0x56781234);
        assert_int_equal(cfg_read(c, 1, 0, 2), 0x1234);
        assert_int_equal(cfg_read(c, 1, 2, 2), 0x5678);
        assert_int_equal(cfg_read(c, 1, 0, 1), 0x34);
        assert_int_equal(cfg_read(c, 1, 1, 1), 0x12);
        assert_int_equal(cfg_read(c, 1, 2, 1), 0x78);
        assert_int_equal(cfg_read(c, 1, 3, 1), 0x56);
        assert_int_equal(cfg_read(c, 1, 1, 2), 0x7812); /* word inside the dword, unaligned */
        assert_int_equal(cfg_read(c, 1, PCI_REVISION_ID, 1), 3);
        assert_int_equal(cfg_read(c, 1, PCI_SUBSYSTEM_ID, 2), 0x42);

        /* An access crossing the dword is not decoded. */
        pio_write(c, 0xcf8, 4, cfg_addr(0, 1, 0, 0));
        assert_int_equal(pio_read(c, 0xcfd, 4), 0xffffffff);
        assert_int_equal(pio_read(c, 0xcff, 2), 0xffff);

        /* The latch reads back without the reserved low bits; byte accesses leave it alone. */
        pio_write(c, 0xcf8, 4, cfg_addr(0, 1, 0, 0x10) | 3);
        assert_int_equal(pio_read(c, 0xcf8, 4), cfg_addr(0, 1, 0, 0x10));
        pio_write(c, 0xcf9, 1, 0x06);
        pio_write(c, 0xcf8, 1, 0);
        pio_write(c, 0xcf8, 2, 0);
        assert_int_equal(pio_read(c, 0xcf8, 4), cfg_addr(0, 1, 0, 0x10));
}

static void test_read_only(void **state)
{
        struct ctx *c = *state;

        cfg_write(c, 1, PCI_VENDOR_ID, 4, 0);
        assert_int_equal(cfg_read(c, 1, 0, 4), 0x56781234);
        cfg_write(c, 1, PCI_CLASS_REVISION, 4, 0);
        assert_int_equal(cfg_read(c, 1, PCI_CLASS_REVISION, 4), 0xff000003);
        cfg_write(c, 1, PCI_INTERRUPT_PIN, 1, 1);
        assert_int_equal(cfg_read(c, 1, PCI_INTERRUPT_PIN, 1), 0); /* no INTx */
        cfg_write(c, 1, PCI_INTERRUPT_LINE, 1, 11);
        assert_int_equal(cfg_read(c, 1, PCI_INTERRUPT_LINE, 1), 11);

        /* COMMAND: only memory, master, parity, SERR, INTx disable are implemented. */
        cfg_write(c, 1, PCI_COMMAND, 2, 0xffff);
        assert_int_equal(cfg_read(c, 1, PCI_COMMAND, 2),
                         PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
                                 PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
        /* STATUS is read-only: still just the capability list bit. */
        cfg_write(c, 1, PCI_STATUS, 2, 0xffff);
        assert_int_equal(cfg_read(c, 1, PCI_STATUS, 2), PCI_STATUS_CAP_LIST);
        cfg_write(c, 1, PCI_COMMAND, 2, 0);

        /* Capabilities are read-only unless the device says otherwise. */
        cfg_write(c, 1, 0x40, 4, 0);
        assert_int_equal(cfg_read(c, 1, 0x40, 4), 0xaa084809);
        assert_true(c->dev.config_writes > 0);
}

static void test_cap_walk(void **state)
{
        struct ctx *c = *state;
        uint8_t ids[8], n = 0;
        unsigned ptr;

        assert_true(cfg_read(c, 1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
        for (ptr = cfg_read(c, 1, PCI_CAPABILITY_LIST, 1); ptr && n < 8;
             ptr = cfg_read(c, 1, ptr + PCI_CAP_LIST_NEXT, 1)) {
                assert_true(ptr >= 0x40 && ptr % 4 == 0);
                ids[n++] = cfg_read(c, 1, ptr, 1);
        }
        assert_int_equal(n, 2);
        assert_int_equal(ids[0], 0x09);
        assert_int_equal(ids[1], 0x11);
        assert_int_equal(cfg_read(c, 1, 0x4b, 1), 2); /* payload of the second capability */
        /* The host bridge has none. */
        assert_false(cfg_read(c, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
}

static uint64_t bar64(struct ctx *c, unsigned reg)
{
        return (cfg_read(c, 1, reg, 4) & ~0xfull) | (uint64_t)cfg_read(c, 1, reg + 4, 4) << 32;
}

static void test_bar_sizing(void **state)
{
        struct ctx *c = *state;
        uint32_t lo = cfg_read(c, 1, PCI_BASE_ADDRESS_0, 4);
        uint32_t hi = cfg_read(c, 1, PCI_BASE_ADDRESS_1, 4);
        uint32_t b2 = cfg_read(c, 1, PCI_BASE_ADDRESS_2, 4);

        /* Pre-assigned, naturally aligned, in the 32-bit window, one after the other. */
        assert_int_equal(lo & 0xf, PCI_BASE_ADDRESS_MEM_TYPE_64);
        assert_int_equal(hi, 0);
        assert_true((lo & ~0xfu) >= LAYOUT_PCI_MMIO32_START);
        assert_int_equal((lo & ~0xfu) % BAR0_SIZE, 0);
        assert_int_equal(b2 & 0xf, 0);
        assert_true((b2 & ~0xfu) >= (lo & ~0xfu) + BAR0_SIZE);

        cfg_write(c, 1, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
        cfg_write(c, 1, PCI_BASE_ADDRESS_1, 4, 0xffffffff);
        cfg_write(c, 1, PCI_BASE_ADDRESS_2, 4, 0xffffffff);
        cfg_write(c, 1, PCI_BASE_ADDRESS_3, 4, 0xffffffff);
        cfg_write(c, 1, PCI_ROM_ADDRESS, 4, 0xffffffff);
        assert_int_equal(cfg_read(c, 1, PCI_BASE_ADDRESS_0, 4),
                         (uint32_t) ~(BAR0_SIZE - 1) | PCI_BASE_ADDRESS_MEM_TYPE_64);
        assert_int_equal(cfg_read(c, 1, PCI_BASE_ADDRESS_1, 4), 0xffffffff);
        assert_int_equal(cfg_read(c, 1, PCI_BASE_ADDRESS_2, 4), (uint32_t) ~(BAR2_SIZE - 1));
        assert_int_equal(cfg_read(c, 1, PCI_BASE_ADDRESS_3, 4), 0); /* not implemented */
        assert_int_equal(cfg_read(c, 1, PCI_ROM_ADDRESS, 4), 0);    /* no ROM */

        /* Restore; decoding was off throughout, so nothing got mapped. */
        cfg_write(c, 1, PCI_BASE_ADDRESS_0, 4, lo);
        cfg_write(c, 1, PCI_BASE_ADDRESS_1, 4, hi);
        cfg_write(c, 1, PCI_BASE_ADDRESS_2, 4, b2);
        assert_int_equal(cfg_read(c, 1, PCI_BASE_ADDRESS_0, 4), lo);
        assert_int_equal(c->dev.moved_calls, 0);
        assert_int_equal(c->mmio.nr_ranges, 0);
}

static int mmio_probe(struct ctx *c, uint64_t addr)
{
        uint8_t b[4];

        return bus_access(&c->mmio, addr, b, 4, false);
}

static void test_memory_enable(void **state)
{
        struct ctx *c = *state;
        uint64_t b0 = bar64(c, PCI_BASE_ADDRESS_0);
        uint64_t b2 = cfg_read(c, 1, PCI_BASE_ADDRESS_2, 4) & ~0xfull;

        assert_int_equal(mmio_probe(c, b0), -ENOENT);
        cfg_write(c, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
        assert_int_equal(c->mmio.nr_ranges, 2);
        assert_int_equal(c->dev.moved_calls, 2);
        assert_true(c->dev.last_mapped);

        assert_int_equal(mmio_probe(c, b0 + 0x123), 0);
        assert_int_equal(c->dev.last_access_bar, 0);
        assert_int_equal(c->dev.last_access_off, 0x123);
        assert_int_equal(mmio_probe(c, b2 + 8), 0);
        assert_int_equal(c->dev.last_access_bar, 2);
        assert_int_equal(c->dev.last_access_off, 8);

        /* Writing COMMAND again with the same value changes nothing. */
        cfg_write(c, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
        assert_int_equal(c->dev.moved_calls, 2);

        cfg_write(c, 1, PCI_COMMAND, 2, 0);
        assert_int_equal(c->mmio.nr_ranges, 0);
        assert_int_equal(c->dev.moved_calls, 4);
        assert_false(c->dev.last_mapped);
        assert_int_equal(mmio_probe(c, b0), -ENOENT);
}

static void test_bar_reprogram(void **state)
{
        struct ctx *c = *state;
        uint64_t b0 = bar64(c, PCI_BASE_ADDRESS_0);
        uint64_t b2 = cfg_read(c, 1, PCI_BASE_ADDRESS_2, 4) & ~0xfull;
        uint64_t target = LAYOUT_PCI_MMIO32_START + 0x100000;

        cfg_write(c, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
        c->dev.moved_calls = 0;

        /* Moving with decoding on: the registration and the device follow. */
        cfg_write(c, 1, PCI_BASE_ADDRESS_2, 4, target);
        assert_int_equal(c->dev.moved_calls, 1);
        assert_int_equal(c->dev.last_bar, 2);
        assert_true(c->dev.last_mapped);
        assert_int_equal(c->dev.last_addr, target);
        assert_int_equal(mmio_probe(c, b2), -ENOENT);
        assert_int_equal(mmio_probe(c, target + 4), 0);
        assert_int_equal(c->dev.last_access_off, 4);

        /* Over BAR0: refused, left unmapped; BAR0 still answers there. */
        cfg_write(c, 1, PCI_BASE_ADDRESS_2, 4, b0 + 0x1000);
        assert_false(c->dev.last_mapped);
        assert_int_equal(mmio_probe(c, b0 + 0x1000), 0);
        assert_int_equal(c->dev.last_access_bar, 0);
        assert_int_equal(c->mmio.nr_ranges, 1);

        /* Over RAM (outside every window): refused too. */
        cfg_write(c, 1, PCI_BASE_ADDRESS_2, 4, 0x100000);
        assert_int_equal(mmio_probe(c, 0x100000), -ENOENT);
        assert_int_equal(c->mmio.nr_ranges, 1);
        /* A 64-bit BAR above 4 GiB without a 64-bit window: refused. */
        cfg_write(c, 1, PCI_BASE_ADDRESS_1, 4, 1);
        assert_int_equal(c->mmio.nr_ranges, 0);
        assert_false(c->dev.last_mapped);
        /* ...until the VMM publishes one. */
        assert_int_equal(pci_bus_add_window(&c->pci, LAYOUT_4GIB, 64 * 1024 * 1024), 0);
        cfg_write(c, 1, PCI_BASE_ADDRESS_0, 4, 0);
        assert_int_equal(mmio_probe(c, LAYOUT_4GIB), 0);
        assert_int_equal(c->dev.last_access_bar, 0);
        assert_true(c->dev.last_mapped);
        assert_int_equal(c->dev.last_addr, LAYOUT_4GIB);
        cfg_write(c, 1, PCI_BASE_ADDRESS_1, 4, 0);
        cfg_write(c, 1, PCI_BASE_ADDRESS_0, 4, b0);
        assert_int_equal(mmio_probe(c, b0), 0);

        /* Back to a free place: mapped again. */
        cfg_write(c, 1, PCI_BASE_ADDRESS_2, 4, target + BAR2_SIZE);
        assert_true(c->dev.last_mapped);
        assert_int_equal(mmio_probe(c, target + BAR2_SIZE), 0);
        assert_int_equal(c->mmio.nr_ranges, 2);
        cfg_write(c, 1, PCI_COMMAND, 2, 0);
}

/* Random accesses from a hostile guest: no crash, no stray mapping outside the windows. */
static void test_fuzz(void **state)
{
        struct ctx *c = *state;
        unsigned seed = 12345;

        for (unsigned i = 0; i < 200000; i++) {
                uint8_t b[8];
                uint32_t port = 0xcf8 + rand_r(&seed) % 8;
                uint32_t len = rand_r(&seed) % 9;

                for (unsigned j = 0; j < sizeof(b); j++)
                        b[j] = rand_r(&seed);
                if (rand_r(&seed) % 4 == 0) {
                        /* Keep hitting our two slots often. */
                        pio_write(c, 0xcf8, 4, cfg_addr(0, rand_r(&seed) % 3, 0, rand_r(&seed)));
                        continue;
                }
                bus_access(&c->pio, port, b, len, rand_r(&seed) % 2);
        }
        for (unsigned i = 0; i < c->mmio.nr_ranges; i++) {
                const struct bus_range *r = &c->mmio.ranges[i];

                assert_true(r->base >= LAYOUT_PCI_MMIO32_START);
                assert_true(r->base + r->len <= LAYOUT_PCI_MMIO32_START + LAYOUT_PCI_MMIO32_SIZE);
        }
        /* Identity survived. */
        assert_int_equal(cfg_read(c, 1, 0, 4), 0x56781234);
}

static void test_api_errors(void **state)
{
        struct ctx *c = *state;
        struct pci_device d;
        const struct pci_device_id id = {.vendor = 1};
        uint8_t big[150] = {0x09};

        pci_device_init(&d, NULL, NULL, &id);
        assert_int_equal(pci_device_set_bar(&d, 0, 100, 0), -EINVAL);  /* not a power of 2 */
        assert_int_equal(pci_device_set_bar(&d, 0, 2048, 0), -EINVAL); /* < 4 KiB */
        assert_int_equal(pci_device_set_bar(&d, 5, 4096, PCI_BAR_F_64BIT), -EINVAL);
        assert_int_equal(pci_device_set_bar(&d, 0, 4096, PCI_BAR_F_64BIT), 0);
        assert_int_equal(pci_device_set_bar(&d, 1, 4096, 0), -EINVAL); /* upper half of BAR0 */
        assert_int_equal(pci_device_add_cap(&d, big, sizeof(big), NULL), 0);
        assert_int_equal(pci_device_add_cap(&d, big, sizeof(big), NULL), -ENOSPC);

        /* A BAR bigger than the whole window cannot be placed. */
        pci_device_init(&d, NULL, NULL, &id);
        assert_int_equal(pci_device_set_bar(&d, 0, 4ull << 30, PCI_BAR_F_64BIT), 0);
        assert_int_equal(pci_bus_add(&c->pci, &d), -ENOSPC);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_host_bridge, setup, teardown),
                cmocka_unit_test_setup_teardown(test_nothing_behind, setup, teardown),
                cmocka_unit_test_setup_teardown(test_widths_and_offsets, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cap_walk, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_memory_enable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bar_reprogram, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fuzz, setup, teardown),
                cmocka_unit_test_setup_teardown(test_api_errors, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
