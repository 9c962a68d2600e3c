/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "tidal/macro.h"
#include "vmm/acpi/aml.h"
#include "vmm/acpi/tables.h"
#include "vmm/layout.h"

/*
 * Table layouts from the ACPI 6.3 specification (5.2 "ACPI System Description Tables"). The
 * structs are packed (alignment 1), so they overlay any byte of the caller's buffer; values are
 * stored little-endian explicitly.
 *
 * Tables are written in place into the zeroed buffer rather than built on the stack and copied:
 * GCC 12.2 at -O2 miscompiles the latter here (RTL dead-store elimination drops header stores
 * that the inline "rep movsq" expansion of the copy still reads).
 */

#define ACPI_OEM_ID           "TIDAL "
#define ACPI_OEM_TABLE_ID     "TIDALVM "
#define ACPI_OEM_REVISION     1
#define ACPI_CREATOR_ID       "TIDL"
#define ACPI_CREATOR_REVISION 1

struct acpi_sdt_header {
        char signature[4];
        uint32_t length;
        uint8_t revision;
        uint8_t checksum;
        char oem_id[6];
        char oem_table_id[8];
        uint32_t oem_revision;
        char creator_id[4];
        uint32_t creator_revision;
} __attribute__((packed));

struct acpi_rsdp {
        char signature[8];
        uint8_t checksum; /* over the first 20 bytes (the ACPI 1.0 part) */
        char oem_id[6];
        uint8_t revision;
        uint32_t rsdt_address;
        uint32_t length;
        uint64_t xsdt_address;
        uint8_t extended_checksum; /* over all 36 bytes */
        uint8_t reserved[3];
} __attribute__((packed));

/* Generic Address Structure (5.2.3.2). */
struct acpi_gas {
        uint8_t space_id;
        uint8_t bit_width;
        uint8_t bit_offset;
        uint8_t access_size;
        uint64_t address;
} __attribute__((packed));

struct acpi_fadt {
        struct acpi_sdt_header header;
        uint32_t firmware_ctrl;
        uint32_t dsdt;
        uint8_t reserved0;
        uint8_t preferred_pm_profile;
        uint16_t sci_int;
        uint32_t smi_cmd;
        uint8_t acpi_enable;
        uint8_t acpi_disable;
        uint8_t s4bios_req;
        uint8_t pstate_cnt;
        uint32_t pm1a_evt_blk;
        uint32_t pm1b_evt_blk;
        uint32_t pm1a_cnt_blk;
        uint32_t pm1b_cnt_blk;
        uint32_t pm2_cnt_blk;
        uint32_t pm_tmr_blk;
        uint32_t gpe0_blk;
        uint32_t gpe1_blk;
        uint8_t pm1_evt_len;
        uint8_t pm1_cnt_len;
        uint8_t pm2_cnt_len;
        uint8_t pm_tmr_len;
        uint8_t gpe0_blk_len;
        uint8_t gpe1_blk_len;
        uint8_t gpe1_base;
        uint8_t cst_cnt;
        uint16_t p_lvl2_lat;
        uint16_t p_lvl3_lat;
        uint16_t flush_size;
        uint16_t flush_stride;
        uint8_t duty_offset;
        uint8_t duty_width;
        uint8_t day_alrm;
        uint8_t mon_alrm;
        uint8_t century;
        uint16_t iapc_boot_arch;
        uint8_t reserved1;
        uint32_t flags;
        struct acpi_gas reset_reg;
        uint8_t reset_value;
        uint16_t arm_boot_arch;
        uint8_t minor_version;
        uint64_t x_firmware_ctrl;
        uint64_t x_dsdt;
        struct acpi_gas x_pm1a_evt_blk;
        struct acpi_gas x_pm1b_evt_blk;
        struct acpi_gas x_pm1a_cnt_blk;
        struct acpi_gas x_pm1b_cnt_blk;
        struct acpi_gas x_pm2_cnt_blk;
        struct acpi_gas x_pm_tmr_blk;
        struct acpi_gas x_gpe0_blk;
        struct acpi_gas x_gpe1_blk;
        struct acpi_gas sleep_control_reg;
        struct acpi_gas sleep_status_reg;
        uint64_t hypervisor_vendor_id;
} __attribute__((packed));

