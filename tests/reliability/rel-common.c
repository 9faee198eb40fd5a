/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "rel-common.h"

int rel_bus_open(const char *address, sd_bus **ret) {
        sd_bus *bus = NULL;
        int r;

        if (!address)
                return sd_bus_open_system(ret);
        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, 1);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0) {
                sd_bus_unref(bus);
                return r;
        }
        *ret = bus;
        return 0;
}

int rel_list_pools(sd_bus *bus, RelPool **ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        RelPool *pools = NULL;
        unsigned n = 0;
        int r;

        r = sd_bus_call_method(bus, REL_DEST, REL_PATH, REL_MGR, "ListPools", &error, &reply, NULL);
        if (r < 0) {
                fprintf(stderr, "ListPools: %s\n", error.message);
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_enter_container(reply, 'a', "(osuitttttttttt)");
        for (; r >= 0;) {
                const char *path, *name;
                RelPool p = {};

                r = sd_bus_message_read(reply, "(osuitttttttttt)", &path, &name, &p.region, &p.node, &p.start,
                                        &p.size, &p.align, &p.boundary, &p.free, &p.allocated, &p.host, &p.dirty,
                                        &p.foreign, &p.largest);
                if (r <= 0)
                        break;
                snprintf(p.name, sizeof p.name, "%s", name);
                snprintf(p.path, sizeof p.path, "%s", path);
                (void) sd_bus_get_property_trivial(bus, REL_DEST, path, "org.daxbroker.Broker1.Pool", "WarmSize", NULL,
                                                   't', &p.warm);
                pools = realloc(pools, (n + 1) * sizeof *pools);
                pools[n++] = p;
        }
        sd_bus_message_unref(reply);
        if (r < 0) {
                free(pools);
                return r;
        }
        *ret = pools;
        return (int) n;
}

int rel_warm_ranges(sd_bus *bus, const RelPool *p, RelRange *out, int max) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        uint64_t off, size;
        const char *use;
        int r, n = 0;

        r = sd_bus_get_property(bus, REL_DEST, p->path, "org.daxbroker.Broker1.Pool", "Extents", &error, &reply,
                                "a(tts)");
        sd_bus_error_free(&error);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(tts)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(tts)", &off, &size, &use)) > 0)
                if (strcmp(use, "warm") == 0 && n < max)
                        out[n++] = (RelRange) { p->start + off, size };
        sd_bus_message_unref(reply);
        return r < 0 ? r : n;
}

int rel_list_allocations(sd_bus *bus, RelAlloc **ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        RelAlloc *all = NULL;
        unsigned n = 0;
        int r;

        r = sd_bus_call_method(bus, REL_DEST, REL_PATH, REL_MGR, "ListAllocations", &error, &reply, NULL);
        if (r < 0) {
                fprintf(stderr, "ListAllocations: %s\n", error.message);
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_enter_container(reply, 'a', "(ossussttsbta(tt))");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "ossussttsbta(tt)")) > 0) {
                const char *path, *id, *owner, *label, *pool, *device;
                uint32_t uid;
                uint64_t size, align, created, s, l;
                int transient;
                RelAlloc *a;

                all = realloc(all, (n + 1) * sizeof *all);
                a = &all[n++];
                memset(a, 0, sizeof *a);
                r = sd_bus_message_read(reply, "ossussttsbt", &path, &id, &owner, &uid, &label, &pool, &size, &align,
                                        &device, &transient, &created);
                if (r < 0)
                        break;
                snprintf(a->path, sizeof a->path, "%s", path);
                snprintf(a->id, sizeof a->id, "%s", id);
                snprintf(a->owner, sizeof a->owner, "%s", owner);
                snprintf(a->pool, sizeof a->pool, "%s", pool);
                snprintf(a->device, sizeof a->device, "%s",
                         strrchr(device, '/') ? strrchr(device, '/') + 1 : device);
                a->size = size;
                a->transient = transient;
                r = sd_bus_message_enter_container(reply, 'a', "(tt)");
                while (r >= 0 && (r = sd_bus_message_read(reply, "(tt)", &s, &l)) > 0)
                        if (a->n_ranges < REL_RANGES_MAX)
                                a->ranges[a->n_ranges++] = (RelRange) { s, l };
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        sd_bus_message_unref(reply);
        if (r < 0) {
                free(all);
                return r;
        }
        *ret = all;
        return (int) n;
}

