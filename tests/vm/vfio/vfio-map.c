/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfio-map: proof that a daxbroker allocation can be handed to a device for
 * DMA the way a VMM with an assigned PCI device does it. Runs inside the
 * QEMU rig (--iommu: intel-iommu plus QEMU's "edu" device 1234:11e8, which
 * the payload script has bound to vfio-pci) against daxbrokerd on the system
 * bus.
 *
 * For each case (1 GiB aligned to 1 GiB, 256 MiB aligned to 2 MiB):
 * Allocate, check the Ranges property against the alignment, mmap the fd,
 * VFIO_IOMMU_MAP_DMA the mapping into a type1 container, let edu copy 2 KiB
 * of the allocation to another page through the IOMMU, VFIO_IOMMU_UNMAP_DMA,
 * check the device can no longer reach the memory, munmap, Release.
 *
 *   vfio-map [--device DDDD:BB:DD.F]   default: the first edu device
 *
 * Output is TAP; exit status 0 only if every check passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <systemd/sd-bus.h>

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

#define DEST "org.daxbroker.Broker1"
#define PATH "/org/daxbroker/Broker1"
#define MGR "org.daxbroker.Broker1.Manager"
#define ALLOC_IFACE "org.daxbroker.Broker1.Allocation"
#define OWNER "vfio-proof"

/* Allocate may scrub memory the host held before; the default 25 s bus
 * timeout is too short for that under TCG. Also the Allocate's
 * timeout-usec. */
#define CALL_TIMEOUT_USEC (300 * UINT64_C(1000000))

#define EDU_VENDOR "0x1234"
#define EDU_DEVICE "0x11e8"
/* QEMU's edu device (docs/specs/edu.rst): BAR0 registers, a 4 KiB DMA buffer
 * at device address 0x40000, and a 28-bit DMA address mask (higher bus
 * addresses are silently truncated). */
#define EDU_REG_ID 0x00
#define EDU_REG_DMA_SRC 0x80
#define EDU_REG_DMA_DST 0x88
#define EDU_REG_DMA_COUNT 0x90
#define EDU_REG_DMA_CMD 0x98
#define EDU_DMA_RUN 0x1
#define EDU_DMA_TO_RAM 0x2
#define EDU_BUF_ADDR 0x40000
/* Transfers stay strictly inside the 4 KiB buffer: QEMU 7.2's range check is
 * off by one and aborts the whole machine on a transfer that ends exactly at
 * the buffer's end. */
#define EDU_XFER 2048
#define EDU_DMA_LIMIT (UINT64_C(1) << 28)

#define MAX_RANGES 64
#define MAX_IOVA_RANGES 16

