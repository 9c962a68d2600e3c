/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <string.h>

#include "vmm/devices/power.h"
#include "vmm/layout.h"

#define ACPI_SLP_EN        0x20
#define ACPI_SLP_TYP_SHIFT 2
#define ACPI_SLP_TYP_MASK  0x7
#define I8042_CMD_RESET    0xfe
#define I8042_CMD_OFFSET   (LAYOUT_PORT_I8042_CMD - LAYOUT_PORT_I8042_DATA)

void power_init(struct power *p, void (*on_event)(void *opaque, enum power_event event),
                void *opaque)
{
        p->on_event = on_event;
        p->opaque = opaque;
}

static void acpi_write(struct power *p, uint64_t port, uint8_t v)
{
        if (port == LAYOUT_PORT_ACPI_SLEEP_CONTROL && (v & ACPI_SLP_EN) &&
            ((v >> ACPI_SLP_TYP_SHIFT) & ACPI_SLP_TYP_MASK) == LAYOUT_ACPI_S5_SLP_TYP)
                p->on_event(p->opaque, POWER_EVENT_POWEROFF);
        else if (port == LAYOUT_PORT_ACPI_RESET && v == LAYOUT_ACPI_RESET_VALUE)
                p->on_event(p->opaque, POWER_EVENT_RESET);
        /* Other sleep states are not offered in the DSDT; ignore them. */
}

void power_acpi_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
        if (!is_write) {
                /* Sleep status: never "woken", nothing pending. */
                memset(data, 0, len);
                return;
        }
        acpi_write(opaque, LAYOUT_PORT_ACPI_SLEEP_CONTROL + offset, data[0]);
}

void power_i8042_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
        if (!is_write) {
                /*
                 * Reads float high, as with no controller: Linux's i8042 probe then gives up at
                 * once instead of waiting ~1 s for a command reply that never comes.
                 */
                memset(data, 0xff, len);
                return;
        }
        if (offset == I8042_CMD_OFFSET && data[0] == I8042_CMD_RESET)
                ((struct power *)opaque)
                        ->on_event(((struct power *)opaque)->opaque, POWER_EVENT_RESET);
}