struct acpi_madt {
        struct acpi_sdt_header header;
        uint32_t lapic_address;
        uint32_t flags;
} __attribute__((packed));

struct madt_lapic {
        uint8_t type;
        uint8_t length;
        uint8_t processor_uid;
        uint8_t apic_id;
        uint32_t flags;
} __attribute__((packed));

struct madt_ioapic {
        uint8_t type;
        uint8_t length;
        uint8_t ioapic_id;
        uint8_t reserved;
        uint32_t address;
        uint32_t gsi_base;
} __attribute__((packed));

struct madt_iso {
        uint8_t type;
        uint8_t length;
        uint8_t bus;
        uint8_t source;
        uint32_t gsi;
        uint16_t flags;
} __attribute__((packed));

struct madt_lapic_nmi {
        uint8_t type;
        uint8_t length;
        uint8_t processor_uid;
        uint16_t flags;
        uint8_t lint;
} __attribute__((packed));

_Static_assert(sizeof(struct acpi_sdt_header) == 36, "SDT header");
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP");
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS");
_Static_assert(offsetof(struct acpi_fadt, iapc_boot_arch) == 109, "FADT IAPC_BOOT_ARCH");
_Static_assert(offsetof(struct acpi_fadt, flags) == 112, "FADT flags");
_Static_assert(offsetof(struct acpi_fadt, reset_reg) == 116, "FADT RESET_REG");
_Static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT X_DSDT");
_Static_assert(offsetof(struct acpi_fadt, sleep_control_reg) == 244, "FADT SLEEP_CONTROL_REG");
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT (ACPI 6.x)");
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT");
_Static_assert(sizeof(struct madt_lapic) == 8, "MADT local APIC");
_Static_assert(sizeof(struct madt_ioapic) == 12, "MADT I/O APIC");
_Static_assert(sizeof(struct madt_iso) == 10, "MADT interrupt source override");
_Static_assert(sizeof(struct madt_lapic_nmi) == 6, "MADT local APIC NMI");

/* Revisions: ACPI 6.3 throughout. */
#define RSDP_REVISION      2 /* ACPI 2.0+: has the XSDT */
#define XSDT_REVISION      1
#define FADT_REVISION      6
#define FADT_MINOR_VERSION 3
#define MADT_REVISION      5
#define DSDT_REVISION      2 /* 64-bit AML integers */

#define GAS_SPACE_SYSTEM_IO 1
#define GAS_ACCESS_BYTE     1

/* FADT flags (5.2.9, table 5-34). */
#define FADT_F_WBINVD          (1U << 0) /* "must be set" for ACPI 2.0+ processors */
#define FADT_F_PWR_BUTTON      (1U << 4) /* no fixed-feature power button ... */
#define FADT_F_SLP_BUTTON      (1U << 5) /* ... nor sleep button */
#define FADT_F_RESET_REG_SUP   (1U << 10)
#define FADT_F_HW_REDUCED_ACPI (1U << 20)

/* IA-PC boot architecture flags (5.2.9.3). */
#define IAPC_BOOT_VGA_NOT_PRESENT      (1U << 2)
#define IAPC_BOOT_PCIE_ASPM_CONTROLS   (1U << 4)
#define IAPC_BOOT_CMOS_RTC_NOT_PRESENT (1U << 5)

#define FADT_SCI_INT 9

#define MADT_PCAT_COMPAT    (1U << 0) /* KVM_CREATE_IRQCHIP also gives the guest dual 8259s */
#define MADT_TYPE_LAPIC     0
#define MADT_TYPE_IOAPIC    1
#define MADT_TYPE_ISO       2
#define MADT_TYPE_LAPIC_NMI 4
#define MADT_LAPIC_ENABLED  (1U << 0)
#define MADT_ALL_PROCESSORS 0xff
#define MADT_ISA_BUS        0
/* MPS INTI flags: polarity bits 0-1 (1 = active high), trigger bits 2-3 (3 = level). */
#define MPS_INTI_CONFORMS   0x0
#define MPS_INTI_HIGH_LEVEL (0x1 | 0x3 << 2)

