/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * dax-sim: an in-memory device-dax bus that follows Linux 6.1's
 * drivers/dax/bus.c rule for rule (same checks, same order, same errno), so
 * the broker can be tested without soft-reserved memory.
 *
 * Where the model is stricter than the kernel, to catch broker bugs early:
 *  - add_mapping on a bound device fails with -EBUSY (the kernel does not
 *    check);
 *  - a device holds at most DAX_RANGES_MAX ranges (-E2BIG), the most a
 *    DaxDeviceInfo can report;
 *  - binding device_dax fails with -EINVAL if a range starts off the
 *    device's align (the kernel binds, and faults on the mapping fail).
 * Names that match no device give -ENODEV, except delete_device of an
 * unknown device in an existing region, which is the kernel's -ENXIO.
 * open_device of a device not bound to device_dax gives -ENXIO, as the
 * real backend reports it.
 *
 * Bytes live at physical addresses, like real memory: each region has a
 * sparse memfd (offset = address - region start). An open device gets its
 * own memfd, filled from the region's bytes when first opened and written
 * back when unbound or resized, so old data shows up in a new device that
 * reuses the range. Onlining kmem blocks writes a page of "host data" at
 * the start of each block, so missed scrubs are visible. Without a
 * state_path the bytes live in memfds and die with the backend. With one,
 * the model is the kernel, which outlives the daemon: the layout is kept
 * in state_path and the bytes in files under "<state_path>.mem/" (one per
 * region, one per opened device), so a daemon killed in the middle of
 * zeroing leaves exactly the half-zeroed memory a real kernel would.
 *
 * Memory blocks (SIM_MEMORY_BLOCK) are state of the memory, not of a
 * device: each region keeps a table of the blocks it overlaps, with their
 * online state, zone and pin. A block exists while a kmem device's range
 * holds it wholly (dev_dax_kmem_range()); only existing blocks can be
 * online, so unbinding kmem (refused while any is online) leaves nothing
 * to reset, and pins survive the device. The model lets any block go to
 * ZONE_MOVABLE, and lets any unpinned block go offline, ZONE_NORMAL too.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "dax-backend.h"
#include "util.h"

#define SIM_REGION_ALIGN (2 * MiB)
/* memremap_compat_align() on x86-64: the smallest mapping unit. */
#define SIM_SUBSECTION (2 * MiB)
#define SIM_MEMORY_BLOCK (128 * MiB)
#define SIM_COPY_CHUNK (1 * MiB)
#define SIM_HOST_DATA_SIZE (4 * KiB)
/* Version 1 kept a count of online blocks per device ("the first n");
 * version 2 keeps a per-region list of block states. Both load. */
#define SIM_STATE_VERSION 2

typedef struct SimDevice {
        unsigned instance;
        uint64_t align;
        DaxDriver driver;
        unsigned n_ranges;
        DaxRange ranges[DAX_RANGES_MAX];
        bool in_use;            /* test hook */
        int data_fd;            /* the device's bytes while opened, else -1 */
} SimDevice;

typedef struct SimBlock {
        bool online;
        bool movable;       /* online in ZONE_MOVABLE */
        DaxSimBlockPin pin; /* what offlining runs into */
} SimBlock;

typedef struct SimRegion {
        unsigned id;
        uint64_t start;
        uint64_t size;
        int numa_node;
        int backing_fd;       /* sparse memfd or file, offset = address - start */
        char *mem_dir;        /* where the bytes are kept, or NULL (memfds) */
        GPtrArray *devices;   /* SimDevice, sorted by instance */
        uint64_t first_block; /* the memory block holding start */
        size_t n_blocks;      /* memory blocks overlapping the region */
        SimBlock *blocks;     /* their state, from first_block on */
} SimRegion;

typedef struct SimBackend {
        DaxBackend backend;
        GMutex lock;
        char *state_path;
        DaxSimAutoOnline autoonline;
        GPtrArray *regions; /* SimRegion, sorted by id */
        GArray *busy;       /* DaxSimBusy, while_file owned */
        bool init_on_alloc;
        GHashTable *perf;   /* node (GINT_TO_POINTER) -> NodePerf */
        GHashTable *hotplug; /* nodes of soft-reserved memory alone (GINT_TO_POINTER) */
        /* The model's boot: new when it boots without a state file, kept
         * in the state file across daemon restarts. */
        char *boot_id;
        bool boot_id_on_record;
} SimBackend;

static const DaxBackendOps sim_ops;

static const char *const sim_driver_table[] = {
        [DAX_DRIVER_NONE] = "none",
        [DAX_DRIVER_DEVICE_DAX] = "device_dax",
        [DAX_DRIVER_KMEM] = "kmem",
        [DAX_DRIVER_OTHER] = "other",
};

static SimDevice *sim_device_new(unsigned instance) {
        SimDevice *d = g_new0(SimDevice, 1);

        d->instance = instance;
        d->align = SIM_REGION_ALIGN;
        d->data_fd = -1;
        return d;
}

static void sim_device_free(void *p) {
        SimDevice *d = p;

        if (d->data_fd >= 0)
                close(d->data_fd);
        g_free(d);
}

static void sim_region_free(void *p) {
        SimRegion *r = p;

        if (r->backing_fd >= 0)
                close(r->backing_fd);
        g_free(r->mem_dir);
        g_ptr_array_unref(r->devices);
        g_free(r->blocks);
        g_free(r);
}

static uint64_t sim_device_size(const SimDevice *d) {
        uint64_t sum = 0;

        for (unsigned i = 0; i < d->n_ranges; i++)
                sum += d->ranges[i].size;
        return sum;
}

/* The memory blocks [*ret_first, *ret_end) kmem adds for a range: it
 * trims the range to whole blocks. */
static void sim_range_blocks(const DaxRange *r, uint64_t *ret_first, uint64_t *ret_end) {
        *ret_first = round_up_u64(r->start, SIM_MEMORY_BLOCK) / SIM_MEMORY_BLOCK;
        *ret_end = max_u64(*ret_first, (r->start + r->size) / SIM_MEMORY_BLOCK);
}

/* The memory blocks (uint64_t numbers) kmem adds for the device, in range
 * order. */
static GArray *sim_device_blocks(const SimDevice *d) {
        GArray *a = g_array_new(false, false, sizeof(uint64_t));

        for (unsigned i = 0; i < d->n_ranges; i++) {
                uint64_t first, end;

                sim_range_blocks(&d->ranges[i], &first, &end);
                for (uint64_t m = first; m < end; m++)
                        g_array_append_val(a, m);
        }
        return a;
}

static bool sim_device_has_block(const SimDevice *d, uint64_t block) {
        for (unsigned i = 0; i < d->n_ranges; i++) {
                uint64_t first, end;

                sim_range_blocks(&d->ranges[i], &first, &end);
                if (block >= first && block < end)
                        return true;
        }
        return false;
}

/* The state of a memory block overlapping the region, else NULL. */
static SimBlock *sim_region_block(const SimRegion *r, uint64_t block) {
        if (block < r->first_block || block - r->first_block >= r->n_blocks)
                return NULL;
        return &r->blocks[block - r->first_block];
}

static unsigned sim_blocks_online(const SimRegion *r, const GArray *blocks) {
        unsigned n = 0;

        for (unsigned i = 0; i < blocks->len; i++)
                if (sim_region_block(r, g_array_index(blocks, uint64_t, i))->online)
                        n++;
        return n;
}

/* Whether kmem added the block: a kmem device of the region holds it. */
static bool sim_region_has_kmem_block(const SimRegion *r, uint64_t block) {
        for (unsigned i = 0; i < r->devices->len; i++) {
                const SimDevice *d = r->devices->pdata[i];

                if (d->driver == DAX_DRIVER_KMEM && sim_device_has_block(d, block))
                        return true;
        }
        return false;
}