static sd_bus *bus;
static unsigned n_test, n_fail;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
        va_list ap;

        n_test++;
        if (!ok)
                n_fail++;
        printf("%s %u - ", ok ? "ok" : "not ok", n_test);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diag(const char *fmt, ...) {
        va_list ap;

        fputs("# ", stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
}

static const char *size_str(uint64_t v, char buf[static 32]) {
        if (v && v % GiB == 0)
                snprintf(buf, 32, "%" PRIu64 " GiB", v / GiB);
        else if (v && v % MiB == 0)
                snprintf(buf, 32, "%" PRIu64 " MiB", v / MiB);
        else if (v && v % KiB == 0)
                snprintf(buf, 32, "%" PRIu64 " KiB", v / KiB);
        else
                snprintf(buf, 32, "%" PRIu64 " B", v);
        return buf;
}

static double now_sec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the edu device in sysfs ---- */

static int read_line(const char *path, char *buf, size_t len) {
        FILE *f = fopen(path, "re");

        if (!f)
                return -errno;
        if (!fgets(buf, (int) len, f)) {
                fclose(f);
                return -EIO;
        }
        fclose(f);
        buf[strcspn(buf, "\n")] = 0;
        return 0;
}

/* Last component of a sysfs symlink's target, e.g. the driver or group. */
static int read_link_name(const char *path, char *buf, size_t len) {
        char target[PATH_MAX];
        ssize_t l = readlink(path, target, sizeof(target) - 1);

        if (l < 0)
                return -errno;
        target[l] = 0;
        const char *slash = strrchr(target, '/');
        if (snprintf(buf, len, "%s", slash ? slash + 1 : target) >= (int) len)
                return -ENAMETOOLONG;
        return 0;
}

static int find_edu(char *ret_bdf, size_t len) {
        glob_t g;
        int found = 0;

        if (glob("/sys/bus/pci/devices/*", 0, NULL, &g) != 0)
                return -ENOENT;
        for (size_t i = 0; i < g.gl_pathc; i++) {
                char p[PATH_MAX], vendor[16], device[16];

                snprintf(p, sizeof(p), "%s/vendor", g.gl_pathv[i]);
                if (read_line(p, vendor, sizeof(vendor)) < 0 || strcmp(vendor, EDU_VENDOR) != 0)
                        continue;
                snprintf(p, sizeof(p), "%s/device", g.gl_pathv[i]);
                if (read_line(p, device, sizeof(device)) < 0 || strcmp(device, EDU_DEVICE) != 0)
                        continue;
                if (found++ == 0)
                        snprintf(ret_bdf, len, "%s", strrchr(g.gl_pathv[i], '/') + 1);
        }
        globfree(&g);
        if (found > 1)
                diag("%d edu devices, using %s", found, ret_bdf);
        return found ? 0 : -ENODEV;
}

/* ---- VFIO ---- */

typedef struct Vfio {
        int container, group, device;
        uint64_t iova_pgsizes;
        struct vfio_iova_range iova[MAX_IOVA_RANGES];
        unsigned n_iova; /* 0: the kernel reported no IOVA ranges */
        uint64_t bar0_offset, config_offset;
} Vfio;

static void vfio_close(Vfio *v) {
        if (v->device >= 0)
                close(v->device);
        if (v->group >= 0)
                close(v->group);
        if (v->container >= 0)
                close(v->container);
        v->device = v->group = v->container = -1;
}

static void print_pgsizes(uint64_t pgsizes) {
        char line[256] = "", buf[32];
        size_t n = 0;

        for (unsigned bit = 0; bit < 64 && n < sizeof(line) - 40; bit++)
                if (pgsizes & (UINT64_C(1) << bit))
                        n += snprintf(line + n, sizeof(line) - n, "%s%s", n ? ", " : "",
                                      size_str(UINT64_C(1) << bit, buf));
        diag("IOMMU page sizes: %s", line);
}

static void parse_iova_ranges(Vfio *v, const struct vfio_iommu_type1_info *info) {
        const char *base = (const char *) info;
        uint32_t off = info->cap_offset;

        if (!(info->flags & VFIO_IOMMU_INFO_CAPS))
                return;
        for (unsigned hops = 0; off && off + sizeof(struct vfio_info_cap_header) <= info->argsz && hops < 32;
             hops++) {
                const struct vfio_info_cap_header *h = (const void *) (base + off);

                if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
                        const struct vfio_iommu_type1_info_cap_iova_range *c = (const void *) h;

                        for (uint32_t i = 0; i < c->nr_iovas && v->n_iova < MAX_IOVA_RANGES; i++) {
                                v->iova[v->n_iova++] = c->iova_ranges[i];
                                diag("valid IOVA range 0x%" PRIx64 "-0x%" PRIx64, (uint64_t) c->iova_ranges[i].start,
                                     (uint64_t) c->iova_ranges[i].end);
                        }
                }
                off = h->next;
        }
}

