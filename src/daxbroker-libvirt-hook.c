/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daxbroker-libvirt-hook: libvirt's QEMU hook (installed as
 * /etc/libvirt/hooks/qemu.d/daxbroker). libvirt runs it as
 *   daxbroker GUEST OPERATION SUB-OPERATION EXTRA   < domain XML
 * It allocates a domain's declared regions at "prepare begin" (owner = the
 * domain UUID, so /run/daxbroker/owners/UUID/LABEL exists before QEMU
 * starts), releases them at "release end", checks them at "reconnect
 * begin" and passes the XML through unchanged for migrate/save/restore.
 * It never calls libvirt: libvirt holds the domain's job while hooks run.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "libvirt-domain.h"
#include "util.h"

#define BUS_NAME "org.daxbroker.Broker1"
#define BUS_PATH "/org/daxbroker/Broker1"
#define BUS_IFACE "org.daxbroker.Broker1.Manager"
#define XML_MAX (64u << 20)

/* Each call has its own limit: a start must not hang forever on a daemon
 * that does not answer. Allocate may zero memory or take it back from the
 * host first, so it gets the most. */
#define ALLOCATE_TIMEOUT_USEC (600ULL * 1000 * 1000)
#define RELEASE_TIMEOUT_USEC (120ULL * 1000 * 1000)
#define LIST_TIMEOUT_USEC (30ULL * 1000 * 1000)

static const char *domain_label = "?";

static void say(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void say(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "daxbroker: domain '%s': ", domain_label);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static char *read_all(int fd, size_t *ret_len) {
        GString *s = g_string_new(NULL);
        char buf[65536];

        for (;;) {
                ssize_t n = read(fd, buf, sizeof buf);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 || s->len + (size_t) n > XML_MAX) {
                        g_string_free(s, TRUE);
                        return NULL;
                }
                if (n == 0)
                        break;
                g_string_append_len(s, buf, n);
        }
        *ret_len = s->len;
        return g_string_free(s, FALSE);
}

