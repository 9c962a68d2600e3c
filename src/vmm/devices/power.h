/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * How the guest powers off and reboots: the ACPI hardware-reduced sleep control register
 * (poweroff = S5), the ACPI reset register, and, for kernels that try it, the i8042 reset line
 * (command 0xfe on port 0x64).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum power_event {
        POWER_EVENT_POWEROFF,
        POWER_EVENT_RESET,
};

struct power {
        void (*on_event)(void *opaque, enum power_event event);
        void *opaque;
};

void power_init(struct power *p, void (*on_event)(void *opaque, enum power_event event),
                void *opaque);

/* struct bus handlers. acpi_io is registered at LAYOUT_PORT_ACPI_SLEEP_CONTROL for 3 ports. */
void power_acpi_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
void power_i8042_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