static int iommu_get_info(Vfio *v) {
        struct vfio_iommu_type1_info probe = { .argsz = sizeof(probe) };
        struct vfio_iommu_type1_info *info;

        if (ioctl(v->container, VFIO_IOMMU_GET_INFO, &probe) < 0)
                return -errno;
        /* The first call says how much room the capability chain needs. */
        info = calloc(1, probe.argsz > sizeof(probe) ? probe.argsz : sizeof(probe));
        if (!info)
                return -ENOMEM;
        info->argsz = probe.argsz > sizeof(probe) ? probe.argsz : sizeof(probe);
        if (ioctl(v->container, VFIO_IOMMU_GET_INFO, info) < 0) {
                int r = -errno;
                free(info);
                return r;
        }
        if (!(info->flags & VFIO_IOMMU_INFO_PGSIZES)) {
                free(info);
                return -EOPNOTSUPP;
        }
        v->iova_pgsizes = info->iova_pgsizes;
        parse_iova_ranges(v, info);
        free(info);
        return 0;
}

static int region_offset(int device, uint32_t index, uint64_t *ret) {
        struct vfio_region_info ri = { .argsz = sizeof(ri), .index = index };

        if (ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &ri) < 0)
                return -errno;
        if (ri.size == 0)
                return -ENXIO;
        *ret = ri.offset;
        return 0;
}

static bool dev_rw(const Vfio *v, bool write, uint64_t offset, void *buf, size_t len) {
        ssize_t l = write ? pwrite(v->device, buf, len, (off_t) offset) : pread(v->device, buf, len, (off_t) offset);

        return l == (ssize_t) len;
}

static bool edu_write(const Vfio *v, uint32_t reg, uint32_t val) {
        return dev_rw(v, true, v->bar0_offset + reg, &val, sizeof(val));
}

static bool edu_read(const Vfio *v, uint32_t reg, uint32_t *ret) {
        return dev_rw(v, false, v->bar0_offset + reg, ret, sizeof(*ret));
}

/* One EDU_XFER-byte transfer between bus address iova and edu's buffer; edu
 * runs it from a 100 ms timer and clears EDU_DMA_RUN when done. */
static bool edu_dma(const Vfio *v, uint64_t iova, bool to_ram) {
        uint32_t cmd = 0;

        if (!edu_write(v, EDU_REG_DMA_SRC, (uint32_t) (to_ram ? EDU_BUF_ADDR : iova)) ||
            !edu_write(v, EDU_REG_DMA_DST, (uint32_t) (to_ram ? iova : EDU_BUF_ADDR)) ||
            !edu_write(v, EDU_REG_DMA_COUNT, EDU_XFER) ||
            !edu_write(v, EDU_REG_DMA_CMD, EDU_DMA_RUN | (to_ram ? EDU_DMA_TO_RAM : 0)))
                return false;
        for (int i = 0; i < 1000; i++) {
                if (!edu_read(v, EDU_REG_DMA_CMD, &cmd))
                        return false;
                if (!(cmd & EDU_DMA_RUN))
                        return true;
                usleep(10000);
        }
        diag("edu DMA did not finish within 10 s (cmd 0x%x)", cmd);
        return false;
}

