/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "libvirt-watch.h"
#include "log.h"
#include "util.h"

#define BACKOFF_MIN_MSEC 1000
#define BACKOFF_MAX_MSEC 60000

typedef enum WatchMsgType {
        MSG_CONNECTED,
        MSG_RECONCILE,   /* uuids: the domains running at t0 */
        MSG_DOMAIN_GONE, /* uuids[0]: not running at t0 */
} WatchMsgType;

typedef struct WatchMsg {
        WatchMsgType type;
        uint64_t t0;       /* allocations made after this may be a new start's */
        GPtrArray *uuids;
} WatchMsg;

struct LibvirtWatch {
        sd_event *event;
        Broker *broker;
        char *uri;
        bool report_only;
        sd_event_source *source;
        int post_fd[2];   /* thread -> loop */
        int wake_fd[2];   /* loop -> thread: stop */
        pthread_t thread;
        bool thread_started;
        GMutex lock;
        GQueue queue;     /* WatchMsg*, under lock */
        /* thread only */
        bool stop;
        bool closed;
        LibvirtWatchStats stats; /* loop only, except connects */
        unsigned connects;       /* atomic */
};

bool libvirt_owner_is_domain(const char *owner) {
        if (!owner || strlen(owner) != 36)
                return false;
        for (size_t i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;

                if (dash ? owner[i] != '-' : !(g_ascii_isdigit(owner[i]) || (owner[i] >= 'a' && owner[i] <= 'f')))
                        return false;
        }
        return true;
}

static void msg_free(WatchMsg *m) {
        if (m->uuids)
                g_ptr_array_unref(m->uuids);
        g_free(m);
}

/* ---- on the libvirt thread ---- */

static void post(LibvirtWatch *w, WatchMsg *m) {
        char c = 1;

        g_mutex_lock(&w->lock);
        g_queue_push_tail(&w->queue, m);
        g_mutex_unlock(&w->lock);
        (void) !write(w->post_fd[1], &c, 1);
}

static void quiet_errors(void *userdata, virErrorPtr e) {
        /* libvirt prints every error to stderr by default; the caller of
         * each API logs what matters. */
}

static const char *last_error(void) {
        virErrorPtr e = virGetLastError();

        return e && e->message ? e->message : "unknown error";
}

static void reconcile(LibvirtWatch *w, virConnectPtr conn) {
        virDomainPtr *doms = NULL;
        WatchMsg *m;
        uint64_t t0 = now_usec();
        int n;

        n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0) {
                log_warning("libvirt: cannot list running domains: %s", last_error());
                w->closed = true; /* reconnect and try again */
                return;
        }
        m = g_new0(WatchMsg, 1);
        m->type = MSG_RECONCILE;
        m->t0 = t0;
        m->uuids = g_ptr_array_new_with_free_func(g_free);
        for (int i = 0; i < n; i++) {
                char u[VIR_UUID_STRING_BUFLEN];

                if (virDomainGetUUIDString(doms[i], u) == 0)
                        g_ptr_array_add(m->uuids, g_ascii_strdown(u, -1));
                virDomainFree(doms[i]);
        }
        free(doms);
        post(w, m);
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque) {
        LibvirtWatch *w = opaque;
        char u[VIR_UUID_STRING_BUFLEN];
        uint64_t t0;
        WatchMsg *m;
        int active;

        if (event != VIR_DOMAIN_EVENT_STOPPED && event != VIR_DOMAIN_EVENT_UNDEFINED)
                return 0;
        if (virDomainGetUUIDString(dom, u) < 0)
                return 0;
        /* The event may be late: the domain can be running again, with new
         * allocations. Ask now, and spare whatever is newer than the
         * question. An undefined domain may still run (transient). */
        t0 = now_usec();
        active = virDomainIsActive(dom);
        if (active == 1)
                return 0;
        if (active < 0) {
                virErrorPtr e = virGetLastError();
                if (!e || e->code != VIR_ERR_NO_DOMAIN) {
                        log_warning("libvirt: cannot tell whether domain %s still runs: %s", u, last_error());
                        return 0;
                }
        }
        m = g_new0(WatchMsg, 1);
        m->type = MSG_DOMAIN_GONE;
        m->t0 = t0;
        m->uuids = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_add(m->uuids, g_ascii_strdown(u, -1));
        post(w, m);
        return 0;
}

