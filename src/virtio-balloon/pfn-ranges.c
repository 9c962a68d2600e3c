/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdbool.h>
#include <stdlib.h>

#include "tidal/macro.h"
#include "virtio-balloon/pfn-ranges.h"

#define PAGE_SHIFT 12

/*
 * Emits the pages of [first, end) that are RAM (boot RAM, plugged hot-added blocks), one call
 * per region or run of plugged blocks crossed; counts the rest as out of range.
 */
static size_t emit_run(const struct guest_mem *gm, uint64_t first, uint64_t end, pfn_range_fn fn,
                       void *opaque, struct pfn_ranges_count *count)
{
        uint64_t pos = first << PAGE_SHIFT, stop = end << PAGE_SHIFT, s, e;
        size_t emitted = 0;

        while (pos < stop && guest_mem_next_ram(gm, pos, stop, &s, &e)) {
                count->out_of_range += (s - pos) >> PAGE_SHIFT;
                fn(opaque, s, e - s);
                count->pages += (e - s) >> PAGE_SHIFT;
                emitted++;
                pos = e;
        }
        count->out_of_range += (stop - pos) >> PAGE_SHIFT;
        return emitted;
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return (x > y) - (x < y);
}

size_t pfn_ranges_from_pfns(uint32_t *pfns, size_t nr, const struct guest_mem *gm, pfn_range_fn fn,
                            void *opaque, struct pfn_ranges_count *count)
{
        size_t emitted = 0, i = 0;

        /* The driver allocates pages one by one, so a batch is rarely sorted; 256 is cheap. */
        qsort(pfns, nr, sizeof(*pfns), cmp_u32);
        while (i < nr) {
                uint64_t first = pfns[i], end = first + 1;

                for (i++; i < nr && pfns[i] <= end; i++) {
                        if (pfns[i] < end)
                                count->duplicates++;
                        else
                                end++;
                }
                emitted += emit_run(gm, first, end, fn, opaque, count);
        }
        return emitted;
}

static int cmp_range(const void *a, const void *b)
{
        uint64_t x = ((const struct pfn_range *)a)->gpa, y = ((const struct pfn_range *)b)->gpa;

        return (x > y) - (x < y);
}

/* The whole pages inside [gpa, gpa + len), as page numbers; saturates instead of wrapping. */
static void range_pages(const struct pfn_range *r, uint64_t *first, uint64_t *end)
{
        uint64_t last = r->len > UINT64_MAX - r->gpa ? UINT64_MAX : r->gpa + r->len;

        *first = (r->gpa >> PAGE_SHIFT) + !IS_ALIGNED(r->gpa, (uint64_t)GUEST_PAGE_SIZE);
        *end = MAX(last >> PAGE_SHIFT, *first);
}

size_t pfn_ranges_merge(struct pfn_range *ranges, size_t nr, const struct guest_mem *gm,
                        pfn_range_fn fn, void *opaque, struct pfn_ranges_count *count)
{
        size_t emitted = 0, i = 0;

        /* Sorting by gpa also sorts by first whole page, which is monotonic in gpa. */
        qsort(ranges, nr, sizeof(*ranges), cmp_range);
        while (i < nr) {
                uint64_t first, end;

                range_pages(&ranges[i], &first, &end);
                for (i++; i < nr; i++) {
                        uint64_t f, e;

                        range_pages(&ranges[i], &f, &e);
                        if (f > end)
                                break;
                        count->duplicates += MIN(e, end) - MIN(f, end);
                        end = MAX(end, e);
                }
                if (end > first)
                        emitted += emit_run(gm, first, end, fn, opaque, count);
        }
        return emitted;
}