static int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t w = write(fd, p, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

static int bus_open(sd_bus **ret) {
        const char *addr = getenv("DAXBROKER_BUS_ADDRESS");
        sd_bus *bus = NULL;
        int r;

        if (!addr || !addr[0])
                return sd_bus_open_system(ret);
        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        r = sd_bus_set_address(bus, addr);
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

static const char *bus_error_text(const sd_bus_error *e, int r) {
        return sd_bus_error_is_set(e) && e->message ? e->message : strerror(-r);
}

static int call(sd_bus *bus, uint64_t timeout, sd_bus_message *m, sd_bus_error *e, sd_bus_message **reply) {
        return sd_bus_call(bus, m, timeout, e, reply);
}

static int new_call(sd_bus *bus, const char *method, sd_bus_message **m) {
        return sd_bus_message_new_method_call(bus, m, BUS_NAME, BUS_PATH, BUS_IFACE, method);
}

/* Allocation paths and labels of one owner. */
static int list_owner(sd_bus *bus, const char *owner, GPtrArray *paths, GPtrArray *labels, sd_bus_error *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r;

        r = new_call(bus, "ListAllocations", &m);
        if (r < 0)
                return r;
        r = call(bus, LIST_TIMEOUT_USEC, m, e, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(ossussttsbta(tt))");
        if (r < 0)
                return r;
        for (;;) {
                const char *path, *id, *own, *label, *pool, *device;
                uint32_t uid;
                uint64_t size, align, created;
                int transient;

                r = sd_bus_message_enter_container(reply, 'r', "ossussttsbta(tt)");
                if (r <= 0)
                        break;
                r = sd_bus_message_read(reply, "ossussttsbt", &path, &id, &own, &uid, &label, &pool, &size, &align,
                                        &device, &transient, &created);
                if (r < 0)
                        return r;
                r = sd_bus_message_skip(reply, "a(tt)");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
                if (strcmp(own, owner) != 0)
                        continue;
                if (paths)
                        g_ptr_array_add(paths, g_strdup(path));
                if (labels)
                        g_ptr_array_add(labels, g_strdup(label));
        }
        return r;
}

static int release_owner(sd_bus *bus, const char *owner, unsigned *ret_count, sd_bus_error *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        uint32_t n = 0;
        int r;

        r = new_call(bus, "ReleaseOwner", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "s", owner);
        if (r >= 0)
                r = call(bus, RELEASE_TIMEOUT_USEC, m, e, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "u", &n);
        if (r >= 0 && ret_count)
                *ret_count = n;
        return r;
}

static int release_one(sd_bus *bus, const char *path, sd_bus_error *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r;

        r = new_call(bus, "Release", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "o", path);
        if (r >= 0)
                r = call(bus, RELEASE_TIMEOUT_USEC, m, e, &reply);
        return r;
}

static int resolve_owner(const DomainRegion *r, uint32_t *uid, uint32_t *gid) {
        char *end;

        errno = 0;
        *uid = (uint32_t) strtoul(r->user, &end, 10);
        if (errno || *end || !g_ascii_isdigit(r->user[0])) {
                struct passwd *pw = getpwnam(r->user);
                if (!pw) {
                        say("region '%s': user '%s' does not exist on this host", r->label, r->user);
                        return -ENOENT;
                }
                *uid = pw->pw_uid;
                *gid = pw->pw_gid;
        } else {
                struct passwd *pw = getpwuid(*uid);
                *gid = pw ? pw->pw_gid : *uid;
        }
        if (r->group) {
                errno = 0;
                *gid = (uint32_t) strtoul(r->group, &end, 10);
                if (errno || *end || !g_ascii_isdigit(r->group[0])) {
                        struct group *gr = getgrnam(r->group);
                        if (!gr) {
                                say("region '%s': group '%s' does not exist on this host", r->label, r->group);
                                return -ENOENT;
                        }
                        *gid = gr->gr_gid;
                }
        }
        return 0;
}

static int allocate(sd_bus *bus, const char *owner, const DomainRegion *r, char **ret_path, sd_bus_error *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        int fd, k;

        k = new_call(bus, "Allocate", &m);
        if (k >= 0)
                k = sd_bus_message_append(m, "st", owner, r->size);
        if (k >= 0)
                k = sd_bus_message_open_container(m, 'a', "{sv}");
        if (k >= 0)
                k = sd_bus_message_append(m, "{sv}", "label", "s", r->label);
        if (k >= 0 && r->pool)
                k = sd_bus_message_append(m, "{sv}", "pool", "s", r->pool);
        if (k >= 0 && r->numa_node >= 0)
                k = sd_bus_message_append(m, "{sv}", "numa-node", "i", (int32_t) r->numa_node);
        if (k >= 0 && r->align)
                k = sd_bus_message_append(m, "{sv}", "align", "t", r->align);
        if (k >= 0 && r->contiguous >= 0)
                k = sd_bus_message_append(m, "{sv}", "contiguous", "b", r->contiguous);
        if (k >= 0 && r->user) {
                uint32_t uid, gid;

                if (resolve_owner(r, &uid, &gid) < 0)
                        return -ENOENT;
                k = sd_bus_message_append(m, "{sv}{sv}", "device-uid", "u", uid, "device-gid", "u", gid);
        }
        if (k >= 0)
                k = sd_bus_message_close_container(m);
        if (k >= 0)
                k = call(bus, ALLOCATE_TIMEOUT_USEC, m, e, &reply);
        if (k >= 0)
                k = sd_bus_message_read(reply, "oh", &path, &fd);
        if (k < 0)
                return k;
        /* The fd is QEMU's business, by path; the allocation outlives us. */
        *ret_path = g_strdup(path);
        return 0;
}

static int op_prepare(const DomainSpec *s) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        g_autoptr(GPtrArray) made = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) stale = g_ptr_array_new_with_free_func(g_free);
        unsigned i;
        int r;

        r = bus_open(&bus);
        if (r < 0) {
                say("cannot connect to the system bus to reach daxbrokerd: %s", strerror(-r));
                return 1;
        }
        /* The domain is not running (libvirt is starting it), so anything
         * its UUID still holds was left by a stop nobody saw. */
        r = list_owner(bus, s->uuid, stale, NULL, &e);
        if (r < 0) {
                say("cannot reach daxbrokerd (is it running?): %s", bus_error_text(&e, r));
                return 1;
        }
        if (stale->len > 0) {
                unsigned n = 0;

                r = release_owner(bus, s->uuid, &n, &e);
                if (r < 0) {
                        say("%u allocations of an earlier run of this domain are still held and could not be "
                            "released: %s", stale->len, bus_error_text(&e, r));
                        return 1;
                }
                fprintf(stderr, "daxbroker: domain '%s': released %u allocations left from an earlier run\n",
                        s->name, n);
        }

        for (i = 0; i < s->n_regions; i++) {
                const DomainRegion *reg = &s->regions[i];
                char sz[FORMAT_SIZE_MAX], *path = NULL;

                sd_bus_error_free(&e);
                r = allocate(bus, s->uuid, reg, &path, &e);
                if (r < 0) {
                        if (r != -ENOENT || sd_bus_error_is_set(&e))
                                say("region '%s' (%s%s%s): %s", reg->label, format_size(reg->size, sz, sizeof sz),
                                    reg->pool ? " from pool " : "", reg->pool ? reg->pool : "",
                                    bus_error_text(&e, r));
                        break;
                }
                g_ptr_array_add(made, path);
        }
        if (i == s->n_regions)
                return 0;

        /* Roll back exactly what this start allocated. */
        for (unsigned j = 0; j < made->len; j++) {
                sd_bus_error_free(&e);
                r = release_one(bus, made->pdata[j], &e);
                if (r < 0)
                        fprintf(stderr, "daxbroker: domain '%s': could not release %s again: %s\n", s->name,
                                (const char *) made->pdata[j], bus_error_text(&e, r));
        }
        return 1;
}

static int op_release(const DomainSpec *s) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        int r;

        r = bus_open(&bus);
        if (r >= 0)
                r = release_owner(bus, s->uuid, NULL, &e);
        if (r < 0) {
                /* libvirt ignores a failing release hook; the daemon's libvirt
                 * watcher or the next start of the domain releases it. */
                say("could not release its memory now: %s", bus_error_text(&e, r));
                return 1;
        }
        return 0;
}