/*
 * The I/O APIC ID is 0: I/O APIC and local APIC IDs are separate name spaces since the xAPIC
 * (x86-64 Linux only checks I/O APIC IDs against each other), and 0 is what KVM's emulated
 * I/O APIC reports in its ID register (it keeps only 4 bits, so "nr_cpus" would not even fit).
 */
#define MADT_IOAPIC_ID 0

/* The PIT is wired to I/O APIC pin 2 by KVM's default routing. */
#define ISA_IRQ_PIT 0
#define GSI_PIT     2

/* Single PCI bus: tidal emulates no bridges, so only bus 0 can answer config cycles. */
#define PCI_BUS_FIRST 0
#define PCI_BUS_LAST  0

#define XSDT_ENTRIES 2 /* FADT, MADT */

/* The caller's buffer, zeroed, filled front to back. */
struct area {
        uint8_t *buf;
        uint64_t size;
        uint64_t gpa;
        uint64_t used;
};

/* Reserves len bytes at the next 8-byte boundary and returns them; NULL if they do not fit. */
static void *area_reserve(struct area *ar, uint64_t len)
{
        uint64_t off = ALIGN_UP(ar->used, (uint64_t)8);

        if (off > ar->size || len > ar->size - off)
                return NULL;
        ar->used = off + len;
        return ar->buf + off;
}

static uint64_t area_gpa(const struct area *ar, const void *p)
{
        return ar->gpa + (uint64_t)((const uint8_t *)p - ar->buf);
}

static uint8_t checksum(const uint8_t *p, size_t n)
{
        uint8_t sum = 0;

        for (size_t i = 0; i < n; i++)
                sum += p[i];
        return (uint8_t)-sum;
}

static void header_init(struct acpi_sdt_header *h, const char *sig, uint64_t len, uint8_t revision)
{
        memcpy(h->signature, sig, sizeof(h->signature));
        h->length = htole32((uint32_t)len);
        h->revision = revision;
        h->checksum = 0;
        memcpy(h->oem_id, ACPI_OEM_ID, sizeof(h->oem_id));
        memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, sizeof(h->oem_table_id));
        h->oem_revision = htole32(ACPI_OEM_REVISION);
        memcpy(h->creator_id, ACPI_CREATOR_ID, sizeof(h->creator_id));
        h->creator_revision = htole32(ACPI_CREATOR_REVISION);
}

/* Sets the checksum of a finished table so that all its bytes sum to 0. */
static void table_seal(struct acpi_sdt_header *h)
{
        h->checksum = 0;
        h->checksum = checksum((const uint8_t *)h, le32toh(h->length));
}

static void dsdt_s5(struct aml *a)
{
        struct aml_pkg pkg;

        /* SLP_TYPa, SLP_TYPb, two reserved: Linux writes SLP_TYPa << 2 | SLP_EN. */
        aml_name(a, "_S5");
        pkg = aml_package_begin(a, 4);
        aml_integer(a, LAYOUT_ACPI_S5_SLP_TYP);
        aml_integer(a, 0);
        aml_integer(a, 0);
        aml_integer(a, 0);
        aml_end(a, pkg);
}

static void dsdt_pci0_crs(struct aml *a, const struct acpi_config *cfg)
{
        struct aml_pkg rt;

        aml_name(a, "_CRS");
        rt = aml_resource_template_begin(a);
        aml_word_bus_number(a, PCI_BUS_FIRST, PCI_BUS_LAST);
        /* The bridge itself decodes the type 1 config ports ... */
        aml_io(a, LAYOUT_PORT_PCI_CONFIG, LAYOUT_PORT_PCI_CONFIG, 1, 8);
        /* ... and forwards all other ports to the bus. */
        aml_word_io(a, 0x0000, LAYOUT_PORT_PCI_CONFIG - 1);
        aml_word_io(a, LAYOUT_PORT_PCI_CONFIG + 8, 0xffff);
        aml_dword_memory(a, AML_MEM_NON_CACHEABLE, (uint32_t)LAYOUT_PCI_MMIO32_START,
                         (uint32_t)(LAYOUT_PCI_MMIO32_START + LAYOUT_PCI_MMIO32_SIZE - 1));
        /*
         * Not prefetchable: Linux refuses to claim a non-prefetchable BAR inside a
         * prefetchable window, and tidal's BARs may be either.
         */
        if (cfg->pci_mmio64_base != 0)
                aml_qword_memory(a, AML_MEM_NON_CACHEABLE, cfg->pci_mmio64_base,
                                 cfg->pci_mmio64_base + cfg->pci_mmio64_size - 1);
        aml_end(a, rt);
}

