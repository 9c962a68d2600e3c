/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * PCI bus 0 with the type-1 configuration mechanism. See pci.h for the model and the locking.
 */
#include <errno.h>
#include <string.h>

#include <linux/pci_regs.h>

#include "tidal/log.h"
#include "tidal/macro.h"
#include "vmm/layout.h"
#include "vmm/pci/pci.h"

#define CONFIG_ADDRESS_ENABLE 0x80000000u
/* Bits the latch keeps: enable, bus, device, function, dword register. */
#define CONFIG_ADDRESS_MASK 0x80fffffcu
#define CONFIG_PORTS        8 /* 0xcf8..0xcff */

#define BAR_FLAGS_MASK 0xfu

uint32_t pci_config_get(const struct pci_device *dev, uint32_t off, uint32_t len)
{
        uint32_t val = 0;

        if (len > 4 || off >= PCI_CONFIG_SIZE || len > PCI_CONFIG_SIZE - off)
                return 0;
        for (uint32_t i = 0; i < len; i++)
                val |= (uint32_t)dev->config[off + i] << (8 * i);
        return val;
}

void pci_config_set(struct pci_device *dev, uint32_t off, uint32_t len, uint32_t val)
{
        if (len > 4 || off >= PCI_CONFIG_SIZE || len > PCI_CONFIG_SIZE - off)
                return;
        for (uint32_t i = 0; i < len; i++)
                dev->config[off + i] = val >> (8 * i);
}

void pci_wmask_set(struct pci_device *dev, uint32_t off, uint32_t len, uint32_t mask)
{
        if (len > 4 || off >= PCI_CONFIG_SIZE || len > PCI_CONFIG_SIZE - off)
                return;
        for (uint32_t i = 0; i < len; i++)
                dev->wmask[off + i] = mask >> (8 * i);
}

