/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "scrub.h"

#define SCRUB_ALIGN 4096U

typedef struct Method {
        const char *name;
        /* p and len are multiples of 4096. */
        void (*zero)(void *p, size_t len);
        bool (*supported)(void);
} Method;

/* One scrubber_zero() call. It lives on the caller's stack: the caller
 * cannot return before the last chunk is finished, and no thread touches
 * the job after finishing its chunk. */
typedef struct ScrubJob {
        struct ScrubJob *next; /* in the queue while chunks are unclaimed */
        uint8_t *addr;
        size_t len;
        size_t n_chunks;
        size_t claimed;
        size_t finished;
        pthread_cond_t done;
} ScrubJob;

struct Scrubber {
        const Method *method;
        pthread_mutex_t lock;
        pthread_cond_t work;
        /* Jobs with unclaimed chunks. A thread claims one chunk of the head
         * job and moves it to the tail, so concurrent jobs advance in turn
         * and a small job is not stuck behind a large one. */
        ScrubJob *head, *tail;
        bool stopping;
        unsigned n_threads;
        pthread_t threads[];
};

static bool always(void) {
        return true;
}

#if defined(__x86_64__)
/* Non-temporal stores go to memory without first reading each line into
 * the cache (no read-for-ownership) and without evicting what the VMs and
 * the daemon have cached: nobody on this host reads the zeroes back. */
__attribute__((target("avx2"))) static void zero_avx2_nt(void *p, size_t len) {
        const __m256i z = _mm256_setzero_si256();

        for (uint8_t *q = p, *end = q + len; q < end; q += 128) {
                _mm256_stream_si256((__m256i *) q, z);
                _mm256_stream_si256((__m256i *) (q + 32), z);
                _mm256_stream_si256((__m256i *) (q + 64), z);
                _mm256_stream_si256((__m256i *) (q + 96), z);
        }
}

static bool have_avx2(void) {
        /* Also checks that the kernel saves the YMM registers. */
        return __builtin_cpu_supports("avx2");
}

static void zero_sse2_nt(void *p, size_t len) {
        const __m128i z = _mm_setzero_si128();

        for (uint8_t *q = p, *end = q + len; q < end; q += 128)
                for (unsigned i = 0; i < 128; i += 16)
                        _mm_stream_si128((__m128i *) (q + i), z);
}

static void zero_rep_stosb(void *p, size_t len) {
        /* With ERMS/FSRM the microcode writes whole lines, also avoiding
         * read-for-ownership, but the lines stay in the cache. */
        __asm__ volatile("rep stosb" : "+D"(p), "+c"(len) : "a"(0) : "memory");
}
#endif

static void zero_memset(void *p, size_t len) {
        memset(p, 0, len);
}

static const Method methods[] = {
#if defined(__x86_64__)
        { "avx2-nt", zero_avx2_nt, have_avx2 },
        { "sse2-nt", zero_sse2_nt, always },
        { "rep-stosb", zero_rep_stosb, always },
#endif
        { "memset", zero_memset, always },
};

static int method_pick(const Method **ret) {
        const char *name = getenv("DAXBROKER_SCRUB_METHOD");

        if (name && *name) {
                for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
                        if (strcmp(methods[i].name, name) == 0) {
                                if (!methods[i].supported())
                                        return -EOPNOTSUPP;
                                *ret = &methods[i];
                                return 0;
                        }
#if !defined(__x86_64__)
                /* The x86 names are valid everywhere, just not available. */
                if (strcmp(name, "avx2-nt") == 0 || strcmp(name, "sse2-nt") == 0 ||
                    strcmp(name, "rep-stosb") == 0)
                        return -EOPNOTSUPP;
#endif
                return -EINVAL;
        }

        /* The first supported entry: non-temporal stores where the CPU has
         * them. A timed self-test at start-up cannot decide this: a buffer
         * small enough to be quick fits in the last-level cache, where
         * cached stores win, while the ranges scrubbed are gigabytes and
         * cached stores also evict the VMs' working sets. The numbers
         * behind this order are in docs/scrub.md. */
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
                if (methods[i].supported()) {
                        *ret = &methods[i];
                        return 0;
                }
        return -EOPNOTSUPP;
}