static int vfio_setup(Vfio *v, const char *bdf) {
        char p[PATH_MAX], group_name[32], driver[64] = "", gpath[64];
        struct vfio_group_status status = { .argsz = sizeof(status) };
        uint32_t id = 0;
        uint16_t command;
        int r;

        snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/driver", bdf);
        read_link_name(p, driver, sizeof(driver));
        check(strcmp(driver, "vfio-pci") == 0, "%s is bound to vfio-pci (driver '%s')", bdf, driver);

        snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/iommu_group", bdf);
        r = read_link_name(p, group_name, sizeof(group_name));
        check(r >= 0, "%s has an IOMMU group (%s)", bdf, r >= 0 ? group_name : strerror(-r));
        if (r < 0)
                return r;
        snprintf(gpath, sizeof(gpath), "/dev/vfio/%s", group_name);

        v->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        check(v->container >= 0, "open /dev/vfio/vfio%s%s", v->container < 0 ? ": " : "",
              v->container < 0 ? strerror(errno) : "");
        if (v->container < 0)
                return -errno;
        r = ioctl(v->container, VFIO_GET_API_VERSION);
        check(r == VFIO_API_VERSION, "VFIO_GET_API_VERSION is %d (want %d)", r, VFIO_API_VERSION);
        r = ioctl(v->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU);
        check(r > 0, "the container supports VFIO_TYPE1v2_IOMMU");
        if (r <= 0)
                return -EOPNOTSUPP;

        v->group = open(gpath, O_RDWR | O_CLOEXEC);
        check(v->group >= 0, "open %s%s%s", gpath, v->group < 0 ? ": " : "", v->group < 0 ? strerror(errno) : "");
        if (v->group < 0)
                return -errno;
        r = ioctl(v->group, VFIO_GROUP_GET_STATUS, &status);
        check(r >= 0 && (status.flags & VFIO_GROUP_FLAGS_VIABLE), "group %s is viable (flags 0x%x)", group_name,
              status.flags);
        if (r < 0 || !(status.flags & VFIO_GROUP_FLAGS_VIABLE))
                return -EBUSY;

        r = ioctl(v->group, VFIO_GROUP_SET_CONTAINER, &v->container);
        check(r >= 0, "VFIO_GROUP_SET_CONTAINER%s%s", r < 0 ? ": " : "", r < 0 ? strerror(errno) : "");
        if (r < 0)
                return -errno;
        r = ioctl(v->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
        check(r >= 0, "VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU)%s%s", r < 0 ? ": " : "", r < 0 ? strerror(errno) : "");
        if (r < 0)
                return -errno;

        r = iommu_get_info(v);
        check(r >= 0, "VFIO_IOMMU_GET_INFO: iova_pgsizes=0x%" PRIx64 "%s%s", v->iova_pgsizes, r < 0 ? ": " : "",
              r < 0 ? strerror(-r) : "");
        if (r < 0)
                return r;
        print_pgsizes(v->iova_pgsizes);

        v->device = ioctl(v->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
        check(v->device >= 0, "VFIO_GROUP_GET_DEVICE_FD(%s)%s%s", bdf, v->device < 0 ? ": " : "",
              v->device < 0 ? strerror(errno) : "");
        if (v->device < 0)
                return -errno;
        r = region_offset(v->device, VFIO_PCI_BAR0_REGION_INDEX, &v->bar0_offset);
        if (r >= 0)
                r = region_offset(v->device, VFIO_PCI_CONFIG_REGION_INDEX, &v->config_offset);
        check(r >= 0, "the device has BAR0 and config space regions%s%s", r < 0 ? ": " : "",
              r < 0 ? strerror(-r) : "");
        if (r < 0)
                return r;

        /* The device may only master the bus once asked to. */
        bool ok = dev_rw(v, false, v->config_offset + PCI_COMMAND, &command, sizeof(command));
        command |= PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY;
        ok = ok && dev_rw(v, true, v->config_offset + PCI_COMMAND, &command, sizeof(command));
        ok = ok && edu_read(v, EDU_REG_ID, &id) && (id & 0xff) == 0xed;
        check(ok, "edu answers through vfio-pci (id register 0x%08x), bus mastering on", id);
        return ok ? 0 : -EIO;
}

/* Lowest IOVA aligned to align where size bytes fit in one valid range. */
static bool pick_iova(const Vfio *v, uint64_t size, uint64_t align, uint64_t *ret) {
        if (v->n_iova == 0) {
                *ret = 0;
                return true;
        }
        for (unsigned i = 0; i < v->n_iova; i++) {
                uint64_t start = (v->iova[i].start + align - 1) / align * align;

                if (start >= v->iova[i].start && start + size - 1 >= start && start + size - 1 <= v->iova[i].end) {
                        *ret = start;
                        return true;
                }
        }
        return false;
}

/* ---- daxbroker ---- */

static int allocate(uint64_t size, uint64_t align, char *ret_path, size_t len, int *ret_fd) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        int fd, r;

        r = sd_bus_message_new_method_call(bus, &m, DEST, PATH, MGR, "Allocate");
        if (r >= 0)
                /* The daemon's own deadline too: without timeout-usec it
                 * takes the device down after the 25 s a default caller
                 * would wait, and zeroing 1 GiB under TCG on a busy
                 * machine can take longer. */
                r = sd_bus_message_append(m, "sta{sv}", OWNER, size, 2, "align", "t", align, "timeout-usec", "t",
                                          CALL_TIMEOUT_USEC);
        if (r >= 0)
                r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, &reply);
        sd_bus_message_unref(m);
        if (r < 0) {
                diag("Allocate(%s, %" PRIu64 ", align %" PRIu64 ") -> %s: %s", OWNER, size, align,
                     error.name ? error.name : strerror(-r), error.message ? error.message : "");
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_read(reply, "oh", &path, &fd);
        if (r >= 0) {
                snprintf(ret_path, len, "%s", path);
                /* The fd belongs to the reply; keep our own. */
                *ret_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (*ret_fd < 0)
                        r = -errno;
        }
        sd_bus_message_unref(reply);
        return r;
}

static int release(const char *path) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, DEST, PATH, MGR, "Release");
        if (r >= 0)
                r = sd_bus_message_append(m, "o", path);
        if (r >= 0)
                r = sd_bus_call(bus, m, CALL_TIMEOUT_USEC, &error, NULL);
        sd_bus_message_unref(m);
        if (r < 0)
                diag("Release(%s) -> %s: %s", path, error.name ? error.name : strerror(-r),
                     error.message ? error.message : "");
        sd_bus_error_free(&error);
        return r;
}