/*
 * The host bridge. No _ADR: a device has a _HID or an _ADR, not both (ACPI 6.3 6.1; iasl warns).
 * No _PRT (devices use MSI-X only), no _OSC (Linux then keeps PCIe features to the platform,
 * which is fine for emulated devices), no MCFG (config space is type 1 ports).
 */
static void dsdt_pci0(struct aml *a, const struct acpi_config *cfg)
{
        struct aml_pkg dev = aml_device_begin(a, "PCI0");

        aml_name_eisaid(a, "_HID", "PNP0A08");
        aml_name_eisaid(a, "_CID", "PNP0A03");
        aml_name_integer(a, "_SEG", 0);
        aml_name_integer(a, "_UID", 0);
        aml_name_integer(a, "_BBN", PCI_BUS_FIRST);
        dsdt_pci0_crs(a, cfg);
        aml_end(a, dev);
}

/* COM1, so Linux binds the 8250 to the port and IRQ from ACPI rather than guessing. */
static void dsdt_com1(struct aml *a)
{
        struct aml_pkg dev = aml_device_begin(a, "COM1");
        struct aml_pkg rt;

        aml_name_eisaid(a, "_HID", "PNP0501");
        aml_name_integer(a, "_UID", 1);
        aml_name(a, "_CRS");
        rt = aml_resource_template_begin(a);
        aml_io(a, LAYOUT_PORT_COM1, LAYOUT_PORT_COM1, 0, 8);
        aml_irq_no_flags(a, LAYOUT_IRQ_COM1);
        aml_end(a, rt);
        aml_end(a, dev);
}

static void dsdt_body(struct aml *a, const struct acpi_config *cfg)
{
        struct aml_pkg sb;

        dsdt_s5(a);
        sb = aml_scope_begin(a, "\\_SB");
        dsdt_pci0(a, cfg);
        dsdt_com1(a);
        aml_end(a, sb);
}

static int build_dsdt(struct area *ar, const struct acpi_config *cfg, uint64_t *ret_gpa)
{
        struct acpi_sdt_header *h = area_reserve(ar, sizeof(*h));
        struct aml a;
        int r;

        if (!h)
                return -ENOSPC;
        /* The AML goes straight behind the header, into whatever room is left. */
        aml_init_fixed(&a, h + 1, ar->size - ar->used);
        dsdt_body(&a, cfg);
        r = aml_error(&a);
        if (r < 0)
                return r;
        ar->used += a.len;

        header_init(h, "DSDT", sizeof(*h) + a.len, DSDT_REVISION);
        table_seal(h);
        *ret_gpa = area_gpa(ar, h);
        return 0;
}

static void gas_io8(struct acpi_gas *g, uint16_t port)
{
        g->space_id = GAS_SPACE_SYSTEM_IO;
        g->bit_width = 8;
        g->bit_offset = 0;
        g->access_size = GAS_ACCESS_BYTE;
        g->address = htole64(port);
}