static void on_close(virConnectPtr conn, int reason, void *opaque) {
        LibvirtWatch *w = opaque;

        w->closed = true;
}

static void on_wake(int watch, int fd, int events, void *opaque) {
        LibvirtWatch *w = opaque;
        char buf[16];

        (void) !read(fd, buf, sizeof buf);
        w->stop = true;
}

/* Sleeps msec unless told to stop. */
static void backoff_wait(LibvirtWatch *w, int msec) {
        struct pollfd p = { .fd = w->wake_fd[0], .events = POLLIN };

        if (poll(&p, 1, msec) > 0)
                w->stop = true;
}

static void *watch_thread(void *userdata) {
        LibvirtWatch *w = userdata;
        int backoff = BACKOFF_MIN_MSEC, wake;
        bool warned = false;

        wake = virEventAddHandle(w->wake_fd[0], VIR_EVENT_HANDLE_READABLE, on_wake, w, NULL);
        while (!w->stop) {
                virConnectPtr conn = virConnectOpenReadOnly(w->uri);
                int cb;

                if (!conn) {
                        if (!warned)
                                log_warning("libvirt: cannot connect to %s: %s; retrying", w->uri, last_error());
                        warned = true;
                        backoff_wait(w, backoff);
                        backoff = MIN(backoff * 2, BACKOFF_MAX_MSEC);
                        continue;
                }
                warned = false;
                backoff = BACKOFF_MIN_MSEC;
                w->closed = false;
                (void) virConnectRegisterCloseCallback(conn, on_close, w, NULL);
                /* A libvirt daemon that hangs counts as gone after ~15 s. */
                (void) virConnectSetKeepAlive(conn, 5, 3);
                cb = virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                      VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), w, NULL);
                if (cb < 0) {
                        log_warning("libvirt: cannot watch domain events on %s: %s", w->uri, last_error());
                        w->closed = true;
                } else {
                        WatchMsg *m = g_new0(WatchMsg, 1);

                        g_atomic_int_inc(&w->connects);
                        m->type = MSG_CONNECTED;
                        post(w, m);
                        /* Events from now on; then what already happened. */
                        reconcile(w, conn);
                }
                while (!w->stop && !w->closed)
                        if (virEventRunDefaultImpl() < 0)
                                break;
                if (cb >= 0)
                        (void) virConnectDomainEventDeregisterAny(conn, cb);
                (void) virConnectUnregisterCloseCallback(conn, on_close);
                virConnectClose(conn);
                if (!w->stop) {
                        log_warning("libvirt: connection to %s lost; reconnecting", w->uri);
                        backoff_wait(w, backoff);
                }
        }
        if (wake >= 0)
                virEventRemoveHandle(wake);
        return NULL;
}

/* ---- on the daemon's event loop ---- */

static void release_done(unsigned count, const GError *error, void *userdata) {
        char *what = userdata;

        if (error)
                log_warning("libvirt: releasing %s failed: %s", what, error->message);
        g_free(what);
}

/* Releases (or reports) the allocations of owners for which gone() says
 * the domain does not run, made before t0. */
static void release_where(LibvirtWatch *w, uint64_t t0, GPtrArray *uuids, bool uuids_are_running) {
        g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func(g_free);
        GPtrArray *all = broker_list_allocations(w->broker);

        for (guint i = 0; i < all->len; i++) {
                Allocation *a = all->pdata[i];
                const char *owner = a->rec->owner;
                bool listed;

                if (!libvirt_owner_is_domain(owner) || a->rec->state != ALLOCATION_ACTIVE || a->busy)
                        continue;
                if (a->rec->created_usec >= t0)
                        continue;
                listed = g_ptr_array_find_with_equal_func(uuids, owner, g_str_equal, NULL);
                if (listed == uuids_are_running)
                        continue;
                g_ptr_array_add(ids, g_strdup(a->rec->id));
        }
        g_ptr_array_unref(all);

        for (guint i = 0; i < ids->len; i++) {
                g_autoptr(GError) error = NULL;
                Allocation *a = broker_find_allocation(w->broker, ids->pdata[i]);
                char sz[FORMAT_SIZE_MAX];
                char *what;

                if (!a)
                        continue;
                format_size(allocation_size(a), sz, sizeof sz);
                if (w->report_only) {
                        log_warning("libvirt: allocation %s (%s, label '%s') belongs to domain %s, which is not "
                                    "running; not released (LibvirtOrphans=report)", a->rec->id, sz, a->rec->label,
                                    a->rec->owner);
                        w->stats.reported++;
                        continue;
                }
                log_info("libvirt: releasing allocation %s (%s, label '%s') of domain %s, which is not running",
                         a->rec->id, sz, a->rec->label, a->rec->owner);
                what = g_strdup_printf("allocation %s of domain %s", a->rec->id, a->rec->owner);
                if (!broker_release(w->broker, a, release_done, what, &error)) {
                        log_warning("libvirt: cannot release %s: %s", what, error->message);
                        g_free(what);
                        continue;
                }
                w->stats.released++;
        }
}