typedef struct Range {
        uint64_t start, length;
} Range;

static int get_ranges(const char *path, Range *ranges, unsigned max, unsigned *ret_n) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        uint64_t start, length;
        unsigned n = 0;
        int r;

        r = sd_bus_get_property(bus, DEST, path, ALLOC_IFACE, "Ranges", &error, &reply, "a(tt)");
        if (r < 0) {
                diag("Get %s.Ranges -> %s: %s", ALLOC_IFACE, error.name ? error.name : strerror(-r),
                     error.message ? error.message : "");
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_enter_container(reply, 'a', "(tt)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(tt)", &start, &length)) > 0) {
                if (n == max) {
                        r = -E2BIG;
                        break;
                }
                ranges[n++] = (Range) { start, length };
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        sd_bus_message_unref(reply);
        *ret_n = n;
        return r;
}

static int get_property_t(const char *path, const char *name, uint64_t *ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_get_property_trivial(bus, DEST, path, ALLOC_IFACE, name, &error, 't', ret);

        sd_bus_error_free(&error);
        return r;
}

/* ---- one case ---- */

/* mmap of a device-dax fd needs a virtual address aligned like the device;
 * reserve a larger window and place the mapping on an aligned address inside
 * it, as VMMs do, rather than rely on the kernel's placement. */