static int build_fadt(struct area *ar, uint64_t dsdt_gpa, uint64_t *ret_gpa)
{
        struct acpi_fadt *f = area_reserve(ar, sizeof(*f));

        if (!f)
                return -ENOSPC;

        /* Everything not set here stays 0. */
        header_init(&f->header, "FACP", sizeof(*f), FADT_REVISION);
        f->minor_version = FADT_MINOR_VERSION;
        /* X_DSDT wins when set; the 32-bit copy is for OSes that read only that. */
        f->dsdt = htole32(dsdt_gpa < LAYOUT_4GIB ? (uint32_t)dsdt_gpa : 0);
        f->x_dsdt = htole64(dsdt_gpa);
        /*
         * Hardware reduced: no PM1/GPE blocks, PM timer, SMI_CMD or FACS; sleep and reset go
         * through the registers below. Without the button flags Linux would create fixed
         * power/sleep button devices backed by PM1 registers that do not exist.
         */
        f->flags = htole32(FADT_F_WBINVD | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON |
                           FADT_F_RESET_REG_SUP | FADT_F_HW_REDUCED_ACPI);
        f->preferred_pm_profile = 0; /* unspecified */
        f->sci_int = htole16(FADT_SCI_INT);
        /*
         * No VGA, no CMOS RTC (tidal emulates neither), OS must not touch ASPM. 8042 is left
         * clear so Linux does not probe the i8042 stub, and MSI_NOT_SUPPORTED must stay clear
         * or Linux disables MSI, which every tidal device relies on.
         */
        f->iapc_boot_arch = htole16(IAPC_BOOT_VGA_NOT_PRESENT | IAPC_BOOT_PCIE_ASPM_CONTROLS |
                                    IAPC_BOOT_CMOS_RTC_NOT_PRESENT);
        gas_io8(&f->reset_reg, LAYOUT_PORT_ACPI_RESET);
        f->reset_value = LAYOUT_ACPI_RESET_VALUE;
        gas_io8(&f->sleep_control_reg, LAYOUT_PORT_ACPI_SLEEP_CONTROL);
        gas_io8(&f->sleep_status_reg, LAYOUT_PORT_ACPI_SLEEP_STATUS);

        table_seal(&f->header);
        *ret_gpa = area_gpa(ar, f);
        return 0;
}

static uint64_t madt_size(unsigned nr_cpus)
{
        return sizeof(struct acpi_madt) + nr_cpus * sizeof(struct madt_lapic) +
               sizeof(struct madt_ioapic) + 2 * sizeof(struct madt_iso) +
               sizeof(struct madt_lapic_nmi);
}

/* Returns the next n bytes of a table being filled, advancing *pos. */
static void *next(uint8_t **pos, size_t n)
{
        void *p = *pos;

        *pos += n;
        return p;
}

static void madt_iso(uint8_t **pos, uint8_t irq, uint32_t gsi, uint16_t flags)
{
        struct madt_iso *iso = next(pos, sizeof(*iso));

        iso->type = MADT_TYPE_ISO;
        iso->length = sizeof(*iso);
        iso->bus = MADT_ISA_BUS;
        iso->source = irq;
        iso->gsi = htole32(gsi);
        iso->flags = htole16(flags);
}

static int build_madt(struct area *ar, unsigned nr_cpus, uint64_t *ret_gpa)
{
        uint64_t len = madt_size(nr_cpus);
        struct acpi_madt *m = area_reserve(ar, len);
        struct madt_ioapic *io;
        struct madt_lapic_nmi *nmi;
        uint8_t *pos;

        if (!m)
                return -ENOSPC;

        header_init(&m->header, "APIC", len, MADT_REVISION);
        m->lapic_address = htole32((uint32_t)LAYOUT_LAPIC_ADDR);
        m->flags = htole32(MADT_PCAT_COMPAT);
        pos = (uint8_t *)(m + 1);

        /* Linux brings up every enabled local APIC listed here; no processor objects needed. */
        for (unsigned i = 0; i < nr_cpus; i++) {
                struct madt_lapic *l = next(&pos, sizeof(*l));

                l->type = MADT_TYPE_LAPIC;
                l->length = sizeof(*l);
                l->processor_uid = (uint8_t)i;
                l->apic_id = (uint8_t)i;
                l->flags = htole32(MADT_LAPIC_ENABLED);
        }

        io = next(&pos, sizeof(*io));
        io->type = MADT_TYPE_IOAPIC;
        io->length = sizeof(*io);
        io->ioapic_id = MADT_IOAPIC_ID;
        io->address = htole32((uint32_t)LAYOUT_IOAPIC_ADDR);
        io->gsi_base = 0;

        madt_iso(&pos, ISA_IRQ_PIT, GSI_PIT, MPS_INTI_CONFORMS);
        /* The SCI is level triggered, active high, by definition (5.2.12.5). */
        madt_iso(&pos, FADT_SCI_INT, FADT_SCI_INT, MPS_INTI_HIGH_LEVEL);

        nmi = next(&pos, sizeof(*nmi));
        nmi->type = MADT_TYPE_LAPIC_NMI;
        nmi->length = sizeof(*nmi);
        nmi->processor_uid = MADT_ALL_PROCESSORS;
        nmi->flags = htole16(MPS_INTI_CONFORMS);
        nmi->lint = 1;

        table_seal(&m->header);
        *ret_gpa = area_gpa(ar, m);
        return 0;
}