/* An existing memory block (/sys/devices/system/memory/memoryN). */
static int sim_find_kmem_block(SimBackend *s, uint64_t block, SimRegion **ret_region, SimBlock **ret_block) {
        for (unsigned i = 0; i < s->regions->len; i++) {
                SimRegion *r = s->regions->pdata[i];
                SimBlock *b = sim_region_block(r, block);

                if (b && sim_region_has_kmem_block(r, block)) {
                        *ret_region = r;
                        *ret_block = b;
                        return 0;
                }
        }
        return -ENOENT;
}

/* Any region's table entry for the block at this address. */
static SimBlock *sim_find_block(SimBackend *s, uint64_t phys) {
        for (unsigned i = 0; i < s->regions->len; i++) {
                SimBlock *b = sim_region_block(s->regions->pdata[i], phys / SIM_MEMORY_BLOCK);

                if (b)
                        return b;
        }
        return NULL;
}

/* The kernel's alloc_is_aligned(). */
static bool sim_len_aligned(uint64_t align, uint64_t len) {
        return len % max_u64(align, SIM_SUBSECTION) == 0;
}

static bool sim_align_valid(uint64_t align) {
        return align == 4 * KiB || align == 2 * MiB || align == 1 * GiB;
}

static uint64_t sim_region_allocated(const SimRegion *r) {
        uint64_t sum = 0;

        for (unsigned i = 0; i < r->devices->len; i++)
                sum += sim_device_size(r->devices->pdata[i]);
        return sum;
}

/* __request_region(): the range must lie in the region and touch no
 * allocated range. */
static bool sim_region_range_free(const SimRegion *r, uint64_t start, uint64_t size) {
        if (start < r->start || size > r->size || start - r->start > r->size - size)
                return false;

        for (unsigned i = 0; i < r->devices->len; i++) {
                const SimDevice *d = r->devices->pdata[i];

                for (unsigned j = 0; j < d->n_ranges; j++)
                        if (start < d->ranges[j].start + d->ranges[j].size &&
                            d->ranges[j].start < start + size)
                                return false;
        }
        return true;
}

static SimRegion *sim_find_region(SimBackend *s, unsigned id) {
        for (unsigned i = 0; i < s->regions->len; i++) {
                SimRegion *r = s->regions->pdata[i];

                if (r->id == id)
                        return r;
        }
        return NULL;
}

static SimDevice *sim_find_device(SimRegion *r, unsigned instance) {
        for (unsigned i = 0; i < r->devices->len; i++) {
                SimDevice *d = r->devices->pdata[i];

                if (d->instance == instance)
                        return d;
        }
        return NULL;
}

static void sim_device_name(const SimRegion *r, const SimDevice *d, char ret[DAX_NAME_MAX]) {
        snprintf(ret, DAX_NAME_MAX, "dax%u.%u", r->id, d->instance);
}

/* Accepts only the canonical "daxR.N" spelling. */
static int sim_parse_name(const char *name, unsigned *ret_region, unsigned *ret_instance) {
        char canonical[DAX_NAME_MAX];
        unsigned region, instance;
        int consumed = 0;

        if (!name || sscanf(name, "dax%u.%u%n", &region, &instance, &consumed) != 2 || name[consumed] != 0)
                return -ENODEV;
        snprintf(canonical, sizeof(canonical), "dax%u.%u", region, instance);
        if (strcmp(canonical, name) != 0)
                return -ENODEV;

        *ret_region = region;
        *ret_instance = instance;
        return 0;
}

static int sim_lookup(SimBackend *s, const char *name, SimRegion **ret_region, SimDevice **ret_device) {
        unsigned region_id, instance;
        SimRegion *r;
        SimDevice *d;
        int k;

        k = sim_parse_name(name, &region_id, &instance);
        if (k < 0)
                return k;
        r = sim_find_region(s, region_id);
        if (!r)
                return -ENODEV;
        d = sim_find_device(r, instance);
        if (!d)
                return -ENODEV;

        *ret_region = r;
        *ret_device = d;
        return 0;
}

/* Copies the data (not the holes) of src [src_off, src_off+len) to dst at
 * dst_off. The destination range is emptied first, so it ends up an exact
 * copy while staying sparse. */
static int sim_copy_data(int src, uint64_t src_off, int dst, uint64_t dst_off, uint64_t len) {
        _cleanup_free_ char *buf = NULL;
        uint64_t pos = src_off, end = src_off + len;

        if (len == 0)
                return 0;
        if (fallocate(dst, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t) dst_off, (off_t) len) < 0)
                return -errno;

        while (pos < end) {
                off_t data, hole;
                uint64_t stop;

                data = lseek(src, (off_t) pos, SEEK_DATA);
                if (data < 0 && errno == ENXIO)
                        break; /* only holes left */
                if (data < 0)
                        return -errno;
                if ((uint64_t) data >= end)
                        break;
                hole = lseek(src, data, SEEK_HOLE);
                if (hole < 0)
                        return -errno;
                stop = min_u64((uint64_t) hole, end);

                if (!buf) {
                        buf = malloc(SIM_COPY_CHUNK);
                        if (!buf)
                                return -ENOMEM;
                }

                for (pos = (uint64_t) data; pos < stop;) {
                        size_t chunk = (size_t) min_u64(stop - pos, SIM_COPY_CHUNK);
                        ssize_t k, w;

                        k = pread(src, buf, chunk, (off_t) pos);
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k < 0)
                                return -errno;
                        if (k == 0)
                                return -EIO;
                        /* Zeroes stay a hole: the range was emptied above.
                         * (Zeroing whole regions would otherwise fill the
                         * files with zero pages.) */
                        if (buf[0] == 0 && memcmp(buf, buf + 1, (size_t) k - 1) == 0) {
                                pos += (uint64_t) k;
                                continue;
                        }
                        w = pwrite(dst, buf, (size_t) k, (off_t) (dst_off + (pos - src_off)));
                        if (w < 0)
                                return -errno;
                        if (w != k)
                                return -EIO;
                        pos += (uint64_t) k;
                }
        }
        return 0;
}

/* Gives the device its own file holding the bytes of its ranges. One left
 * by an earlier daemon (kept in mem_dir) already holds them, with whatever
 * that daemon wrote through its mapping. */