static void *map_aligned(int fd, uint64_t size, uint64_t align) {
        uint8_t *window = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        uint8_t *aligned, *mem;

        if (window == MAP_FAILED)
                return MAP_FAILED;
        aligned = (uint8_t *) (((uintptr_t) window + align - 1) / align * align);
        mem = mmap(aligned, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
        if (mem == MAP_FAILED) {
                int e = errno;
                munmap(window, size + align);
                errno = e;
                return MAP_FAILED;
        }
        if (aligned > window)
                munmap(window, aligned - window);
        if (window + size + align > aligned + size)
                munmap(aligned + size, window + size + align - (aligned + size));
        return mem;
}

static void fill_page(volatile uint64_t *page, uint64_t seed) {
        for (unsigned i = 0; i < EDU_XFER / 8; i++)
                page[i] = seed ^ (UINT64_C(0x9e3779b97f4a7c15) * (i + 1));
}

static bool page_is(const volatile uint64_t *page, uint64_t seed) {
        for (unsigned i = 0; i < EDU_XFER / 8; i++)
                if (page[i] != (seed ^ (UINT64_C(0x9e3779b97f4a7c15) * (i + 1))))
                        return false;
        return true;
}

static bool page_is_zero(const volatile uint64_t *page) {
        for (unsigned i = 0; i < EDU_XFER / 8; i++)
                if (page[i])
                        return false;
        return true;
}

/* edu copies the page at offset src of the mapping into its buffer and
 * from there to the page at offset dst; the CPU checks the result. */
static void dma_round_trip(const Vfio *v, uint8_t *mem, uint64_t iova, uint64_t src, uint64_t dst, uint64_t seed) {
        volatile uint64_t *s = (volatile uint64_t *) (mem + src), *d = (volatile uint64_t *) (mem + dst);

        fill_page(s, seed);
        memset((void *) d, 0, EDU_XFER);
        __sync_synchronize();
        bool ok = edu_dma(v, iova + src, false) && edu_dma(v, iova + dst, true);
        __sync_synchronize();
        check(ok && page_is(d, seed),
              "edu copied allocation offset 0x%" PRIx64 " to offset 0x%" PRIx64 " by DMA via IOVA 0x%" PRIx64
              " -> 0x%" PRIx64,
              src, dst, iova + src, iova + dst);
        check(page_is(s, seed), "the source page is unchanged");
}

static void run_case(const Vfio *v, uint64_t size, uint64_t align, uint64_t seed) {
        char path[256], a[32], b[32];
        Range ranges[MAX_RANGES];
        unsigned n = 0;
        uint64_t total = 0, prop = 0, iova;
        bool aligned = true;
        int fd = -1, r;

        diag("--- %s aligned to %s", size_str(size, a), size_str(align, b));
        r = allocate(size, align, path, sizeof(path), &fd);
        check(r >= 0, "Allocate(\"%s\", %s, {align: %s})%s%s", OWNER, size_str(size, a), size_str(align, b),
              r >= 0 ? " -> " : "", r >= 0 ? path : "");
        if (r < 0)
                return;

        r = get_ranges(path, ranges, MAX_RANGES, &n);
        check(r >= 0 && n > 0, "%s.Ranges has %u range(s)", ALLOC_IFACE, n);
        for (unsigned i = 0; i < n; i++) {
                diag("range %u: start 0x%" PRIx64 " length 0x%" PRIx64 " (%s)", i, ranges[i].start,
                     ranges[i].length, size_str(ranges[i].length, a));
                aligned = aligned && ranges[i].start % align == 0 && ranges[i].length % align == 0;
                total += ranges[i].length;
        }
        check(n > 0 && aligned, "every range start and length is a multiple of %s", size_str(align, a));
        check(total == size, "the ranges add up to %s (%" PRIu64 " bytes)", size_str(size, a), total);
        r = get_property_t(path, "Align", &prop);
        check(r >= 0 && prop == align, "Align property is %" PRIu64, prop);

        uint8_t *mem = map_aligned(fd, size, align);
        check(mem != MAP_FAILED, "mmap MAP_SHARED %s of the fd at a %s-aligned address%s%s", size_str(size, a),
              size_str(align, b), mem == MAP_FAILED ? ": " : "", mem == MAP_FAILED ? strerror(errno) : "");
        if (mem == MAP_FAILED)
                goto out;
        /* Touch every align-sized page so the device sees populated memory. */
        for (uint64_t off = 0; off < size; off += align)
                ((volatile uint64_t *) mem)[off / 8] = off ^ seed;

        if (!pick_iova(v, size, align, &iova)) {
                check(false, "a valid IOVA range holds %s at %s alignment", size_str(size, a), size_str(align, b));
                goto unmap;
        }
        struct vfio_iommu_type1_dma_map map = {
                .argsz = sizeof(map),
                .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                .vaddr = (uintptr_t) mem,
                .iova = iova,
                .size = size,
        };
        double t0 = now_sec();
        r = ioctl(v->container, VFIO_IOMMU_MAP_DMA, &map);
        int e = errno;
        check(r >= 0, "VFIO_IOMMU_MAP_DMA vaddr %p size %s at IOVA 0x%" PRIx64 " (%.3f s)%s%s", (void *) mem,
              size_str(size, a), iova, now_sec() - t0, r < 0 ? ": " : "", r < 0 ? strerror(e) : "");
        if (r < 0)
                goto unmap;

        /* edu only drives 28-bit bus addresses: use what of the mapping
         * lies below that. */
        uint64_t reach = iova < EDU_DMA_LIMIT ? EDU_DMA_LIMIT - iova : 0;
        if (reach > size)
                reach = size;
        /* The last page within reach, the farthest from the first. */
        uint64_t last = reach >= 2 * 4 * KiB ? reach - 4 * KiB : 0;
        /* pick_iova() takes the lowest IOVA there is, which is within reach
         * on the rig's IOMMU: anything else means the check cannot run. */
        if (last)
                dma_round_trip(v, mem, iova, 0, last, seed);
        else
                check(false, "IOVA 0x%" PRIx64 " of %s is within edu's 28-bit DMA reach (the DMA round trip and "
                      "the blocked-after-unmap check need it)", iova, size_str(size, a));

        struct vfio_iommu_type1_dma_unmap unmap = {
                .argsz = sizeof(unmap),
                .iova = iova,
                .size = size,
        };
        r = ioctl(v->container, VFIO_IOMMU_UNMAP_DMA, &unmap);
        e = errno;
        check(r >= 0 && unmap.size == size, "VFIO_IOMMU_UNMAP_DMA IOVA 0x%" PRIx64 " unmapped %s%s%s", iova,
              size_str(unmap.size, a), r < 0 ? ": " : "", r < 0 ? strerror(e) : "");

        /* With the IOVA gone, a device write there must fault in the IOMMU
         * and never reach the allocation. */
        if (r >= 0 && last) {
                volatile uint64_t *d = (volatile uint64_t *) (mem + last);

                memset((void *) d, 0, EDU_XFER);
                __sync_synchronize();
                bool ran = edu_dma(v, iova + last, true);
                __sync_synchronize();
                check(ran && page_is_zero(d), "after UNMAP_DMA a device write to IOVA 0x%" PRIx64 " is blocked",
                      iova + last);
        }

unmap:
        r = munmap(mem, size);
        check(r == 0, "munmap");
out:
        close(fd);
        r = release(path);
        check(r >= 0, "Release(%s)", path);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "device", required_argument, NULL, 'd' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        char bdf[64] = "";
        Vfio v = { .container = -1, .group = -1, .device = -1 };
        int c, r;

        while ((c = getopt_long(argc, argv, "d:h", options, NULL)) >= 0)
                switch (c) {
                case 'd':
                        snprintf(bdf, sizeof(bdf), "%s", optarg);
                        break;
                case 'h':
                        printf("Usage: %s [--device DDDD:BB:DD.F]\n", argv[0]);
                        return 0;
                default:
                        return 2;
                }
        if (optind != argc) {
                fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
                return 2;
        }

        if (!bdf[0]) {
                r = find_edu(bdf, sizeof(bdf));
                check(r >= 0, "found the edu device (%s:%s)%s%s", EDU_VENDOR, EDU_DEVICE, r >= 0 ? " at " : "",
                      r >= 0 ? bdf : "");
                if (r < 0)
                        goto done;
        }

        r = sd_bus_open_system(&bus);
        check(r >= 0, "connect to the system bus%s%s", r < 0 ? ": " : "", r < 0 ? strerror(-r) : "");
        if (r < 0)
                goto done;

        if (vfio_setup(&v, bdf) < 0)
                goto done;

        run_case(&v, GiB, GiB, UINT64_C(0x1a2b3c4d5e6f7081) ^ (uint64_t) time(NULL));
        run_case(&v, 256 * MiB, 2 * MiB, UINT64_C(0x8070605040302010) ^ (uint64_t) time(NULL));

done:
        vfio_close(&v);
        sd_bus_flush_close_unref(bus);
        printf("1..%u\n", n_test);
        if (n_fail)
                diag("%u of %u checks failed", n_fail, n_test);
        return n_fail ? 1 : 0;
}