void pci_device_init(struct pci_device *dev, const struct pci_device_ops *ops, void *opaque,
                     const struct pci_device_id *id)
{
        memset(dev, 0, sizeof(*dev));
        dev->ops = ops;
        dev->opaque = opaque;
        dev->cap_end = PCI_CAP_FIRST;

        pci_config_set(dev, PCI_VENDOR_ID, 2, id->vendor);
        pci_config_set(dev, PCI_DEVICE_ID, 2, id->device);
        pci_config_set(dev, PCI_REVISION_ID, 1, id->revision);
        pci_config_set(dev, PCI_CLASS_PROG, 3, id->class_code & 0xffffff);
        pci_config_set(dev, PCI_HEADER_TYPE, 1, PCI_HEADER_TYPE_NORMAL);
        pci_config_set(dev, PCI_SUBSYSTEM_VENDOR_ID, 2, id->subsys_vendor);
        pci_config_set(dev, PCI_SUBSYSTEM_ID, 2, id->subsys_id);

        /*
         * No I/O BARs, so I/O Space stays hardwired to 0. INTx Disable is writable although
         * there is no pin: drivers set it when they enable MSI-X.
         */
        pci_wmask_set(dev, PCI_COMMAND, 2,
                      PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
                              PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
        pci_wmask_set(dev, PCI_CACHE_LINE_SIZE, 1, 0xff);
        pci_wmask_set(dev, PCI_INTERRUPT_LINE, 1, 0xff);
}

int pci_device_set_bar(struct pci_device *dev, unsigned bar, uint64_t size, unsigned flags)
{
        bool is_64 = flags & PCI_BAR_F_64BIT;
        uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * bar;
        uint32_t type = 0;
        uint64_t mask;

        if (bar >= PCI_NR_BARS || (is_64 && bar + 1 >= PCI_NR_BARS))
                return -EINVAL;
        if (size < PCI_BAR_MIN_SIZE || (size & (size - 1)) || (!is_64 && size > UINT32_MAX))
                return -EINVAL;
        if (dev->bars[bar].size || (bar > 0 && dev->bars[bar - 1].is_64) ||
            (is_64 && dev->bars[bar + 1].size))
                return -EINVAL;

        if (is_64)
                type |= PCI_BASE_ADDRESS_MEM_TYPE_64;
        if (flags & PCI_BAR_F_PREFETCH)
                type |= PCI_BASE_ADDRESS_MEM_PREFETCH;

        dev->bars[bar] = (struct pci_bar){.size = size, .is_64 = is_64, .dev = dev, .index = bar};
        /* The writable bits are the address bits above the size: sizing then reads ~(size-1). */
        mask = ~(size - 1);
        pci_config_set(dev, reg, 4, type);
        pci_wmask_set(dev, reg, 4, (uint32_t)mask & ~BAR_FLAGS_MASK);
        if (is_64)
                pci_wmask_set(dev, reg + 4, 4, mask >> 32);
        return 0;
}

int pci_device_add_cap(struct pci_device *dev, const void *cap, uint8_t len, uint8_t *ret_off)
{
        uint32_t off = ALIGN_UP((uint32_t)dev->cap_end, 4u);

        if (len < 2 || off + len > PCI_CONFIG_SIZE)
                return -ENOSPC;

        memcpy(dev->config + off, cap, len);
        dev->config[off + PCI_CAP_LIST_NEXT] = 0;
        if (dev->last_cap)
                dev->config[dev->last_cap + PCI_CAP_LIST_NEXT] = off;
        else
                dev->config[PCI_CAPABILITY_LIST] = off;
        dev->config[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
        dev->last_cap = off;
        dev->cap_end = off + len;
        if (ret_off)
                *ret_off = off;
        return 0;
}

static uint64_t bar_address(const struct pci_device *dev, const struct pci_bar *bar)
{
        uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * bar->index;
        uint64_t addr = pci_config_get(dev, reg, 4) & ~BAR_FLAGS_MASK;

        if (bar->is_64)
                addr |= (uint64_t)pci_config_get(dev, reg + 4, 4) << 32;
        return addr;
}

/* The guest wrote all ones to size the BAR: not a placement worth a warning. */
static bool bar_is_sizing(const struct pci_device *dev, const struct pci_bar *bar)
{
        uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * bar->index;
        uint32_t lo_mask = (uint32_t) ~(bar->size - 1) & ~BAR_FLAGS_MASK;

        return (pci_config_get(dev, reg, 4) & ~BAR_FLAGS_MASK) == lo_mask;
}

static bool bar_in_window(const struct pci_bus *pci, uint64_t addr, uint64_t size)
{
        uint64_t end;

        if (add_overflows_u64(addr, size, &end))
                return false;
        for (unsigned i = 0; i < pci->nr_windows; i++) {
                const struct pci_window *w = &pci->windows[i];

                if (addr >= w->base && end <= w->base + w->size)
                        return true;
        }
        return false;
}

static void pci_bar_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
        struct pci_bar *bar = opaque;
        struct pci_device *dev = bar->dev;

        if (dev->ops && dev->ops->bar_access) {
                dev->ops->bar_access(dev, bar->index, offset, data, len, is_write);
                return;
        }
        if (!is_write)
                memset(data, 0xff, len);
}

static void bar_unmap(struct pci_bus *pci, struct pci_bar *bar)
{
        if (!bar->mapped)
                return;
        (void)bus_unregister(pci->mmio, bar->mapped_addr, bar);
        bar->mapped = false;
}

static void bar_refuse(struct pci_device *dev, struct pci_bar *bar, uint64_t addr, int error)
{
        if (bar->refusal_logged || bar_is_sizing(dev, bar))
                return;
        bar->refusal_logged = true;
        log_warn_errno(error, "pci 00:%02x.0: not mapping BAR%u at 0x%llx (size 0x%llx)", dev->slot,
                       bar->index, (unsigned long long)addr, (unsigned long long)bar->size);
}

/* Brings one BAR's MMIO registration in line with COMMAND and the BAR value. */
static void bar_update(struct pci_bus *pci, struct pci_device *dev, struct pci_bar *bar)
{
        bool enabled = pci_config_get(dev, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY;
        uint64_t addr = bar_address(dev, bar);
        bool was_mapped = bar->mapped;
        uint64_t old_addr = bar->mapped_addr;
        int r;

        if (bar->mapped && (!enabled || addr != bar->mapped_addr))
                bar_unmap(pci, bar);

        if (enabled && !bar->mapped) {
                if (!bar_in_window(pci, addr, bar->size)) {
                        bar_refuse(dev, bar, addr, EFAULT);
                } else {
                        r = bus_register(pci->mmio, addr, bar->size, pci_bar_io, bar);
                        if (r < 0) {
                                bar_refuse(dev, bar, addr, r);
                        } else {
                                bar->mapped = true;
                                bar->mapped_addr = addr;
                                bar->refusal_logged = false;
                        }
                }
        }

        if (bar->mapped == was_mapped && (!bar->mapped || bar->mapped_addr == old_addr))
                return;
        if (dev->ops && dev->ops->bar_moved)
                dev->ops->bar_moved(dev, bar->index, bar->mapped, bar->mapped_addr);
}

static void bars_update(struct pci_bus *pci, struct pci_device *dev)
{
        for (unsigned i = 0; i < PCI_NR_BARS; i++)
                if (dev->bars[i].size)
                        bar_update(pci, dev, &dev->bars[i]);
}

static bool ranges_overlap(uint32_t a, uint32_t alen, uint32_t b, uint32_t blen)
{
        return a < b + blen && b < a + alen;
}

static void config_write(struct pci_bus *pci, struct pci_device *dev, uint32_t reg,
                         const uint8_t *data, uint32_t len)
{
        for (uint32_t i = 0; i < len; i++) {
                uint8_t m = dev->wmask[reg + i];

                dev->config[reg + i] = (dev->config[reg + i] & ~m) | (data[i] & m);
        }

        if (ranges_overlap(reg, len, PCI_COMMAND, 2) ||
            ranges_overlap(reg, len, PCI_BASE_ADDRESS_0, 4 * PCI_NR_BARS))
                bars_update(pci, dev);
        if (dev->ops && dev->ops->config_write)
                dev->ops->config_write(dev, reg, len);
}

static void config_read(struct pci_device *dev, uint32_t reg, uint8_t *data, uint32_t len)
{
        if (dev->ops && dev->ops->config_read)
                dev->ops->config_read(dev, reg, len);
        memcpy(data, dev->config + reg, len);
}

static struct pci_device *config_target(struct pci_bus *pci)
{
        uint32_t addr = pci->config_address;
        unsigned bus = (addr >> 16) & 0xff, slot = (addr >> 11) & 0x1f, fn = (addr >> 8) & 0x7;

        if (!(addr & CONFIG_ADDRESS_ENABLE) || bus != 0 || fn != 0)
                return NULL;
        return pci->devices[slot];
}

/* 0xcfc..0xcff: off is the byte inside the data dword. */
static void config_data_io(struct pci_bus *pci, uint32_t off, uint8_t *data, uint32_t len,
                           bool is_write)
{
        struct pci_device *dev;
        uint32_t reg;

        if (len == 0 || len == 3 || len > 4 || off + len > 4)
                goto unclaimed;
        dev = config_target(pci);
        if (!dev)
                goto unclaimed;

        reg = (pci->config_address & 0xfc) + off;
        if (is_write)
                config_write(pci, dev, reg, data, len);
        else
                config_read(dev, reg, data, len);
        return;

unclaimed:
        if (!is_write)
                memset(data, 0xff, len);
}

static uint32_t le32_bytes(const uint8_t *b)
{
        return b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void pci_config_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
        struct pci_bus *pci = opaque;

        if (len == 0 || len > 4 || offset >= CONFIG_PORTS) {
                if (!is_write)
                        memset(data, 0xff, len);
                return;
        }

        pthread_mutex_lock(&pci->lock);
        if (offset >= 4) {
                config_data_io(pci, offset - 4, data, len, is_write);
        } else if (offset == 0 && len == 4) {
                /* Only dword accesses hit the latch; 0xcf9 byte accesses are another register. */
                if (is_write)
                        pci->config_address = le32_bytes(data) & CONFIG_ADDRESS_MASK;
                else
                        for (unsigned i = 0; i < 4; i++)
                                data[i] = pci->config_address >> (8 * i);
        } else if (!is_write) {
                memset(data, 0xff, len);
        }
        pthread_mutex_unlock(&pci->lock);
}

int pci_bus_add_window(struct pci_bus *pci, uint64_t base, uint64_t size)
{
        uint64_t end;

        int r = 0;

        if (size == 0 || add_overflows_u64(base, size, &end))
                return -EINVAL;
        pthread_mutex_lock(&pci->lock);
        if (pci->nr_windows < PCI_MAX_WINDOWS)
                pci->windows[pci->nr_windows++] = (struct pci_window){.base = base, .size = size};
        else
                r = -ENOSPC;
        pthread_mutex_unlock(&pci->lock);
        return r;
}

int pci_bus_init(struct pci_bus *pci, struct bus *pio, struct bus *mmio)
{
        static const struct pci_device_id host_bridge_id = {
                .vendor = PCI_HOST_BRIDGE_VENDOR,
                .device = PCI_HOST_BRIDGE_DEVICE,
                .class_code = 0x060000, /* bridge, host bridge */
        };
        int r;

        memset(pci, 0, sizeof(*pci));
        pci->pio = pio;
        pci->mmio = mmio;
        pci->mmio32_next = LAYOUT_PCI_MMIO32_START;
        pci->windows[0] = (struct pci_window){LAYOUT_PCI_MMIO32_START, LAYOUT_PCI_MMIO32_SIZE};
        pci->nr_windows = 1;

        /* Linux's pci_sanity_check() wants a host bridge (or VGA) on bus 0. */
        pci_device_init(&pci->host_bridge, NULL, NULL, &host_bridge_id);
        pci->host_bridge.bus = pci;
        pci->devices[0] = &pci->host_bridge;

        r = pthread_mutex_init(&pci->lock, NULL);
        if (r)
                return -r;
        r = bus_register(pio, LAYOUT_PORT_PCI_CONFIG, CONFIG_PORTS, pci_config_io, pci);
        if (r < 0) {
                pthread_mutex_destroy(&pci->lock);
                return r;
        }
        return 0;
}

/* Places every BAR, naturally aligned, after the previous device's in the 32-bit window. */
static int assign_bars(struct pci_bus *pci, struct pci_device *dev)
{
        uint64_t next = pci->mmio32_next;
        uint64_t end = LAYOUT_PCI_MMIO32_START + LAYOUT_PCI_MMIO32_SIZE;

        for (unsigned i = 0; i < PCI_NR_BARS; i++) {
                struct pci_bar *bar = &dev->bars[i];
                uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * i;
                uint64_t addr;

                if (!bar->size)
                        continue;
                addr = ALIGN_UP(next, bar->size);
                if (addr < next || addr > end || bar->size > end - addr)
                        return -ENOSPC;
                pci_config_set(dev, reg, 4,
                               (uint32_t)addr | (pci_config_get(dev, reg, 4) & BAR_FLAGS_MASK));
                if (bar->is_64)
                        pci_config_set(dev, reg + 4, 4, addr >> 32);
                next = addr + bar->size;
        }
        pci->mmio32_next = next;
        return 0;
}

int pci_bus_add(struct pci_bus *pci, struct pci_device *dev)
{
        unsigned slot;
        int r;

        pthread_mutex_lock(&pci->lock);
        for (slot = 1; slot < PCI_MAX_DEVICES; slot++)
                if (!pci->devices[slot])
                        break;
        if (slot == PCI_MAX_DEVICES) {
                r = -ENOSPC;
                goto out;
        }
        r = assign_bars(pci, dev);
        if (r < 0)
                goto out;

        dev->bus = pci;
        dev->slot = slot;
        pci->devices[slot] = dev;
out:
        pthread_mutex_unlock(&pci->lock);
        return r;
}

void pci_bus_destroy(struct pci_bus *pci)
{
        (void)bus_unregister(pci->pio, LAYOUT_PORT_PCI_CONFIG, pci);
        for (unsigned slot = 1; slot < PCI_MAX_DEVICES; slot++) {
                struct pci_device *dev = pci->devices[slot];

                if (!dev)
                        continue;
                pci->devices[slot] = NULL;
                for (unsigned i = 0; i < PCI_NR_BARS; i++)
                        bar_unmap(pci, &dev->bars[i]);
                if (dev->ops && dev->ops->destroy)
                        dev->ops->destroy(dev);
        }
        pthread_mutex_destroy(&pci->lock);
}