static int build_xsdt(struct area *ar, const uint64_t *entries, size_t nr, uint64_t *ret_gpa)
{
        uint64_t len = sizeof(struct acpi_sdt_header) + nr * sizeof(uint64_t);
        struct acpi_sdt_header *h = area_reserve(ar, len);
        uint8_t *pos;

        if (!h)
                return -ENOSPC;

        header_init(h, "XSDT", len, XSDT_REVISION);
        /* The 64-bit entries start at offset 36, unaligned: store them bytewise. */
        pos = (uint8_t *)(h + 1);
        for (size_t i = 0; i < nr; i++) {
                uint64_t e = htole64(entries[i]);

                memcpy(next(&pos, sizeof(e)), &e, sizeof(e));
        }
        table_seal(h);
        *ret_gpa = area_gpa(ar, h);
        return 0;
}

static void fill_rsdp(struct acpi_rsdp *r, uint64_t xsdt_gpa)
{
        memcpy(r->signature, "RSD PTR ", sizeof(r->signature));
        memcpy(r->oem_id, ACPI_OEM_ID, sizeof(r->oem_id));
        r->revision = RSDP_REVISION;
        r->rsdt_address = 0; /* no RSDT: every OS that knows the XSDT uses it */
        r->length = htole32(sizeof(*r));
        r->xsdt_address = htole64(xsdt_gpa);
        r->checksum = 0;
        r->checksum = checksum((const uint8_t *)r, offsetof(struct acpi_rsdp, length));
        r->extended_checksum = 0;
        r->extended_checksum = checksum((const uint8_t *)r, sizeof(*r));
}

static int config_validate(const struct acpi_config *cfg)
{
        uint64_t end;

        if (cfg->nr_cpus < 1 || cfg->nr_cpus > ACPI_MAX_CPUS)
                return -EINVAL;
        if (cfg->pci_mmio64_base == 0)
                return cfg->pci_mmio64_size == 0 ? 0 : -EINVAL;
        if (cfg->pci_mmio64_size == 0 ||
            add_overflows_u64(cfg->pci_mmio64_base, cfg->pci_mmio64_size - 1, &end))
                return -EINVAL;
        return 0;
}

int acpi_build_tables(void *buf, uint64_t buf_size, uint64_t buf_gpa, const struct acpi_config *cfg,
                      uint64_t *ret_rsdp_gpa)
{
        struct area ar = {.buf = buf, .size = buf_size, .gpa = buf_gpa};
        uint64_t xsdt_entries[XSDT_ENTRIES], dsdt_gpa, xsdt_gpa, end;
        struct acpi_rsdp *rsdp;
        int r;

        if (!buf || !cfg || !ret_rsdp_gpa || !IS_ALIGNED(buf_gpa, (uint64_t)16) ||
            add_overflows_u64(buf_gpa, buf_size, &end))
                return -EINVAL;
        r = config_validate(cfg);
        if (r < 0)
                return r;

        memset(buf, 0, buf_size);
        /* The RSDP goes first so it is at buf_gpa; it is filled in once the XSDT exists. */
        rsdp = area_reserve(&ar, sizeof(*rsdp));
        if (!rsdp)
                return -ENOSPC;

        r = build_dsdt(&ar, cfg, &dsdt_gpa);
        if (r < 0)
                return r;
        r = build_fadt(&ar, dsdt_gpa, &xsdt_entries[0]);
        if (r < 0)
                return r;
        r = build_madt(&ar, cfg->nr_cpus, &xsdt_entries[1]);
        if (r < 0)
                return r;
        r = build_xsdt(&ar, xsdt_entries, ARRAY_SIZE(xsdt_entries), &xsdt_gpa);
        if (r < 0)
                return r;

        fill_rsdp(rsdp, xsdt_gpa);
        *ret_rsdp_gpa = area_gpa(&ar, rsdp);
        return 0;
}