static int sim_device_materialize(SimRegion *r, SimDevice *d) {
        _cleanup_close_ int fd = -1;
        char name[DAX_NAME_MAX];
        uint64_t pgoff = 0;
        int k;

        if (d->data_fd >= 0)
                return 0;

        sim_device_name(r, d, name);
        if (r->mem_dir) {
                g_autofree char *path = g_build_filename(r->mem_dir, name, NULL);
                struct stat st;

                fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                if (fd < 0)
                        return -errno;
                if (fstat(fd, &st) < 0)
                        return -errno;
                if ((uint64_t) st.st_size == sim_device_size(d) && st.st_size > 0) {
                        d->data_fd = fd;
                        fd = -1;
                        return 0;
                }
                if (ftruncate(fd, 0) < 0)
                        return -errno;
        } else
                fd = memfd_create(name, MFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (ftruncate(fd, (off_t) sim_device_size(d)) < 0)
                return -errno;

        for (unsigned i = 0; i < d->n_ranges; i++) {
                k = sim_copy_data(r->backing_fd, d->ranges[i].start - r->start, fd, pgoff, d->ranges[i].size);
                if (k < 0)
                        return k;
                pgoff += d->ranges[i].size;
        }

        d->data_fd = fd;
        fd = -1;
        return 0;
}

/* Puts the device's bytes back at their physical addresses before its
 * ranges change or its /dev node goes away. */
static int sim_device_write_back(SimRegion *r, SimDevice *d) {
        uint64_t pgoff = 0;
        int k;

        if (d->data_fd < 0)
                return 0;

        for (unsigned i = 0; i < d->n_ranges; i++) {
                k = sim_copy_data(d->data_fd, pgoff, r->backing_fd, d->ranges[i].start - r->start, d->ranges[i].size);
                if (k < 0)
                        return k;
                pgoff += d->ranges[i].size;
        }

        close(d->data_fd);
        d->data_fd = -1;
        if (r->mem_dir) {
                char name[DAX_NAME_MAX];
                g_autofree char *path = NULL;

                sim_device_name(r, d, name);
                path = g_build_filename(r->mem_dir, name, NULL);
                if (unlink(path) < 0 && errno != ENOENT)
                        return -errno;
        }
        return 0;
}

/* The host writes to a memory block while it is online: a page of host
 * data at its start stands for that. */
static int sim_write_host_data(SimRegion *r, uint64_t block) {
        static const char marker[] = "daxbroker-sim: host data\n";
        char page[SIM_HOST_DATA_SIZE];
        ssize_t w;

        for (size_t i = 0; i < sizeof(page); i++)
                page[i] = marker[i % (sizeof(marker) - 1)];

        w = pwrite(r->backing_fd, page, sizeof(page), (off_t) (block * SIM_MEMORY_BLOCK - r->start));
        if (w < 0)
                return -errno;
        if (w != (ssize_t) sizeof(page))
                return -EIO;
        return 0;
}

/* Changes the state of an existing block, as the kernel's state_store()
 * does once it has decided to. */
static int sim_block_set(SimRegion *r, uint64_t block, bool online, bool movable) {
        SimBlock *b = sim_region_block(r, block);
        int k;

        if (online && !b->online) {
                k = sim_write_host_data(r, block);
                if (k < 0)
                        return k;
        }
        b->online = online;
        b->movable = online && movable;
        return 0;
}

static void sim_fill_device_info(const SimRegion *r, const SimDevice *d, DaxDeviceInfo *ret) {
        *ret = (DaxDeviceInfo) {
                .region_id = r->id,
                .instance = d->instance,
                .size = sim_device_size(d),
                .align = d->align,
                .driver = d->driver,
                .target_node = r->numa_node,
                .n_ranges = d->n_ranges,
        };
        sim_device_name(r, d, ret->name);
        memcpy(ret->ranges, d->ranges, d->n_ranges * sizeof(DaxRange));
        if (d->driver == DAX_DRIVER_KMEM) {
                g_autoptr(GArray) blocks = sim_device_blocks(d);

                ret->mem_blocks = blocks->len;
                ret->mem_blocks_online = sim_blocks_online(r, blocks);
        }
}

static void sim_state_build_device(JsonBuilder *b, const SimDevice *d) {
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "instance");
        json_builder_add_int_value(b, d->instance);
        json_builder_set_member_name(b, "driver");
        json_builder_add_string_value(b, sim_driver_table[d->driver]);
        json_builder_set_member_name(b, "align");
        json_builder_add_int_value(b, (gint64) d->align);
        json_builder_set_member_name(b, "ranges");
        json_builder_begin_array(b);
        for (unsigned i = 0; i < d->n_ranges; i++) {
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "start");
                json_builder_add_int_value(b, (gint64) d->ranges[i].start);
                json_builder_set_member_name(b, "size");
                json_builder_add_int_value(b, (gint64) d->ranges[i].size);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_end_object(b);
}

/* Blocks in their initial state (offline, not pinned) are left out. */
static void sim_state_build_blocks(JsonBuilder *b, const SimRegion *r) {
        json_builder_begin_array(b);
        for (size_t i = 0; i < r->n_blocks; i++) {
                const SimBlock *blk = &r->blocks[i];

                if (!blk->online && blk->pin == DAX_SIM_BLOCK_MOVABLE)
                        continue;
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "start");
                json_builder_add_int_value(b, (gint64) ((r->first_block + i) * SIM_MEMORY_BLOCK));
                json_builder_set_member_name(b, "online");
                json_builder_add_boolean_value(b, blk->online);
                json_builder_set_member_name(b, "movable");
                json_builder_add_boolean_value(b, blk->movable);
                json_builder_set_member_name(b, "pin");
                json_builder_add_string_value(b, dax_sim_block_pin_to_string(blk->pin));
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
}

/* Writes the layout (not the bytes) atomically. A failure is logged and
 * ignored: the operation itself has happened. */
static void sim_save(SimBackend *s) {
        g_autoptr(JsonBuilder) b = NULL;
        g_autoptr(JsonGenerator) gen = NULL;
        g_autoptr(JsonNode) root = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *data = NULL;

        if (!s->state_path)
                return;

        b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "version");
        json_builder_add_int_value(b, SIM_STATE_VERSION);
        json_builder_set_member_name(b, "boot_id");
        json_builder_add_string_value(b, s->boot_id);
        json_builder_set_member_name(b, "regions");
        json_builder_begin_array(b);
        for (unsigned i = 0; i < s->regions->len; i++) {
                const SimRegion *r = s->regions->pdata[i];

                json_builder_begin_object(b);
                json_builder_set_member_name(b, "id");
                json_builder_add_int_value(b, r->id);
                json_builder_set_member_name(b, "devices");
                json_builder_begin_array(b);
                for (unsigned j = 0; j < r->devices->len; j++)
                        sim_state_build_device(b, r->devices->pdata[j]);
                json_builder_end_array(b);
                json_builder_set_member_name(b, "blocks");
                sim_state_build_blocks(b, r);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_end_object(b);

        root = json_builder_get_root(b);
        gen = json_generator_new();
        json_generator_set_root(gen, root);
        json_generator_set_pretty(gen, true);
        data = json_generator_to_data(gen, NULL);

        if (!g_file_set_contents(s->state_path, data, -1, &error))
                g_warning("dax-sim: failed to save state to %s: %s, ignoring", s->state_path, error->message);
}

static int sim_json_get_u64(JsonObject *o, const char *key, uint64_t *ret) {
        JsonNode *n = json_object_get_member(o, key);
        gint64 v;

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
                return -EBADMSG;
        v = json_node_get_int(n);
        if (v < 0)
                return -EBADMSG;
        *ret = (uint64_t) v;
        return 0;
}

static int sim_json_get_unsigned(JsonObject *o, const char *key, unsigned *ret) {
        uint64_t v;
        int k;

        k = sim_json_get_u64(o, key, &v);
        if (k < 0)
                return k;
        if (v > UINT_MAX)
                return -EBADMSG;
        *ret = (unsigned) v;
        return 0;
}

static int sim_json_get_bool(JsonObject *o, const char *key, bool *ret) {
        JsonNode *n = json_object_get_member(o, key);

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN)
                return -EBADMSG;
        *ret = json_node_get_boolean(n);
        return 0;
}

static const char *sim_json_get_string(JsonObject *o, const char *key) {
        JsonNode *n = json_object_get_member(o, key);

        return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING ? json_node_get_string(n) : NULL;
}

