/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <glib.h>

#include "worker.h"

typedef struct Job {
        Worker *worker;
        WorkerFunc fn;
        WorkerDone done;
        void *data;
} Job;

struct Worker {
        sd_event_source *source;
        int efd;
        GHashTable *lanes; /* lane id -> GThreadPool* (one thread each) */
        GAsyncQueue *finished;
        unsigned pending;
};

static void job_run(void *p, void *user_data) {
        Job *j = p;
        Worker *w = j->worker;
        uint64_t one = 1;

        j->fn(j->data);
        /* Once pushed, the job belongs to the loop thread, which may free
         * it at once (worker_drain): j must not be touched after this. */
        g_async_queue_push(w->finished, j);
        /* The loop only needs to wake; a full counter still wakes it. */
        (void) !write(w->efd, &one, sizeof(one));
}

static void worker_dispatch_finished(Worker *w) {
        Job *j;

        while ((j = g_async_queue_try_pop(w->finished))) {
                w->pending--;
                j->done(j->data);
                g_free(j);
        }
}

static int on_wakeup(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        uint64_t n;

        (void) !read(fd, &n, sizeof(n));
        worker_dispatch_finished(w);
        return 0;
}

static void lane_free(void *p) {
        /* Waits for queued jobs, so nothing runs after the worker is gone. */
        g_thread_pool_free(p, FALSE, TRUE);
}

int worker_new(sd_event *event, Worker **ret) {
        Worker *w = g_new0(Worker, 1);
        int r;

        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0) {
                r = -errno;
                g_free(w);
                return r;
        }
        w->lanes = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, lane_free);
        w->finished = g_async_queue_new();
        if (event) {
                r = sd_event_add_io(event, &w->source, w->efd, EPOLLIN, on_wakeup, w);
                if (r < 0) {
                        worker_free(w);
                        return r;
                }
        }
        *ret = w;
        return 0;
}

void worker_free(Worker *w) {
        if (!w)
                return;
        worker_drain(w);
        g_hash_table_destroy(w->lanes);
        g_async_queue_unref(w->finished);
        sd_event_source_disable_unref(w->source);
        close(w->efd);
        g_free(w);
}

void worker_submit(Worker *w, unsigned lane, WorkerFunc fn, WorkerDone done, void *data) {
        GThreadPool *pool = g_hash_table_lookup(w->lanes, GUINT_TO_POINTER(lane + 1));
        Job *j = g_new0(Job, 1);

        if (!pool) {
                pool = g_thread_pool_new(job_run, NULL, 1, FALSE, NULL);
                g_hash_table_insert(w->lanes, GUINT_TO_POINTER(lane + 1), pool);
        }
        *j = (Job) { .worker = w, .fn = fn, .done = done, .data = data };
        w->pending++;
        g_thread_pool_push(pool, j, NULL);
}

unsigned worker_pending(Worker *w) {
        return w->pending;
}

void worker_drain(Worker *w) {
        while (w->pending > 0) {
                Job *j = g_async_queue_pop(w->finished);

                w->pending--;
                j->done(j->data);
                g_free(j);
        }
}
