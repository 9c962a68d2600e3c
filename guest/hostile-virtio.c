// SPDX-License-Identifier: MIT
/*
 * hostile-virtio - a deliberately broken virtio-pci driver for the test guest.
 *
 *   hostile-virtio CASE
 *
 * Takes the virtio-balloon device away from Linux's driver (sysfs unbind), drives it from user
 * space through its BARs (sysfs resource files) with rings in locked memory whose physical
 * addresses come from /proc/self/pagemap, puts one malformed request of kind CASE on the
 * inflate queue, kicks it, and reports what the device did. Then it resets the device and
 * hands it back to Linux's driver, so that the test can check the device recovers.
 *
 * Malformed cases (the device must set DEVICE_NEEDS_RESET and the VMM keep running):
 *   desc-oob    a descriptor far outside guest RAM
 *   desc-wrap   a descriptor whose length runs past the end of the address space
 *   desc-loop   a descriptor chain that loops
 *   next-oob    a chain whose next index is past the queue size
 *   head-oob    an available-ring entry past the queue size
 *   avail-idx   an available index more than a queue size ahead of the device
 *   ring-oob    the rings themselves placed outside guest RAM (refused at queue_enable or kick)
 * Well-formed but hostile (the device must serve it and skip what is not RAM):
 *   pfn-oob     an inflate request naming PFNs outside guest RAM and in the PCI hole
 *
 * Output: "HOSTILE case=CASE status=0xNN used_idx=N" and exit 0 when the device behaved as
 * described above, 1 when it did not, 2 on a setup error.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PCI_DEVICES    "/sys/bus/pci/devices"
#define VIRTIO_DRIVER  "/sys/bus/pci/drivers/virtio-pci"
#define VENDOR_VIRTIO  0x1af4
#define DEVICE_BALLOON 0x1045 /* 0x1040 + virtio device ID 5 */
#define PAGE           4096u
#define QUEUE_SIZE     8u

/* struct virtio_pci_common_cfg offsets (virtio 1.x, 4.1.4.3). */
enum {
        CC_DFSELECT = 0x00,
        CC_DF = 0x04,
        CC_GFSELECT = 0x08,
        CC_GF = 0x0c,
        CC_STATUS = 0x14,
        CC_Q_SELECT = 0x16,
        CC_Q_SIZE = 0x18,
        CC_Q_ENABLE = 0x1c,
        CC_Q_NOFF = 0x1e,
        CC_Q_DESC = 0x20,
        CC_Q_AVAIL = 0x28,
        CC_Q_USED = 0x30,
};

enum {
        ST_ACK = 1,
        ST_DRIVER = 2,
        ST_DRIVER_OK = 4,
        ST_FEATURES_OK = 8,
        ST_NEEDS_RESET = 64,
};

struct desc {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
        uint16_t next;
};

#define DESC_F_NEXT 1

struct dev {
        char slot[256];
        bool was_bound; /* a driver had it: hand it back to virtio-pci at the end */
        volatile uint8_t *common;
        volatile uint8_t *notify;
        uint32_t notify_mult;
};

/* One locked page and its guest-physical address. */
struct page {
        uint8_t *va;
        uint64_t pa;
};

static void die(const char *what)
{
        fprintf(stderr, "hostile-virtio: %s: %s\n", what, strerror(errno));
        exit(2);
}

static int write_file(const char *path, const char *text)
{
        int fd = open(path, O_WRONLY);
        ssize_t n;

        if (fd < 0)
                return -1;
        n = write(fd, text, strlen(text));
        close(fd);
        return n == (ssize_t)strlen(text) ? 0 : -1;
}

static long read_hex(const char *dir, const char *name)
{
        char path[1024], buf[32] = "";
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "r");
        if (!f)
                return -1;
        if (!fgets(buf, sizeof(buf), f))
                buf[0] = '\0';
        fclose(f);
        return strtol(buf, NULL, 16);
}

static int find_balloon(struct dev *d)
{
        DIR *dir = opendir(PCI_DEVICES);
        struct dirent *e;
        char path[1024];

        if (!dir)
                die(PCI_DEVICES);
        while ((e = readdir(dir))) {
                if (e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), PCI_DEVICES "/%s", e->d_name);
                if (read_hex(path, "vendor") == VENDOR_VIRTIO &&
                    read_hex(path, "device") == DEVICE_BALLOON) {
                        snprintf(d->slot, sizeof(d->slot), "%s", e->d_name);
                        closedir(dir);
                        return 0;
                }
        }
        closedir(dir);
        return -1;
}

static void unbind_driver(struct dev *d)
{
        char path[1024], target[1024];
        ssize_t n;

        snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver", d->slot);
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return; /* no driver bound */
        d->was_bound = true;
        snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver/unbind", d->slot);
        if (write_file(path, d->slot) < 0)
                die("unbind");
}

static volatile uint8_t *map_bar(struct dev *d, unsigned bar)
{
        char path[1024];
        void *p;
        int fd;

        snprintf(path, sizeof(path), PCI_DEVICES "/%s/resource%u", d->slot, bar);
        fd = open(path, O_RDWR | O_SYNC);
        if (fd < 0)
                die(path);
        p = mmap(NULL, 1 << 14, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED)
                die("mmap BAR");
        return p;
}