static JsonArray *sim_json_get_array(JsonObject *o, const char *key) {
        JsonNode *n = json_object_get_member(o, key);

        return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

static JsonObject *sim_json_get_object_element(JsonArray *a, unsigned i) {
        JsonNode *n = json_array_get_element(a, i);

        return JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static int sim_driver_from_string(const char *s, DaxDriver *ret) {
        for (size_t i = 0; i < G_N_ELEMENTS(sim_driver_table); i++)
                if (s && strcmp(s, sim_driver_table[i]) == 0) {
                        *ret = (DaxDriver) i;
                        return 0;
                }
        return -EBADMSG;
}

static gint sim_device_compare(gconstpointer a, gconstpointer b) {
        const SimDevice *x = *(SimDevice *const *) a, *y = *(SimDevice *const *) b;

        return x->instance < y->instance ? -1 : x->instance > y->instance;
}

/* Reads one saved device into the region being loaded (view), checking
 * it against what the kernel could ever have produced there. A version 1
 * file says how many of a kmem device's blocks are online: the first ones,
 * in range order, as the old model kept them. */
static int sim_load_device(SimRegion *view, JsonObject *o, unsigned version) {
        SimDevice *d = NULL;
        JsonArray *ranges;
        uint64_t align;
        unsigned instance, blocks_online = 0;
        int k;

        k = sim_json_get_unsigned(o, "instance", &instance);
        if (k < 0)
                return k;
        if (sim_find_device(view, instance))
                return -EBADMSG;

        d = sim_device_new(instance);
        g_ptr_array_add(view->devices, d);

        k = sim_driver_from_string(sim_json_get_string(o, "driver"), &d->driver);
        if (k < 0)
                return k;
        k = sim_json_get_u64(o, "align", &align);
        if (k < 0)
                return k;
        if (!sim_align_valid(align))
                return -EBADMSG;
        d->align = align;
        if (version == 1) {
                k = sim_json_get_unsigned(o, "blocks_online", &blocks_online);
                if (k < 0)
                        return k;
        }

        ranges = sim_json_get_array(o, "ranges");
        if (!ranges || json_array_get_length(ranges) > DAX_RANGES_MAX)
                return -EBADMSG;

        /* Check each range against the ranges loaded so far (the device's
         * own ones included, as it is in view already). */
        for (unsigned i = 0; i < json_array_get_length(ranges); i++) {
                JsonObject *ro = sim_json_get_object_element(ranges, i);
                uint64_t start, size;

                if (!ro)
                        return -EBADMSG;
                k = sim_json_get_u64(ro, "start", &start);
                if (k < 0)
                        return k;
                k = sim_json_get_u64(ro, "size", &size);
                if (k < 0)
                        return k;
                if (size == 0 || !sim_len_aligned(d->align, size) || !sim_region_range_free(view, start, size))
                        return -EBADMSG;
                d->ranges[d->n_ranges++] = (DaxRange) { .start = start, .size = size };
        }

        if (d->driver != DAX_DRIVER_NONE && d->n_ranges == 0)
                return -EBADMSG;

        if (blocks_online > 0) {
                g_autoptr(GArray) blocks = sim_device_blocks(d);

                if (d->driver != DAX_DRIVER_KMEM || blocks_online > blocks->len)
                        return -EBADMSG;
                for (unsigned i = 0; i < blocks_online; i++) {
                        SimBlock *b = sim_region_block(view, g_array_index(blocks, uint64_t, i));

                        b->online = b->movable = true;
                }
        }
        return 0;
}

/* Reads the block states of a version 2 file into the region being loaded,
 * its devices already in place. */
static int sim_load_blocks(SimRegion *view, JsonArray *a) {
        g_autofree bool *seen = g_new0(bool, view->n_blocks);

        for (unsigned i = 0; i < json_array_get_length(a); i++) {
                JsonObject *o = sim_json_get_object_element(a, i);
                uint64_t start, block;
                SimBlock *b;
                int k;

                if (!o)
                        return -EBADMSG;
                k = sim_json_get_u64(o, "start", &start);
                if (k < 0)
                        return k;
                block = start / SIM_MEMORY_BLOCK;
                b = sim_region_block(view, block);
                if (start % SIM_MEMORY_BLOCK != 0 || !b || seen[block - view->first_block])
                        return -EBADMSG;
                seen[block - view->first_block] = true;

                k = sim_json_get_bool(o, "online", &b->online);
                if (k < 0)
                        return k;
                k = sim_json_get_bool(o, "movable", &b->movable);
                if (k < 0)
                        return k;
                if (dax_sim_block_pin_from_string(sim_json_get_string(o, "pin"), &b->pin) < 0)
                        return -EBADMSG;

                /* Only blocks kmem added can be online. */
                if ((b->online && !sim_region_has_kmem_block(view, block)) || (b->movable && !b->online))
                        return -EBADMSG;
        }
        return 0;
}

static int sim_load_region(SimBackend *s, JsonObject *o, unsigned version) {
        g_autoptr(GPtrArray) devices = g_ptr_array_new_with_free_func(sim_device_free);
        g_autofree SimBlock *blocks = NULL;
        SimRegion *r, view;
        JsonArray *a;
        unsigned id;
        int k;

        k = sim_json_get_unsigned(o, "id", &id);
        if (k < 0)
                return k;
        r = sim_find_region(s, id);
        if (!r)
                return -EBADMSG;

        /* The region as the file has it, built aside. */
        blocks = g_new0(SimBlock, r->n_blocks);
        view = *r;
        view.devices = devices;
        view.blocks = blocks;

        a = sim_json_get_array(o, "devices");
        if (!a)
                return -EBADMSG;
        for (unsigned i = 0; i < json_array_get_length(a); i++) {
                JsonObject *dobj = sim_json_get_object_element(a, i);

                if (!dobj)
                        return -EBADMSG;
                k = sim_load_device(&view, dobj, version);
                if (k < 0)
                        return k;
        }

        g_ptr_array_sort(devices, sim_device_compare);
        if (devices->len == 0 || ((SimDevice *) devices->pdata[0])->instance != 0)
                return -EBADMSG;

        if (version >= 2) {
                a = sim_json_get_array(o, "blocks");
                if (!a)
                        return -EBADMSG;
                k = sim_load_blocks(&view, a);
                if (k < 0)
                        return k;
        }

        g_ptr_array_unref(r->devices);
        r->devices = g_steal_pointer(&devices);
        g_free(r->blocks);
        r->blocks = g_steal_pointer(&blocks);

        /* The host has been using the online blocks all along: its data is
         * there (again, when the bytes lived in memfds). */
        for (size_t i = 0; i < r->n_blocks; i++)
                if (r->blocks[i].online) {
                        k = sim_write_host_data(r, r->first_block + i);
                        if (k < 0)
                                return k;
                }
        return 0;
}

/* A missing file is a fresh boot; an unreadable or inconsistent one is an
 * error rather than a silent reboot. */
static int sim_load(SimBackend *s) {
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) error = NULL;
        JsonObject *root;
        JsonArray *regions;
        uint64_t version;
        int k;

        if (!json_parser_load_from_mapped_file(parser, s->state_path, &error)) {
                if (g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                        return 0;
                return error->domain == G_FILE_ERROR ? -EIO : -EBADMSG;
        }

        if (!JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)))
                return -EBADMSG;
        root = json_node_get_object(json_parser_get_root(parser));
        k = sim_json_get_u64(root, "version", &version);
        if (k < 0)
                return k;
        if (version < 1 || version > SIM_STATE_VERSION)
                return -EBADMSG;
        if (json_object_has_member(root, "boot_id")) {
                JsonNode *n = json_object_get_member(root, "boot_id");

                if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING ||
                    !g_uuid_string_is_valid(json_node_get_string(n)))
                        return -EBADMSG;
                g_free(s->boot_id);
                s->boot_id = g_strdup(json_node_get_string(n));
                s->boot_id_on_record = true;
        }

        regions = sim_json_get_array(root, "regions");
        if (!regions)
                return -EBADMSG;
        for (unsigned i = 0; i < json_array_get_length(regions); i++) {
                JsonObject *ro = sim_json_get_object_element(regions, i);

                if (!ro)
                        return -EBADMSG;
                k = sim_load_region(s, ro, (unsigned) version);
                if (k < 0)
                        return k;
        }
        return 0;
}

static gint sim_region_compare(gconstpointer a, gconstpointer b) {
        const SimRegion *x = *(SimRegion *const *) a, *y = *(SimRegion *const *) b;

        return x->id < y->id ? -1 : x->id > y->id;
}