static int sim_devices(const char *path, RelDevice **ret) {
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) error = NULL;
        RelDevice *devs = NULL;
        unsigned n = 0;
        JsonArray *regions;
        JsonNode *root;

        if (!json_parser_load_from_file(parser, path, &error)) {
                fprintf(stderr, "%s: %s\n", path, error->message);
                return -EINVAL;
        }
        root = json_parser_get_root(parser);
        if (!JSON_NODE_HOLDS_OBJECT(root) || !json_object_has_member(json_node_get_object(root), "regions"))
                return -EINVAL;
        regions = json_object_get_array_member(json_node_get_object(root), "regions");
        for (unsigned i = 0; i < json_array_get_length(regions); i++) {
                JsonObject *reg = json_array_get_object_element(regions, i);
                unsigned id = (unsigned) json_object_get_int_member(reg, "id");
                JsonArray *ds = json_object_get_array_member(reg, "devices");

                for (unsigned k = 0; k < json_array_get_length(ds); k++) {
                        JsonObject *d = json_array_get_object_element(ds, k);
                        JsonArray *rs = json_object_get_array_member(d, "ranges");
                        RelDevice *x;

                        devs = realloc(devs, (n + 1) * sizeof *devs);
                        x = &devs[n++];
                        memset(x, 0, sizeof *x);
                        x->region = id;
                        x->instance = (unsigned) json_object_get_int_member(d, "instance");
                        snprintf(x->name, sizeof x->name, "dax%u.%u", id, x->instance);
                        snprintf(x->driver, sizeof x->driver, "%s", json_object_get_string_member(d, "driver"));
                        for (unsigned q = 0; q < json_array_get_length(rs) && q < REL_RANGES_MAX; q++) {
                                JsonObject *o = json_array_get_object_element(rs, q);
                                x->ranges[q].start = (uint64_t) json_object_get_int_member(o, "start");
                                x->ranges[q].size = (uint64_t) json_object_get_int_member(o, "size");
                                x->size += x->ranges[q].size;
                                x->n_ranges++;
                        }
                }
        }
        *ret = devs;
        return (int) n;
}

static int read_u64(const char *path, uint64_t *ret) {
        char buf[64] = {};
        FILE *f = fopen(path, "re");

        if (!f)
                return -errno;
        if (!fgets(buf, sizeof buf, f)) {
                fclose(f);
                return -EIO;
        }
        fclose(f);
        *ret = strtoull(buf, NULL, 0);
        return 0;
}

static int sysfs_devices(RelDevice **ret) {
        RelDevice *devs = NULL;
        unsigned n = 0;
        glob_t g;

        if (glob("/sys/bus/dax/devices/dax*", 0, NULL, &g) != 0) {
                *ret = NULL;
                return 0;
        }
        for (size_t i = 0; i < g.gl_pathc; i++) {
                const char *name = strrchr(g.gl_pathv[i], '/') + 1;
                char p[512], link[512];
                glob_t m;
                RelDevice *x;
                ssize_t k;

                devs = realloc(devs, (n + 1) * sizeof *devs);
                x = &devs[n++];
                memset(x, 0, sizeof *x);
                snprintf(x->name, sizeof x->name, "%s", name);
                if (sscanf(name, "dax%u.%u", &x->region, &x->instance) != 2)
                        continue;
                snprintf(p, sizeof p, "%s/driver", g.gl_pathv[i]);
                k = readlink(p, link, sizeof link - 1);
                if (k < 0)
                        snprintf(x->driver, sizeof x->driver, "none");
                else {
                        link[k] = 0;
                        snprintf(x->driver, sizeof x->driver, "%s", strrchr(link, '/') + 1);
                }
                snprintf(p, sizeof p, "%s/mapping[0-9]*", g.gl_pathv[i]);
                if (glob(p, 0, NULL, &m) == 0) {
                        for (size_t q = 0; q < m.gl_pathc && x->n_ranges < REL_RANGES_MAX; q++) {
                                uint64_t s, e;
                                snprintf(p, sizeof p, "%s/start", m.gl_pathv[q]);
                                if (read_u64(p, &s) < 0)
                                        continue;
                                snprintf(p, sizeof p, "%s/end", m.gl_pathv[q]);
                                if (read_u64(p, &e) < 0)
                                        continue;
                                x->ranges[x->n_ranges++] = (RelRange) { s, e - s + 1 };
                                x->size += e - s + 1;
                        }
                        globfree(&m);
                }
        }
        globfree(&g);
        *ret = devs;
        return (int) n;
}