static int op_reconnect(const DomainSpec *s) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        g_autoptr(GPtrArray) labels = g_ptr_array_new_with_free_func(g_free);
        int r;

        r = bus_open(&bus);
        if (r >= 0)
                r = list_owner(bus, s->uuid, NULL, labels, &e);
        if (r < 0) {
                say("cannot check its allocations: %s", bus_error_text(&e, r));
                return 0;
        }
        for (unsigned i = 0; i < s->n_regions; i++)
                if (!g_ptr_array_find_with_equal_func(labels, s->regions[i].label, g_str_equal, NULL))
                        say("region '%s' has no allocation in daxbrokerd; the running guest's memory is not "
                            "reserved for it (restart the domain)", s->regions[i].label);
        /* Not our call to kill a running guest: libvirt would, on failure. */
        return 0;
}

int main(int argc, char **argv) {
        g_autoptr(GError) error = NULL;
        g_autoptr(DomainSpec) spec = NULL;
        g_autofree char *xml = NULL;
        const char *op, *sub;
        size_t len = 0;
        bool filter = false, prepare = false, release = false, reconnect = false;

        if (argc < 4) {
                fprintf(stderr, "Usage: %s GUEST OPERATION SUB-OPERATION [EXTRA] < DOMAIN-XML\n"
                        "libvirt's QEMU hook for daxbroker; see daxbroker-libvirt-hook(8).\n", argv[0]);
                return 2;
        }
        domain_label = argv[1];
        op = argv[2];
        sub = argv[3];
        if (strcmp(sub, "begin") == 0)
                filter = strcmp(op, "migrate") == 0 || strcmp(op, "save") == 0 || strcmp(op, "restore") == 0;
        prepare = strcmp(op, "prepare") == 0 && strcmp(sub, "begin") == 0;
        release = strcmp(op, "release") == 0 && strcmp(sub, "end") == 0;
        reconnect = strcmp(op, "reconnect") == 0 && strcmp(sub, "begin") == 0;
        if (!filter && !prepare && !release && !reconnect)
                return 0;

        xml = read_all(STDIN_FILENO, &len);
        if (!xml) {
                say("cannot read the domain XML from libvirt on stdin: %s", errno ? strerror(errno) : "too large");
                return 1;
        }
        if (filter) {
                /* libvirt takes our output as the domain XML: exactly what
                 * it gave us, never nothing. */
                if (write_all(STDOUT_FILENO, xml, len) < 0) {
                        say("cannot write the domain XML back to libvirt: %m");
                        return 1;
                }
                return 0;
        }

        spec = domain_spec_parse(xml, len, prepare, &error);
        if (!spec) {
                if (!prepare)
                        return 0;
                say("%s", error->message);
                return 1;
        }
        domain_label = spec->name;
        if (!spec->has_metadata)
                return 0;
        if (prepare)
                return op_prepare(spec);
        if (release)
                return op_release(spec);
        return op_reconnect(spec);
}