static int sim_parse_region(const char *item, SimRegion **ret) {
        g_auto(GStrv) fields = g_strsplit(item, ":", -1);
        uint64_t id, start, size;
        gint64 node;
        SimRegion *r;
        int k;

        if (g_strv_length(fields) != 4)
                return -EINVAL;
        if (!g_ascii_string_to_unsigned(fields[0], 10, 0, UINT_MAX, &id, NULL))
                return -EINVAL;
        k = dax_sim_parse_size(fields[1], &start);
        if (k < 0)
                return k;
        k = dax_sim_parse_size(fields[2], &size);
        if (k < 0)
                return k;
        if (!g_ascii_string_to_signed(fields[3], 10, -1, INT_MAX, &node, NULL))
                return -EINVAL;

        /* alloc_dax_region() wants both aligned; the state file stores
         * addresses as JSON integers, so stay below 2^63. */
        if (size == 0 || start % SIM_REGION_ALIGN != 0 || size % SIM_REGION_ALIGN != 0)
                return -EINVAL;
        if (start > (uint64_t) INT64_MAX - size)
                return -ERANGE;

        r = g_new0(SimRegion, 1);
        r->id = (unsigned) id;
        r->start = start;
        r->size = size;
        r->numa_node = (int) node;
        r->backing_fd = -1;
        r->devices = g_ptr_array_new_with_free_func(sim_device_free);
        r->first_block = start / SIM_MEMORY_BLOCK;
        r->n_blocks = (size_t) (round_up_u64(start + size, SIM_MEMORY_BLOCK) / SIM_MEMORY_BLOCK - r->first_block);
        r->blocks = g_new0(SimBlock, r->n_blocks);
        *ret = r;
        return 0;
}

static int sim_parse_spec(const char *spec, GPtrArray *regions) {
        g_auto(GStrv) items = NULL;
        int k;

        if (!spec || !*spec)
                return -EINVAL;

        items = g_strsplit(spec, ",", -1);
        for (char **i = items; *i; i++) {
                SimRegion *r = NULL;

                k = sim_parse_region(*i, &r);
                if (k < 0)
                        return k;
                g_ptr_array_add(regions, r);
        }

        g_ptr_array_sort(regions, sim_region_compare);
        for (unsigned i = 0; i < regions->len; i++) {
                const SimRegion *a = regions->pdata[i];

                for (unsigned j = i + 1; j < regions->len; j++) {
                        const SimRegion *b = regions->pdata[j];

                        if (a->id == b->id)
                                return -EEXIST;
                        if (a->start < b->start + b->size && b->start < a->start + a->size)
                                return -EEXIST;
                }
        }
        return 0;
}

/* What daxR.0 looks like after boot. kmem-online is auto_online_blocks at
 * work: ZONE_MOVABLE only if that is its policy. */
static int sim_boot_region(SimRegion *r, const char *boot_mode, DaxSimAutoOnline autoonline) {
        SimDevice *d = sim_device_new(0);

        g_ptr_array_add(r->devices, d);
        if (strcmp(boot_mode, "idle") == 0)
                return 0;

        d->ranges[0] = (DaxRange) { .start = r->start, .size = r->size };
        d->n_ranges = 1;

        if (strcmp(boot_mode, "devdax") == 0)
                d->driver = DAX_DRIVER_DEVICE_DAX;
        else if (strcmp(boot_mode, "kmem-offline") == 0)
                d->driver = DAX_DRIVER_KMEM;
        else if (strcmp(boot_mode, "kmem-online") == 0) {
                g_autoptr(GArray) blocks = sim_device_blocks(d);
                int k;

                d->driver = DAX_DRIVER_KMEM;
                for (unsigned i = 0; i < blocks->len; i++) {
                        k = sim_block_set(r, g_array_index(blocks, uint64_t, i), true,
                                          autoonline == DAX_SIM_AUTOONLINE_ONLINE_MOVABLE);
                        if (k < 0)
                                return k;
                }
        } else
                return -EINVAL;
        return 0;
}

static void sim_free(DaxBackend *b) {
        SimBackend *s = (SimBackend *) b;

        if (!s)
                return;
        g_free(s->boot_id);
        g_ptr_array_unref(s->regions);
        if (s->busy) {
                for (guint i = 0; i < s->busy->len; i++)
                        g_free((char *) g_array_index(s->busy, DaxSimBusy, i).while_file);
                g_array_unref(s->busy);
        }
        if (s->perf)
                g_hash_table_unref(s->perf);
        if (s->hotplug)
                g_hash_table_unref(s->hotplug);
        g_free(s->state_path);
        g_mutex_clear(&s->lock);
        g_free(s);
}

static NodePerf *sim_perf_of(SimBackend *s, int node) {
        NodePerf *p = g_hash_table_lookup(s->perf, GINT_TO_POINTER(node));

        if (!p) {
                p = g_new(NodePerf, 1);
                node_perf_init(p);
                g_hash_table_insert(s->perf, GINT_TO_POINTER(node), p);
        }
        return p;
}

/* Some memory block of the node is online. */
static bool sim_node_has_online_memory(SimBackend *s, int node) {
        for (guint i = 0; i < s->regions->len; i++) {
                const SimRegion *r = s->regions->pdata[i];

                if (r->numa_node != node)
                        continue;
                for (size_t k = 0; k < r->n_blocks; k++)
                        if (r->blocks[k].online)
                                return true;
        }
        return false;
}

/* The model's HMAT is fixed at boot, like the firmware's table. As the
 * kernel (hmat_callback(): a node gets its attributes when it first has
 * online memory), a node of soft-reserved memory alone publishes nothing
 * until kmem onlines some of it. The kernel keeps them until the node's
 * last memory block is removed; the model, more simply, while some block
 * is online. */
static int sim_node_perf(DaxBackend *b, int node, NodePerf *ret) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        const NodePerf *p = g_hash_table_lookup(s->perf, GINT_TO_POINTER(node));

        if (p && g_hash_table_contains(s->hotplug, GINT_TO_POINTER(node)) && !sim_node_has_online_memory(s, node))
                p = NULL;
        if (p)
                *ret = *p;
        else
                node_perf_init(ret);
        return 0;
}

static int sim_list_regions(DaxBackend *b, DaxRegionInfo **ret, size_t *ret_n) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        DaxRegionInfo *v;

        v = calloc(MAX(s->regions->len, 1u), sizeof(DaxRegionInfo));
        if (!v)
                return -ENOMEM;

        for (unsigned i = 0; i < s->regions->len; i++) {
                const SimRegion *r = s->regions->pdata[i];

                v[i] = (DaxRegionInfo) {
                        .id = r->id,
                        .start = r->start,
                        .size = r->size,
                        .align = SIM_REGION_ALIGN,
                        .available = r->size - sim_region_allocated(r),
                        .numa_node = r->numa_node,
                };
        }

        *ret = v;
        *ret_n = s->regions->len;
        return 0;
}

static int sim_list_devices(DaxBackend *b, unsigned region_id, DaxDeviceInfo **ret, size_t *ret_n) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        DaxDeviceInfo *v;
        SimRegion *r;

        r = sim_find_region(s, region_id);
        if (!r)
                return -ENODEV;

        v = calloc(MAX(r->devices->len, 1u), sizeof(DaxDeviceInfo));
        if (!v)
                return -ENOMEM;
        for (unsigned i = 0; i < r->devices->len; i++)
                sim_fill_device_info(r, r->devices->pdata[i], &v[i]);

        *ret = v;
        *ret_n = r->devices->len;
        return 0;
}

static int sim_get_device(DaxBackend *b, const char *name, DaxDeviceInfo *ret) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        SimRegion *r;
        SimDevice *d;
        int k;

        k = sim_lookup(s, name, &r, &d);
        if (k < 0)
                return k;
        sim_fill_device_info(r, d, ret);
        return 0;
}