int rel_list_devices(const RelKernel *k, RelDevice **ret) {
        if (k->sim_state)
                return sim_devices(k->sim_state, ret);
        if (k->sysfs)
                return sysfs_devices(ret);
        *ret = NULL;
        return 0;
}

bool rel_wait_clean(sd_bus *bus) {
        for (int i = 0; i < 12000; i++) {
                RelPool *pools = NULL;
                int n = rel_list_pools(bus, &pools);
                uint64_t dirty = 0;

                for (int k = 0; k < n; k++)
                        dirty += pools[k].dirty;
                free(pools);
                if (n >= 0 && dirty == 0)
                        return true;
                usleep(50 * 1000);
        }
        return false;
}

bool rel_ping(sd_bus *bus) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(bus, REL_DEST, REL_PATH, "org.freedesktop.DBus.Peer", "Ping", &error, NULL, NULL);

        sd_bus_error_free(&error);
        return r >= 0;
}

static int range_cmp(const void *a, const void *b) {
        const RelRange *x = a, *y = b;
        return x->start < y->start ? -1 : x->start > y->start;
}

static bool ranges_same(const RelRange *a, unsigned na, const RelRange *b, unsigned nb) {
        RelRange x[REL_RANGES_MAX], y[REL_RANGES_MAX];

        if (na != nb)
                return false;
        memcpy(x, a, na * sizeof *a);
        memcpy(y, b, nb * sizeof *b);
        qsort(x, na, sizeof *x, range_cmp);
        qsort(y, nb, sizeof *y, range_cmp);
        return memcmp(x, y, na * sizeof *x) == 0;
}

static unsigned check_invariant_once(sd_bus *bus, const RelKernel *k, const char *what, FILE *out) {
        RelPool *pools = NULL;
        RelAlloc *all = NULL;
        RelDevice *devs = NULL;
        RelRange *spans = NULL;
        unsigned bad = 0, n_spans = 0;
        int np, na, nd = 0;

#define FAIL(...) do { bad++; fprintf(out, "# %s: ", what); fprintf(out, __VA_ARGS__); fprintf(out, "\n"); } while (0)
        np = rel_list_pools(bus, &pools);
        na = rel_list_allocations(bus, &all);
        if (np < 0 || na < 0) {
                FAIL("cannot list pools or allocations: the daemon does not answer");
                goto out;
        }
        if (k) {
                nd = rel_list_devices(k, &devs);
                if (nd < 0) {
                        FAIL("cannot read the kernel's devices");
                        goto out;
                }
        }

        for (int i = 0; i < na; i++) {
                uint64_t sum = 0;

                for (unsigned q = 0; q < all[i].n_ranges; q++) {
                        sum += all[i].ranges[q].size;
                        spans = realloc(spans, (n_spans + 1) * sizeof *spans);
                        spans[n_spans++] = all[i].ranges[q];
                }
                if (sum != all[i].size)
                        FAIL("allocation %s: ranges add up to %" PRIu64 ", not its size %" PRIu64, all[i].id, sum,
                             all[i].size);
        }
        if (n_spans > 0)
                qsort(spans, n_spans, sizeof *spans, range_cmp);
        for (unsigned i = 1; i < n_spans; i++)
                if (spans[i].start < spans[i - 1].start + spans[i - 1].size)
                        FAIL("two allocations overlap at %#" PRIx64, spans[i].start);

        for (int i = 0; i < np; i++) {
                const RelPool *p = &pools[i];
                uint64_t in_allocs = 0, devices = 0, others = 0;

                if (p->allocated + p->free + p->host + p->foreign != p->size)
                        FAIL("pool %s: allocated %" PRIu64 " + free %" PRIu64 " + host %" PRIu64 " + foreign %" PRIu64
                             " != size %" PRIu64, p->name, p->allocated, p->free, p->host, p->foreign, p->size);
                for (int a = 0; a < na; a++)
                        if (strcmp(all[a].pool, p->name) == 0)
                                in_allocs += all[a].size;
                if (in_allocs != p->allocated)
                        FAIL("pool %s: allocations add up to %" PRIu64 ", AllocatedSize is %" PRIu64, p->name,
                             in_allocs, p->allocated);
                if (!k)
                        continue;
                for (int d = 0; d < nd; d++) {
                        bool is_alloc = false;

                        if (devs[d].region != p->region)
                                continue;
                        devices += devs[d].size;
                        for (int a = 0; a < na && !is_alloc; a++)
                                is_alloc = strcmp(all[a].device, devs[d].name) == 0;
                        if (!is_alloc)
                                others += devs[d].size;
                }
                if (others != p->foreign + p->host + p->warm)
                        FAIL("pool %s: devices that are no allocation hold %" PRIu64
                             ", ForeignSize + HostSize + WarmSize is %" PRIu64,
                             p->name, others, p->foreign + p->host + p->warm);
                if (devices + p->free != p->size + p->warm)
                        FAIL("pool %s: devices hold %" PRIu64 " + FreeSize %" PRIu64 " != region size %" PRIu64
                             " + WarmSize %" PRIu64, p->name, devices, p->free, p->size, p->warm);
        }
        for (int a = 0; k && a < na; a++) {
                const RelDevice *d = NULL;

                for (int i = 0; i < nd && !d; i++)
                        if (strcmp(devs[i].name, all[a].device) == 0)
                                d = &devs[i];
                if (!d)
                        FAIL("allocation %s: its device %s does not exist", all[a].id, all[a].device);
                else if (strcmp(d->driver, "device_dax") != 0)
                        FAIL("allocation %s: %s is bound to %s, not device_dax", all[a].id, d->name, d->driver);
                else if (!ranges_same(d->ranges, d->n_ranges, all[a].ranges, all[a].n_ranges))
                        FAIL("allocation %s: %s has other ranges than recorded", all[a].id, d->name);
        }
#undef FAIL
out:
        free(pools);
        free(all);
        free(devs);
        free(spans);
        return bad;
}