/* Finds the common and notify capabilities in config space and maps their BARs. */
static void map_caps(struct dev *d)
{
        char path[1024];
        uint8_t cfg[256];
        int fd;

        snprintf(path, sizeof(path), PCI_DEVICES "/%s/config", d->slot);
        fd = open(path, O_RDONLY);
        if (fd < 0 || pread(fd, cfg, sizeof(cfg), 0) != sizeof(cfg))
                die("read config space");
        close(fd);
        for (unsigned pos = cfg[0x34] & ~3u, hops = 0; pos >= 0x40 && hops < 48;
             pos = cfg[pos + 1] & ~3u, hops++) {
                uint32_t off;

                if (pos > sizeof(cfg) - 20 || cfg[pos] != 0x09)
                        continue;
                memcpy(&off, cfg + pos + 8, 4);
                if (cfg[pos + 3] == 1)
                        d->common = map_bar(d, cfg[pos + 4]) + off;
                else if (cfg[pos + 3] == 2) {
                        d->notify = map_bar(d, cfg[pos + 4]) + off;
                        memcpy(&d->notify_mult, cfg + pos + 16, 4);
                }
        }
        if (!d->common || !d->notify) {
                errno = ENOENT;
                die("virtio capabilities");
        }
}

static void w8(struct dev *d, unsigned off, uint8_t v)
{
        *(volatile uint8_t *)(d->common + off) = v;
}

static uint8_t r8(struct dev *d, unsigned off)
{
        return *(volatile uint8_t *)(d->common + off);
}

static void w16(struct dev *d, unsigned off, uint16_t v)
{
        *(volatile uint16_t *)(d->common + off) = v;
}

static uint16_t r16(struct dev *d, unsigned off)
{
        return *(volatile uint16_t *)(d->common + off);
}

static void w32(struct dev *d, unsigned off, uint32_t v)
{
        *(volatile uint32_t *)(d->common + off) = v;
}

static uint32_t r32(struct dev *d, unsigned off)
{
        return *(volatile uint32_t *)(d->common + off);
}

static void w64(struct dev *d, unsigned off, uint64_t v)
{
        w32(d, off, (uint32_t)v);
        w32(d, off + 4, (uint32_t)(v >> 32));
}

static struct page alloc_page(void)
{
        struct page pg;
        uint64_t entry;
        int fd;

        pg.va = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE | MAP_LOCKED, -1, 0);
        if (pg.va == MAP_FAILED)
                die("mmap ring page");
        memset(pg.va, 0, PAGE);
        fd = open("/proc/self/pagemap", O_RDONLY);
        if (fd < 0 || pread(fd, &entry, sizeof(entry), (off_t)((uintptr_t)pg.va / PAGE * 8)) != 8)
                die("pagemap");
        close(fd);
        if (!(entry >> 63) || !(entry & ((1ULL << 55) - 1))) {
                errno = EFAULT;
                die("pagemap: page not present or PFN hidden");
        }
        pg.pa = (entry & ((1ULL << 55) - 1)) * PAGE;
        return pg;
}

