/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <string.h>

#include "vmm/bus.h"

void bus_init(struct bus *bus, const char *name)
{
        memset(bus, 0, sizeof(*bus));
        bus->name = name;
        pthread_rwlock_init(&bus->lock, NULL);
}

void bus_destroy(struct bus *bus)
{
        pthread_rwlock_destroy(&bus->lock);
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
        return a < b + blen && b < a + alen;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque)
{
        unsigned i;
        int r = 0;

        if (len == 0 || base + len < base)
                return -EINVAL;
        pthread_rwlock_wrlock(&bus->lock);
        if (bus->nr_ranges == BUS_MAX_RANGES) {
                r = -ENOSPC;
                goto out;
        }
        for (i = 0; i < bus->nr_ranges; i++) {
                if (ranges_overlap(base, len, bus->ranges[i].base, bus->ranges[i].len)) {
                        r = -EEXIST;
                        goto out;
                }
                if (bus->ranges[i].base > base)
                        break;
        }
        memmove(&bus->ranges[i + 1], &bus->ranges[i],
                (bus->nr_ranges - i) * sizeof(bus->ranges[0]));
        bus->ranges[i] = (struct bus_range){.base = base, .len = len, .fn = fn, .opaque = opaque};
        bus->nr_ranges++;
out:
        pthread_rwlock_unlock(&bus->lock);
        return r;
}

int bus_unregister(struct bus *bus, uint64_t base, void *opaque)
{
        int r = -ENOENT;

        pthread_rwlock_wrlock(&bus->lock);
        for (unsigned i = 0; i < bus->nr_ranges; i++) {
                if (bus->ranges[i].base != base || bus->ranges[i].opaque != opaque)
                        continue;
                memmove(&bus->ranges[i], &bus->ranges[i + 1],
                        (bus->nr_ranges - i - 1) * sizeof(bus->ranges[0]));
                bus->nr_ranges--;
                r = 0;
                break;
        }
        pthread_rwlock_unlock(&bus->lock);
        return r;
}

/* Binary search; caller holds the lock. */
static const struct bus_range *find_range(const struct bus *bus, uint64_t addr)
{
        unsigned lo = 0, hi = bus->nr_ranges;

        while (lo < hi) {
                unsigned mid = lo + (hi - lo) / 2;
                const struct bus_range *r = &bus->ranges[mid];

                if (addr < r->base)
                        hi = mid;
                else if (addr - r->base >= r->len)
                        lo = mid + 1;
                else
                        return r;
        }
        return NULL;
}

int bus_access(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
        const struct bus_range *range;
        struct bus_range copy;

        pthread_rwlock_rdlock(&bus->lock);
        range = find_range(bus, addr);
        /* An access straddling the end of a range is not the device's: treat it as unclaimed. */
        if (range && addr - range->base + len > range->len)
                range = NULL;
        if (range)
                copy = *range;
        pthread_rwlock_unlock(&bus->lock);

        if (!range) {
                if (!is_write)
                        memset(data, 0xff, len);
                return -ENOENT;
        }
        copy.fn(copy.opaque, addr - copy.base, data, len, is_write);
        return 0;
}
