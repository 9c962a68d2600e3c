/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Conventional PCI, bus 0 only: a host bridge at 00:00.0 and up to 31 single-function devices,
 * reached through the type-1 configuration mechanism (0xcf8 address, 0xcfc..0xcff data).
 *
 * Every device has a 256-byte configuration space with a write mask, so read-only fields stay
 * read-only whatever the guest writes. Memory BARs are pre-assigned from the 32-bit MMIO window
 * when a device is added; the guest may size and move them, and the MMIO bus registration
 * follows COMMAND.MEMORY and the BAR value. No INTx (Interrupt Pin 0): devices use MSI-X.
 *
 * Locking: pci->lock serialises configuration accesses (the address latch is shared by all
 * vCPUs, as on real hardware). It is held while the bus calls a device's config and bar_moved
 * hooks, so a device may take its own lock inside them but must never take pci->lock from its
 * BAR handlers. BAR accesses themselves (bar_access) are dispatched by the MMIO bus without
 * pci->lock.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"

#define PCI_MAX_DEVICES  32 /* device numbers on bus 0; 0 is the host bridge */
#define PCI_CONFIG_SIZE  256
#define PCI_NR_BARS      6
#define PCI_BAR_MIN_SIZE 4096u
#define PCI_MAX_WINDOWS  2
#define PCI_CAP_FIRST    0x40 /* first byte after the type-0 header */

/* Host bridge identity (the one Cloud Hypervisor uses; no Linux driver binds to it). */
#define PCI_HOST_BRIDGE_VENDOR 0x8086
#define PCI_HOST_BRIDGE_DEVICE 0x0d57

/* pci_device_set_bar() flags. */
#define PCI_BAR_F_64BIT    (1u << 0)
#define PCI_BAR_F_PREFETCH (1u << 1)

struct pci_bus;
struct pci_device;

struct pci_device_ops {
        /* A guest access to BAR bar at offset (inside the BAR). Reads fill data[0..len). */
        void (*bar_access)(struct pci_device *dev, unsigned bar, uint64_t offset, uint8_t *data,
                           uint32_t len, bool is_write);
        /*
         * The BAR's MMIO decoding changed: mapped at addr, or no longer decoded (mapped false:
         * memory space disabled, moved over something else, being sized). Lets the device move
         * what KVM handles without exits (ioeventfds). Called with pci->lock held.
         */
        void (*bar_moved)(struct pci_device *dev, unsigned bar, bool mapped, uint64_t addr);
        /* Before config bytes [off, off + len) are returned to the guest (pci->lock held). */
        void (*config_read)(struct pci_device *dev, uint32_t off, uint32_t len);
        /* After the masked write of [off, off + len) landed in dev->config (pci->lock held). */
        void (*config_write)(struct pci_device *dev, uint32_t off, uint32_t len);
        /* pci_bus_destroy(): release everything, including the memory holding dev. */
        void (*destroy)(struct pci_device *dev);
};

struct pci_device_id {
        uint16_t vendor;
        uint16_t device;
        uint16_t subsys_vendor;
        uint16_t subsys_id;
        uint32_t class_code; /* 24 bits: class, subclass, prog-if */
        uint8_t revision;
};

struct pci_bar {
        uint64_t size; /* 0: not implemented */
        bool is_64;    /* occupies this and the next BAR register */
        bool mapped;   /* registered on the MMIO bus at mapped_addr */
        uint64_t mapped_addr;
        bool refusal_logged; /* warned about an overlap since it was last mapped */
        struct pci_device *dev;
        unsigned index;
};

struct pci_device {
        const struct pci_device_ops *ops;
        void *opaque; /* the device's own state */

        /* Owned by the bus once added; devices fill config/wmask before pci_bus_add(). */
        uint8_t config[PCI_CONFIG_SIZE];
        uint8_t wmask[PCI_CONFIG_SIZE]; /* bits the guest may change */
        uint8_t cap_end;                /* first free byte for the next capability */
        uint8_t last_cap;               /* offset of the last capability, 0 if none */
        struct pci_bar bars[PCI_NR_BARS];
        struct pci_bus *bus;
        unsigned slot; /* device number on bus 0 */
};

struct pci_window {
        uint64_t base;
        uint64_t size;
};

struct pci_bus {
        pthread_mutex_t lock;
        struct bus *pio;
        struct bus *mmio;
        uint32_t config_address; /* the 0xcf8 latch */
        struct pci_device host_bridge;
        struct pci_device *devices[PCI_MAX_DEVICES];
        uint64_t mmio32_next; /* BAR pre-assignment cursor */
        /* Where the guest may place memory BARs: not RAM, not the APICs. */
        unsigned nr_windows;
        struct pci_window windows[PCI_MAX_WINDOWS];
};

/* Registers 0xcf8..0xcff on pio and adds the host bridge. 0 or -errno. */
int pci_bus_init(struct pci_bus *pci, struct bus *pio, struct bus *mmio);
/* Unregisters everything and calls each device's destroy hook. */
void pci_bus_destroy(struct pci_bus *pci);

/*
 * Allows guest BARs in [base, base + size) too, e.g. a 64-bit window above RAM that the ACPI
 * tables publish. The 32-bit MMIO window is allowed from pci_bus_init().
 */
int pci_bus_add_window(struct pci_bus *pci, uint64_t base, uint64_t size);

/*
 * Takes the first free device number, writes the header, assigns the BARs from the 32-bit
 * window. Memory decoding stays off until the guest enables it, as after a PCI reset. On success
 * the bus owns dev (destroy hook). 0, -ENOSPC (no slot or window space), -EINVAL.
 */
int pci_bus_add(struct pci_bus *pci, struct pci_device *dev);

/* Zeroes dev and writes the identity registers; no BARs, no capabilities. */
void pci_device_init(struct pci_device *dev, const struct pci_device_ops *ops, void *opaque,
                     const struct pci_device_id *id);

/* Declares a memory BAR: size a power of two >= 4 KiB, flags PCI_BAR_F_*. 0 or -EINVAL. */
int pci_device_set_bar(struct pci_device *dev, unsigned bar, uint64_t size, unsigned flags);

/*
 * Appends a capability (cap[0] = ID, cap[1] is overwritten with the next pointer) of len bytes,
 * 4-byte aligned. *ret_off gets its config offset. The capability is read-only until the device
 * sets wmask bits for it. 0 or -ENOSPC.
 */
int pci_device_add_cap(struct pci_device *dev, const void *cap, uint8_t len, uint8_t *ret_off);

/* Little-endian config space helpers for devices (no locking: init time or inside hooks). */
uint32_t pci_config_get(const struct pci_device *dev, uint32_t off, uint32_t len);
void pci_config_set(struct pci_device *dev, uint32_t off, uint32_t len, uint32_t val);
void pci_wmask_set(struct pci_device *dev, uint32_t off, uint32_t len, uint32_t mask);