/* Resets the device and negotiates VERSION_1 only: queue 0 is inflate, 1 deflate. */
static void negotiate(struct dev *d)
{
        w8(d, CC_STATUS, 0);
        for (int i = 0; i < 1000 && r8(d, CC_STATUS) != 0; i++)
                usleep(1000);
        w8(d, CC_STATUS, ST_ACK | ST_DRIVER);
        w32(d, CC_DFSELECT, 1);
        if (!(r32(d, CC_DF) & 1)) {
                errno = ENOTSUP;
                die("device does not offer VERSION_1");
        }
        w32(d, CC_GFSELECT, 0);
        w32(d, CC_GF, 0);
        w32(d, CC_GFSELECT, 1);
        w32(d, CC_GF, 1);
        w8(d, CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
        if (!(r8(d, CC_STATUS) & ST_FEATURES_OK)) {
                errno = EPROTO;
                die("FEATURES_OK refused");
        }
}

struct ring {
        struct page desc, avail, used, data;
        struct desc *d;
        uint16_t *avail_flags, *avail_idx, *avail_ring;
        volatile uint16_t *used_idx;
};

static void ring_init(struct ring *r)
{
        r->desc = alloc_page();
        r->avail = alloc_page();
        r->used = alloc_page();
        r->data = alloc_page();
        r->d = (struct desc *)r->desc.va;
        r->avail_flags = (uint16_t *)r->avail.va;
        r->avail_idx = r->avail_flags + 1;
        r->avail_ring = r->avail_flags + 2;
        r->used_idx = (volatile uint16_t *)r->used.va + 1;
}

/* Fills descriptor table and available ring for @name; false if the case is unknown. */
static bool build_case(const char *name, struct ring *r, uint64_t *desc_pa, uint64_t *avail_pa,
                       uint64_t *used_pa)
{
        uint32_t *pfns = (uint32_t *)r->data.va;

        *desc_pa = r->desc.pa;
        *avail_pa = r->avail.pa;
        *used_pa = r->used.pa;
        r->d[0] = (struct desc){.addr = r->data.pa, .len = 4};
        r->avail_ring[0] = 0;
        *r->avail_idx = 1;
        if (strcmp(name, "desc-oob") == 0) {
                r->d[0].addr = 1ULL << 46;
        } else if (strcmp(name, "desc-wrap") == 0) {
                r->d[0].addr = UINT64_MAX - 16;
                r->d[0].len = 0xffffffffu;
        } else if (strcmp(name, "desc-loop") == 0) {
                r->d[0] = (struct desc){r->data.pa, 4, DESC_F_NEXT, 1};
                r->d[1] = (struct desc){r->data.pa + 4, 4, DESC_F_NEXT, 0};
        } else if (strcmp(name, "next-oob") == 0) {
                r->d[0] = (struct desc){r->data.pa, 4, DESC_F_NEXT, 4000};
        } else if (strcmp(name, "head-oob") == 0) {
                r->avail_ring[0] = 1000;
        } else if (strcmp(name, "avail-idx") == 0) {
                *r->avail_idx = QUEUE_SIZE * 50 + 3;
        } else if (strcmp(name, "ring-oob") == 0) {
                *desc_pa = 1ULL << 45;
                *avail_pa = (1ULL << 45) + PAGE;
                *used_pa = (1ULL << 45) + 2 * PAGE;
        } else if (strcmp(name, "pfn-oob") == 0) {
                /* Past any RAM this guest can have, the PCI hole, the top of the le32 range. */
                pfns[0] = 0xfffffff0u;
                pfns[1] = 0xc0000u; /* 3 GiB: start of the PCI hole */
                pfns[2] = 0xfff00u;
                pfns[3] = 0xffffffffu;
                r->d[0].len = 16;
        } else {
                return false;
        }
        return true;
}

static bool expect_needs_reset(const char *name)
{
        return strcmp(name, "pfn-oob") != 0;
}

static void setup_queue(struct dev *d, uint64_t desc_pa, uint64_t avail_pa, uint64_t used_pa)
{
        w16(d, CC_Q_SELECT, 0);
        w16(d, CC_Q_SIZE, QUEUE_SIZE);
        w64(d, CC_Q_DESC, desc_pa);
        w64(d, CC_Q_AVAIL, avail_pa);
        w64(d, CC_Q_USED, used_pa);
        w16(d, CC_Q_ENABLE, 1);
        w8(d, CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
}

static void kick(struct dev *d)
{
        uint16_t noff;

        w16(d, CC_Q_SELECT, 0);
        noff = r16(d, CC_Q_NOFF);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        *(volatile uint16_t *)(d->notify + (size_t)noff * d->notify_mult) = 0;
}

/* Waits up to 5 s for the device to either break or return the request. */
static uint8_t wait_outcome(struct dev *d, struct ring *r)
{
        uint8_t st = 0;

        for (int i = 0; i < 500; i++) {
                st = r8(d, CC_STATUS);
                if ((st & ST_NEEDS_RESET) || *r->used_idx != 0)
                        break;
                usleep(10000);
        }
        return st;
}

static void give_back(struct dev *d)
{
        char path[1024];

        w8(d, CC_STATUS, 0);
        for (int i = 0; i < 1000 && r8(d, CC_STATUS) != 0; i++)
                usleep(1000);
        snprintf(path, sizeof(path), VIRTIO_DRIVER "/bind");
        if (d->was_bound && write_file(path, d->slot) < 0)
                fprintf(stderr, "hostile-virtio: rebinding %s: %s\n", d->slot, strerror(errno));
}

int main(int argc, char **argv)
{
        struct dev d = {0};
        struct ring r;
        uint64_t desc_pa, avail_pa, used_pa;
        char path[1024];
        uint8_t st;
        bool ok;

        if (argc != 2) {
                fprintf(stderr, "usage: hostile-virtio CASE\n");
                return 2;
        }
        if (find_balloon(&d) < 0) {
                fprintf(stderr, "hostile-virtio: no virtio-balloon device\n");
                return 2;
        }
        ring_init(&r);
        if (!build_case(argv[1], &r, &desc_pa, &avail_pa, &used_pa)) {
                fprintf(stderr, "hostile-virtio: unknown case %s\n", argv[1]);
                return 2;
        }
        unbind_driver(&d);
        snprintf(path, sizeof(path), PCI_DEVICES "/%s/enable", d.slot);
        if (write_file(path, "1") < 0)
                die("enable");
        map_caps(&d);
        negotiate(&d);
        setup_queue(&d, desc_pa, avail_pa, used_pa);
        kick(&d);
        st = wait_outcome(&d, &r);
        printf("HOSTILE case=%s status=0x%02x used_idx=%u\n", argv[1], st, *r.used_idx);
        ok = expect_needs_reset(argv[1]) ? (st & ST_NEEDS_RESET) != 0
                                         : !(st & ST_NEEDS_RESET) && *r.used_idx == 1;
        give_back(&d);
        return ok ? 0 : 1;
}