static int on_post(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        LibvirtWatch *w = userdata;
        char buf[64];

        while (read(fd, buf, sizeof buf) > 0)
                ;
        for (;;) {
                WatchMsg *m;

                g_mutex_lock(&w->lock);
                m = g_queue_pop_head(&w->queue);
                g_mutex_unlock(&w->lock);
                if (!m)
                        break;
                switch (m->type) {
                case MSG_CONNECTED:
                        log_info("libvirt: watching %s", w->uri);
                        break;
                case MSG_RECONCILE:
                        release_where(w, m->t0, m->uuids, true);
                        w->stats.reconciles++;
                        break;
                case MSG_DOMAIN_GONE:
                        release_where(w, m->t0, m->uuids, false);
                        w->stats.events++;
                        break;
                }
                msg_free(m);
        }
        return 0;
}

static gpointer register_event_impl(gpointer unused) {
        virSetErrorFunc(NULL, quiet_errors);
        return GINT_TO_POINTER(virEventRegisterDefaultImpl() == 0 ? 1 : -1);
}

int libvirt_watch_new(sd_event *event, Broker *broker, const char *uri, bool report_only, LibvirtWatch **ret) {
        static GOnce once = G_ONCE_INIT;
        LibvirtWatch *w;
        int r;

        /* libvirt's event implementation is per process. */
        if (GPOINTER_TO_INT(g_once(&once, register_event_impl, NULL)) < 0)
                return -EIO;

        w = g_new0(LibvirtWatch, 1);
        w->event = sd_event_ref(event);
        w->broker = broker;
        w->uri = g_strdup(uri);
        w->report_only = report_only;
        w->post_fd[0] = w->post_fd[1] = w->wake_fd[0] = w->wake_fd[1] = -1;
        g_mutex_init(&w->lock);
        g_queue_init(&w->queue);
        if (pipe2(w->post_fd, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(w->wake_fd, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = -errno;
                libvirt_watch_free(w);
                return r;
        }
        r = sd_event_add_io(event, &w->source, w->post_fd[0], EPOLLIN, on_post, w);
        if (r < 0) {
                libvirt_watch_free(w);
                return r;
        }
        r = -pthread_create(&w->thread, NULL, watch_thread, w);
        if (r < 0) {
                libvirt_watch_free(w);
                return r;
        }
        w->thread_started = true;
        *ret = w;
        return 0;
}

void libvirt_watch_free(LibvirtWatch *w) {
        WatchMsg *m;

        if (!w)
                return;
        if (w->thread_started) {
                char c = 1;

                (void) !write(w->wake_fd[1], &c, 1);
                pthread_join(w->thread, NULL);
        }
        while ((m = g_queue_pop_head(&w->queue)))
                msg_free(m);
        sd_event_source_disable_unref(w->source);
        for (int i = 0; i < 2; i++) {
                if (w->post_fd[i] >= 0)
                        close(w->post_fd[i]);
                if (w->wake_fd[i] >= 0)
                        close(w->wake_fd[i]);
        }
        g_mutex_clear(&w->lock);
        sd_event_unref(w->event);
        g_free(w->uri);
        g_free(w);
}

void libvirt_watch_get_stats(LibvirtWatch *w, LibvirtWatchStats *ret) {
        *ret = w->stats;
        ret->connects = (unsigned) g_atomic_int_get(&w->connects);
}