static int sim_create_device(DaxBackend *b, unsigned region_id, char ret_name[DAX_NAME_MAX]) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        unsigned instance = 0;
        SimRegion *r;
        SimDevice *d;

        r = sim_find_region(s, region_id);
        if (!r)
                return -ENODEV;
        if (sim_region_allocated(r) == r->size)
                return -ENOSPC;

        /* The lowest free id, like the region's ida. */
        while (instance < r->devices->len && ((SimDevice *) r->devices->pdata[instance])->instance == instance)
                instance++;

        d = sim_device_new(instance);
        g_ptr_array_insert(r->devices, (gint) instance, d);
        sim_device_name(r, d, ret_name);
        sim_save(s);
        return 0;
}

static int sim_set_align(DaxBackend *b, const char *name, uint64_t align) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        SimRegion *r;
        SimDevice *d;
        int k;

        k = sim_lookup(s, name, &r, &d);
        if (k < 0)
                return k;

        /* align_store(): value, then driver, then existing range lengths. */
        if (!sim_align_valid(align))
                return -EINVAL;
        if (d->driver != DAX_DRIVER_NONE)
                return -EBUSY;
        for (unsigned i = 0; i < d->n_ranges; i++)
                if (!sim_len_aligned(align, d->ranges[i].size))
                        return -EINVAL;

        d->align = align;
        sim_save(s);
        return 0;
}

static int sim_add_mapping(DaxBackend *b, const char *name, uint64_t start, uint64_t size) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        SimRegion *r;
        SimDevice *d;
        int k;

        k = sim_lookup(s, name, &r, &d);
        if (k < 0)
                return k;

        if (d->driver != DAX_DRIVER_NONE)
                return -EBUSY; /* stricter than the kernel, see top */
        if (!sim_len_aligned(d->align, size))
                return -ENXIO;
        if (size == 0)
                /* alloc_dev_dax_range(): a 0-size allocation must be first. */
                return d->n_ranges > 0 ? -EBUSY : 0;
        if (!sim_region_range_free(r, start, size))
                return -ENOMEM;
        /* Another claimant holds an address of the range in iomem:
         * __request_region() refuses, alloc_dev_dax_range() says -ENOMEM. */
        for (guint i = 0; i < s->busy->len; i++) {
                const DaxSimBusy *x = &g_array_index(s->busy, DaxSimBusy, i);

                if (x->phys >= start && x->phys - start < size && access(x->while_file, F_OK) == 0)
                        return -ENOMEM;
        }
        if (d->n_ranges >= DAX_RANGES_MAX)
                return -E2BIG;

        k = sim_device_write_back(r, d);
        if (k < 0)
                return k;

        d->ranges[d->n_ranges++] = (DaxRange) { .start = start, .size = size };
        sim_save(s);
        return 0;
}

/* One step of dev_dax_resize()'s first-fit growth over the region's
 * allocations, with the device's own ranges taken from ranges[0..n).
 * Returns false if no free space is left. */
static bool sim_first_fit_step(const SimRegion *r, const SimDevice *self, const DaxRange *ranges, unsigned n,
                               uint64_t to_alloc, uint64_t *ret_start, uint64_t *ret_len, bool *ret_extend) {
        g_autoptr(GArray) spans = g_array_new(false, false, sizeof(DaxRange));
        uint64_t region_end = r->start + r->size, last_own = UINT64_MAX;

        for (unsigned i = 0; i < r->devices->len; i++) {
                const SimDevice *d = r->devices->pdata[i];

                if (d != self)
                        g_array_append_vals(spans, d->ranges, d->n_ranges);
        }
        g_array_append_vals(spans, ranges, n);
        if (n > 0)
                last_own = ranges[n - 1].start;

        if (spans->len == 0) {
                *ret_start = r->start;
                *ret_len = to_alloc;
                *ret_extend = false;
                return true;
        }

        /* Region resources are kept in address order. */
        for (unsigned i = 1; i < spans->len; i++) {
                DaxRange t = g_array_index(spans, DaxRange, i);
                unsigned j = i;

                for (; j > 0 && g_array_index(spans, DaxRange, j - 1).start > t.start; j--)
                        g_array_index(spans, DaxRange, j) = g_array_index(spans, DaxRange, j - 1);
                g_array_index(spans, DaxRange, j) = t;
        }

        for (unsigned i = 0; i < spans->len; i++) {
                const DaxRange *res = &g_array_index(spans, DaxRange, i);
                const DaxRange *next = i + 1 < spans->len ? &g_array_index(spans, DaxRange, i + 1) : NULL;
                uint64_t res_end = res->start + res->size, alloc = 0;

                /* space at the beginning of the region */
                if (i == 0 && res->start > r->start) {
                        *ret_start = r->start;
                        *ret_len = min_u64(res->start - r->start, to_alloc);
                        *ret_extend = false;
                        return true;
                }

                /* space between allocations, else at the end of the region */
                if (next && next->start > res_end)
                        alloc = min_u64(next->start - res_end, to_alloc);
                if (alloc == 0 && !next && res_end < region_end)
                        alloc = min_u64(region_end - res_end, to_alloc);
                if (alloc == 0)
                        continue;

                /* adjust_ok(): grow the device's last range in place. */
                *ret_extend = res->start == last_own;
                *ret_start = res_end;
                *ret_len = alloc;
                return true;
        }
        return false;
}

static int sim_resize(SimRegion *r, SimDevice *d, uint64_t size) {
        DaxRange ranges[DAX_RANGES_MAX];
        uint64_t cur = sim_device_size(d);
        unsigned n = d->n_ranges;

        memcpy(ranges, d->ranges, sizeof(ranges));

        if (size < cur) {
                /* dev_dax_shrink(): from the last range backwards. */
                uint64_t to_shrink = cur - size;

                while (to_shrink > 0) {
                        DaxRange *last = &ranges[n - 1];

                        if (last->size <= to_shrink) {
                                to_shrink -= last->size;
                                n--;
                        } else {
                                last->size -= to_shrink;
                                to_shrink = 0;
                        }
                }
        } else {
                uint64_t to_alloc = size - cur;

                while (to_alloc > 0) {
                        uint64_t start, len;
                        bool extend;

                        if (!sim_first_fit_step(r, d, ranges, n, to_alloc, &start, &len, &extend))
                                return -ENOSPC;
                        if (extend)
                                ranges[n - 1].size += len;
                        else if (n >= DAX_RANGES_MAX)
                                return -E2BIG; /* stricter than the kernel, see top */
                        else
                                ranges[n++] = (DaxRange) { .start = start, .size = len };
                        to_alloc -= len;
                }
        }

        memcpy(d->ranges, ranges, sizeof(ranges));
        d->n_ranges = n;
        return 0;
}

static int sim_set_size(DaxBackend *b, const char *name, uint64_t size) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        SimRegion *r;
        SimDevice *d;
        uint64_t cur;
        int k;

        k = sim_lookup(s, name, &r, &d);
        if (k < 0)
                return k;

        /* size_store() checks alignment first, then dev_dax_resize(). */
        if (!sim_len_aligned(d->align, size))
                return -EINVAL;
        if (d->driver != DAX_DRIVER_NONE)
                return -EBUSY;
        cur = sim_device_size(d);
        if (size == cur)
                return 0;
        if (size > cur && size - cur > r->size - sim_region_allocated(r))
                return -ENOSPC;

        k = sim_device_write_back(r, d);
        if (k < 0)
                return k;
        k = sim_resize(r, d, size);
        if (k < 0)
                return k;

        sim_save(s);
        return 0;
}

/* What the driver core checks before any driver's probe: 0 if the device
 * already has this driver, 1 if it may be probed, or the errno. */
static int sim_bind_check(const SimDevice *d, DaxDriver driver) {
        if (d->driver == driver)
                return 0;
        if (d->driver != DAX_DRIVER_NONE)
                return -EBUSY; /* the driver core refuses a bound device */
        if (d->n_ranges == 0)
                return -ENXIO; /* dax_bus_probe() */
        return 1;
}