int rel_proc_fds(int pid) {
        char p[64];
        DIR *d;
        int n = 0;

        snprintf(p, sizeof p, "/proc/%d/fd", pid);
        d = opendir(p);
        if (!d)
                return -errno;
        for (struct dirent *e; (e = readdir(d));) {
                char link[PATH_MAX] = "", fd[PATH_MAX];

                if (e->d_name[0] == '.')
                        continue;
                /* The sim backend keeps each device's memory open in the
                 * daemon: that is the kernel's, not a leak (warm devices
                 * come and go in the background). */
                snprintf(fd, sizeof fd, "%s/%s", p, e->d_name);
                if (readlink(fd, link, sizeof link - 1) > 0 &&
                    (strstr(link, "/memfd:dax") == link || strstr(link, ".mem/dax")))
                        continue;
                n++;
        }
        closedir(d);
        return n;
}

int64_t rel_proc_rss_anon(int pid) {
        char p[64], line[256];
        FILE *f;
        int64_t kb = -1;

        snprintf(p, sizeof p, "/proc/%d/status", pid);
        f = fopen(p, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof line, f))
                if (sscanf(line, "RssAnon: %" SCNd64, &kb) == 1)
                        break;
        fclose(f);
        return kb < 0 ? -EIO : kb * 1024;
}

/* Background work (a warm device made or given back, a released device
 * destroyed) passes through states that must not last: look again a little
 * later before calling one a violation. */
unsigned rel_check_settled(RelCheck check, sd_bus *bus, const RelKernel *k, const char *what, FILE *out) {
        unsigned bad = 0;

        for (int attempt = 0; attempt < 100; attempt++) {
                char *text = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&text, &len);

                if (!f)
                        return check(bus, k, what, out);
                bad = check(bus, k, what, f);
                fclose(f);
                if (bad == 0 || attempt == 99) {
                        fputs(text, out);
                        free(text);
                        break;
                }
                free(text);
                usleep(100 * 1000);
        }
        return bad;
}

unsigned rel_check_invariant(sd_bus *bus, const RelKernel *k, const char *what, FILE *out) {
        return rel_check_settled(check_invariant_once, bus, k, what, out);
}