static void store_fence(void) {
#if defined(__x86_64__)
        /* Non-temporal stores (also inside fast string operations and
         * glibc's memset for large sizes) are weakly ordered and only this
         * core can order its own; the mutex then publishes them to the
         * caller. */
        _mm_sfence();
#endif
}

static void queue_append(Scrubber *s, ScrubJob *j) {
        j->next = NULL;
        if (s->tail)
                s->tail->next = j;
        else
                s->head = j;
        s->tail = j;
}

static void *scrub_thread(void *p) {
        Scrubber *s = p;

        pthread_mutex_lock(&s->lock);
        for (;;) {
                ScrubJob *j;
                size_t off;

                while (!s->head && !s->stopping)
                        pthread_cond_wait(&s->work, &s->lock);
                if (s->stopping)
                        break;

                j = s->head;
                s->head = j->next;
                if (!s->head)
                        s->tail = NULL;
                off = j->claimed++ * SCRUB_CHUNK_SIZE;
                if (j->claimed < j->n_chunks)
                        queue_append(s, j);
                pthread_mutex_unlock(&s->lock);

                s->method->zero(j->addr + off,
                                j->len - off < SCRUB_CHUNK_SIZE ? j->len - off : SCRUB_CHUNK_SIZE);
                store_fence();

                pthread_mutex_lock(&s->lock);
                if (++j->finished == j->n_chunks)
                        pthread_cond_signal(&j->done);
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

static unsigned default_threads(void) {
        cpu_set_t set;
        long n;

        /* The CPUs this process may use (CPUAffinity=, cpusets), not all
         * that are online: more threads than those would only time-slice. */
        if (sched_getaffinity(0, sizeof(set), &set) == 0)
                n = CPU_COUNT(&set);
        else
                n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1)
                n = 1;
        return n > SCRUB_THREADS_DEFAULT_MAX ? SCRUB_THREADS_DEFAULT_MAX : (unsigned) n;
}

static void scrubber_stop(Scrubber *s, unsigned started) {
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->work);
        pthread_mutex_unlock(&s->lock);
        for (unsigned i = 0; i < started; i++)
                pthread_join(s->threads[i], NULL);
        pthread_cond_destroy(&s->work);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

int scrubber_new(unsigned threads, Scrubber **ret) {
        const Method *method;
        sigset_t all, saved;
        Scrubber *s;
        unsigned i;
        int r;

        if (threads > SCRUB_THREADS_MAX)
                return -EINVAL;
        if (threads == 0)
                threads = default_threads();
        r = method_pick(&method);
        if (r < 0)
                return r;

        s = calloc(1, sizeof(Scrubber) + threads * sizeof(pthread_t));
        if (!s)
                return -ENOMEM;
        s->method = method;
        s->n_threads = threads;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->work, NULL);

        /* The threads inherit the mask: process-directed signals (SIGTERM,
         * SIGHUP for sd-event) must reach the daemon's own threads. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        for (i = 0; i < threads; i++) {
                r = -pthread_create(&s->threads[i], NULL, scrub_thread, s);
                if (r < 0)
                        break;
                pthread_setname_np(s->threads[i], "daxbroker-scrub");
        }
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0) {
                scrubber_stop(s, i);
                return r;
        }

        *ret = s;
        return 0;
}

void scrubber_free(Scrubber *s) {
        if (s)
                scrubber_stop(s, s->n_threads);
}

int scrubber_zero(Scrubber *s, void *addr, size_t len) {
        ScrubJob j = {
                .addr = addr,
                .len = len,
                .n_chunks = (len + SCRUB_CHUNK_SIZE - 1) / SCRUB_CHUNK_SIZE,
        };

        if ((uintptr_t) addr % SCRUB_ALIGN != 0 || len % SCRUB_ALIGN != 0)
                return -EINVAL;
        if (len == 0)
                return 0;

        pthread_cond_init(&j.done, NULL);
        pthread_mutex_lock(&s->lock);
        queue_append(s, &j);
        pthread_cond_broadcast(&s->work);
        while (j.finished < j.n_chunks)
                pthread_cond_wait(&j.done, &s->lock);
        pthread_mutex_unlock(&s->lock);
        pthread_cond_destroy(&j.done);
        return 0;
}

const char *scrubber_method(const Scrubber *s) {
        return s->method->name;
}

unsigned scrubber_threads(const Scrubber *s) {
        return s->n_threads;
}