static int sim_bind_device_dax(DaxBackend *b, const char *name) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        SimRegion *r;
        SimDevice *d;
        int k;

        k = sim_lookup(s, name, &r, &d);
        if (k < 0)
                return k;

        k = sim_bind_check(d, DAX_DRIVER_DEVICE_DAX);
        if (k <= 0)
                return k;
        for (unsigned i = 0; i < d->n_ranges; i++)
                if (d->ranges[i].start % max_u64(d->align, SIM_SUBSECTION) != 0)
                        return -EINVAL; /* memremap_pages() for 2 MiB; see top for larger */

        d->driver = DAX_DRIVER_DEVICE_DAX;
        sim_save(s);
        return 0;
}

static int sim_unbind(DaxBackend *b, const char *name) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        SimRegion *r;
        SimDevice *d;
        int k;

        k = sim_lookup(s, name, &r, &d);
        if (k < 0)
                return k;

        if (d->driver == DAX_DRIVER_NONE)
                return 0;
        if (d->driver == DAX_DRIVER_KMEM) {
                g_autoptr(GArray) blocks = sim_device_blocks(d);

                if (sim_blocks_online(r, blocks) > 0)
                        return -EBUSY; /* would strand the range until reboot */
        }

        k = sim_device_write_back(r, d);
        if (k < 0)
                return k;

        d->driver = DAX_DRIVER_NONE;
        sim_save(s);
        return 0;
}

static int sim_delete_device(DaxBackend *b, const char *name) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        unsigned region_id, instance;
        SimRegion *r;
        SimDevice *d;
        int k;

        k = sim_parse_name(name, &region_id, &instance);
        if (k < 0)
                return k;
        r = sim_find_region(s, region_id);
        if (!r)
                return -ENODEV;
        d = sim_find_device(r, instance);
        if (!d)
                return -ENXIO; /* delete_store(): not a child of the region */

        if (d->driver != DAX_DRIVER_NONE || d->n_ranges > 0 || d->instance == 0)
                return -EBUSY;

        g_ptr_array_remove(r->devices, d);
        sim_save(s);
        return 0;
}

static int sim_open_device(DaxBackend *b, const char *name) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        char path[64];
        SimRegion *r;
        SimDevice *d;
        int k, fd;

        k = sim_lookup(s, name, &r, &d);
        if (k < 0)
                return k;
        if (d->driver != DAX_DRIVER_DEVICE_DAX)
                return -ENXIO;

        k = sim_device_materialize(r, d);
        if (k < 0)
                return k;

        /* A fresh open file description, like open() of the node: same
         * bytes, but its own file offset. */
        snprintf(path, sizeof(path), "/proc/self/fd/%d", d->data_fd);
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return fd;
}

static int sim_device_in_use(DaxBackend *b, const char *name) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        SimRegion *r;
        SimDevice *d;
        int k;

        k = sim_lookup(s, name, &r, &d);
        if (k < 0)
                return k;
        return d->in_use;
}

static char *sim_boot_id(DaxBackend *b) {
        return g_strdup(((SimBackend *) b)->boot_id);
}

static bool sim_host_zeroes_on_alloc(DaxBackend *b, const char **ret_why) {
        bool on = ((SimBackend *) b)->init_on_alloc;

        if (ret_why)
                *ret_why = on ? "the model's host kernel has init_on_alloc on" : "the model's host kernel has init_on_alloc off";
        return on;
}

static uint64_t sim_memory_block_size(DaxBackend *b) {
        return SIM_MEMORY_BLOCK;
}

static int sim_bind_kmem(DaxBackend *b, const char *name) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        g_autoptr(GArray) blocks = NULL;
        SimRegion *r;
        SimDevice *d;
        int k;

        k = sim_lookup(s, name, &r, &d);
        if (k < 0)
                return k;

        k = sim_bind_check(d, DAX_DRIVER_KMEM);
        if (k <= 0)
                return k;
        /* dev_dax_kmem_probe(): "rejecting DAX region with invalid node",
         * then "... without any memory after alignment". */
        if (r->numa_node < 0)
                return -EINVAL;
        blocks = sim_device_blocks(d);
        if (blocks->len == 0)
                return -EINVAL;

        k = sim_device_write_back(r, d);
        if (k < 0)
                return k;

        d->driver = DAX_DRIVER_KMEM;
        if (s->autoonline != DAX_SIM_AUTOONLINE_OFFLINE)
                for (unsigned i = 0; i < blocks->len && k >= 0; i++)
                        k = sim_block_set(r, g_array_index(blocks, uint64_t, i), true,
                                          s->autoonline == DAX_SIM_AUTOONLINE_ONLINE_MOVABLE);
        sim_save(s);
        return k;
}

static gint sim_u64_compare(gconstpointer a, gconstpointer b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

static int sim_list_memory_blocks(DaxBackend *b, const char *name, DaxMemBlock **ret, size_t *ret_n) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        g_autoptr(GArray) blocks = NULL;
        DaxMemBlock *v;
        SimRegion *r;
        SimDevice *d;
        int k;

        k = sim_lookup(s, name, &r, &d);
        if (k < 0)
                return k;
        if (d->driver != DAX_DRIVER_KMEM)
                return -ENXIO;

        blocks = sim_device_blocks(d);
        g_array_sort(blocks, sim_u64_compare);
        v = calloc(MAX(blocks->len, 1u), sizeof(DaxMemBlock));
        if (!v)
                return -ENOMEM;
        for (unsigned i = 0; i < blocks->len; i++) {
                uint64_t m = g_array_index(blocks, uint64_t, i);
                const SimBlock *blk = sim_region_block(r, m);

                v[i] = (DaxMemBlock) {
                        .id = m,
                        .start = m * SIM_MEMORY_BLOCK,
                        .online = blk->online,
                        .movable = blk->movable,
                };
        }

        *ret = v;
        *ret_n = blocks->len;
        return 0;
}

static int sim_set_memory_block(DaxBackend *b, uint64_t block_id, bool online, uint64_t timeout_usec) {
        SimBackend *s = (SimBackend *) b;
        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);
        SimRegion *r;
        SimBlock *blk;
        int k;

        k = sim_find_kmem_block(s, block_id, &r, &blk);
        if (k < 0)
                return k;
        if (blk->online == online)
                return 0;

        /* Offlining migrates the pages away, or gives up. */
        if (!online && blk->pin == DAX_SIM_BLOCK_BUSY)
                return -EBUSY;
        if (!online && blk->pin == DAX_SIM_BLOCK_HANG)
                return -ETIMEDOUT;

        k = sim_block_set(r, block_id, online, true);
        if (k < 0)
                return k;
        sim_save(s);
        return 0;
}

static const DaxBackendOps sim_ops = {
        .name = "sim",
        .free = sim_free,
        .list_regions = sim_list_regions,
        .list_devices = sim_list_devices,
        .get_device = sim_get_device,
        .create_device = sim_create_device,
        .set_align = sim_set_align,
        .add_mapping = sim_add_mapping,
        .set_size = sim_set_size,
        .bind_device_dax = sim_bind_device_dax,
        .unbind = sim_unbind,
        .delete_device = sim_delete_device,
        .open_device = sim_open_device,
        .device_in_use = sim_device_in_use,
        .memory_block_size = sim_memory_block_size,
        .host_zeroes_on_alloc = sim_host_zeroes_on_alloc,
        .node_perf = sim_node_perf,
        .boot_id = sim_boot_id,
        .bind_kmem = sim_bind_kmem,
        .list_memory_blocks = sim_list_memory_blocks,
        .set_memory_block = sim_set_memory_block,
};

/* Moves the regions' bytes into files under "<state_path>.mem/". Resuming,
 * the files already hold them (the memfds only have what booting and
 * loading wrote: host data the files got when those blocks went online);
 * on a fresh boot, the files from an earlier run are emptied first. */
static int sim_keep_bytes(SimBackend *s, bool resume) {
        g_autofree char *dir = g_strconcat(s->state_path, ".mem", NULL);

        if (g_mkdir_with_parents(dir, 0700) < 0)
                return -errno;
        if (!resume) {
                g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
                const char *e;

                while (d && (e = g_dir_read_name(d))) {
                        g_autofree char *path = g_build_filename(dir, e, NULL);

                        if (unlink(path) < 0)
                                return -errno;
                }
        }
        for (unsigned i = 0; i < s->regions->len; i++) {
                SimRegion *r = s->regions->pdata[i];
                g_autofree char *name = g_strdup_printf("region%u", r->id);
                g_autofree char *path = g_build_filename(dir, name, NULL);
                int fd, k;

                fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                if (fd < 0)
                        return -errno;
                if (ftruncate(fd, (off_t) r->size) < 0) {
                        k = -errno;
                        close(fd);
                        return k;
                }
                if (!resume) {
                        k = sim_copy_data(r->backing_fd, 0, fd, 0, r->size);
                        if (k < 0) {
                                close(fd);
                                return k;
                        }
                }
                close(r->backing_fd);
                r->backing_fd = fd;
                r->mem_dir = g_strdup(dir);
        }
        return 0;
}

int dax_sim_new_with_options(const char *spec, const DaxSimOptions *options, DaxBackend **ret) {
        static const DaxSimOptions defaults = {};
        SimBackend *s;
        bool resume;
        int k;

        if (!ret)
                return -EINVAL;
        if (!options)
                options = &defaults;
        if ((unsigned) options->autoonline > DAX_SIM_AUTOONLINE_ONLINE_MOVABLE)
                return -EINVAL;

        s = g_new0(SimBackend, 1);
        s->backend.ops = &sim_ops;
        g_mutex_init(&s->lock);
        s->state_path = g_strdup(options->state_path);
        s->autoonline = options->autoonline;
        s->regions = g_ptr_array_new_with_free_func(sim_region_free);
        s->busy = g_array_new(false, false, sizeof(DaxSimBusy));
        s->init_on_alloc = options->init_on_alloc;
        for (size_t i = 0; i < options->n_busy; i++) {
                DaxSimBusy x = { options->busy[i].phys, g_strdup(options->busy[i].while_file) };
                g_array_append_val(s->busy, x);
        }

        k = sim_parse_spec(spec, s->regions);
        if (k < 0)
                goto fail;

        s->perf = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
        s->hotplug = g_hash_table_new(g_direct_hash, g_direct_equal);
        for (size_t i = 0; i < options->n_hotplug_nodes; i++)
                g_hash_table_add(s->hotplug, GINT_TO_POINTER(options->hotplug_nodes[i]));
        for (size_t i = 0; i < options->n_access; i++) {
                NodeAccess a;
                unsigned class;
                int node;

                k = node_perf_parse_access(options->access[i], &node, &class, &a);
                if (k < 0)
                        goto fail;
                sim_perf_of(s, node)->access[class] = a;
        }
        for (size_t i = 0; i < options->n_caches; i++) {
                NodeCache c;
                int node;

                k = node_perf_parse_cache(options->caches[i], &node, &c);
                if (k < 0)
                        goto fail;
                k = node_perf_add_cache(sim_perf_of(s, node), &c);
                if (k < 0)
                        goto fail;
        }

        /* A fresh boot (no state file yet) starts from empty memory. */
        resume = s->state_path && access(s->state_path, F_OK) == 0;
        for (unsigned i = 0; i < s->regions->len; i++) {
                SimRegion *r = s->regions->pdata[i];

                r->backing_fd = memfd_create("dax-sim-region", MFD_CLOEXEC);
                if (r->backing_fd < 0) {
                        k = -errno;
                        goto fail;
                }
                if (ftruncate(r->backing_fd, (off_t) r->size) < 0) {
                        k = -errno;
                        goto fail;
                }
                k = sim_boot_region(r, options->boot_mode ?: "idle", s->autoonline);
                if (k < 0)
                        goto fail;
        }

        s->boot_id = g_uuid_string_random();
        if (s->state_path) {
                k = sim_load(s);
                if (k < 0)
                        goto fail;
                k = sim_keep_bytes(s, resume);
                if (k < 0)
                        goto fail;
        }

        for (size_t i = 0; i < options->n_pins; i++) {
                SimBlock *blk = sim_find_block(s, options->pins[i].phys);

                if (!blk || !dax_sim_block_pin_to_string(options->pins[i].pin)) {
                        k = -EINVAL;
                        goto fail;
                }
                blk->pin = options->pins[i].pin;
        }
        /* A boot (no state file yet, or one of a version without boot ids)
         * is on record before the daemon acts. */
        if (options->n_pins > 0 || (s->state_path && !s->boot_id_on_record))
                sim_save(s);

        *ret = &s->backend;
        return 0;

fail:
        sim_free(&s->backend);
        return k;
}

int dax_sim_new(const char *spec, const char *boot_mode, const char *state_path, DaxBackend **ret) {
        return dax_sim_new_with_options(spec, &(const DaxSimOptions) { .boot_mode = boot_mode, .state_path = state_path },
                                        ret);
}

static SimBackend *sim_from_backend(DaxBackend *b) {
        return b && b->ops == &sim_ops ? (SimBackend *) b : NULL;
}

int dax_sim_set_blocks_online(DaxBackend *b, const char *name, unsigned n_online) {
        SimBackend *s = sim_from_backend(b);
        g_autoptr(GArray) blocks = NULL;
        SimRegion *r;
        SimDevice *d;
        int k;

        if (!s)
                return -EOPNOTSUPP;

        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);

        k = sim_lookup(s, name, &r, &d);
        if (k < 0)
                return k;
        if (d->driver != DAX_DRIVER_KMEM)
                return -ENXIO;
        blocks = sim_device_blocks(d);
        if (n_online > blocks->len)
                return -ERANGE;

        for (unsigned i = 0; i < blocks->len; i++) {
                k = sim_block_set(r, g_array_index(blocks, uint64_t, i), i < n_online, true);
                if (k < 0)
                        break;
        }
        sim_save(s);
        return k;
}

int dax_sim_set_in_use(DaxBackend *b, const char *name, bool in_use) {
        SimBackend *s = sim_from_backend(b);
        SimRegion *r;
        SimDevice *d;
        int k;

        if (!s)
                return -EOPNOTSUPP;

        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);

        k = sim_lookup(s, name, &r, &d);
        if (k < 0)
                return k;
        d->in_use = in_use;
        return 0;
}

int dax_sim_set_block_state(DaxBackend *b, uint64_t phys, bool online, bool movable) {
        SimBackend *s = sim_from_backend(b);
        SimRegion *r;
        SimBlock *blk;
        int k;

        if (!s)
                return -EOPNOTSUPP;

        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);

        k = sim_find_kmem_block(s, phys / SIM_MEMORY_BLOCK, &r, &blk);
        if (k < 0)
                return k;
        k = sim_block_set(r, phys / SIM_MEMORY_BLOCK, online, movable);
        if (k < 0)
                return k;
        sim_save(s);
        return 0;
}

int dax_sim_set_block_pin(DaxBackend *b, uint64_t phys, DaxSimBlockPin pin) {
        SimBackend *s = sim_from_backend(b);
        SimBlock *blk;

        if (!s)
                return -EOPNOTSUPP;
        if (!dax_sim_block_pin_to_string(pin))
                return -EINVAL;

        G_GNUC_UNUSED g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&s->lock);

        blk = sim_find_block(s, phys);
        if (!blk)
                return -ENOENT;
        blk->pin = pin;
        sim_save(s);
        return 0;
}
