/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <glib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "scrub.h"
#include "util.h"

#define PAGE 4096U
#define AREA_SIZE (64 * MiB)
#define PATTERN 0xa5

static const char *const method_names[] = { "avx2-nt", "sse2-nt", "rep-stosb", "memset" };

/* AREA_SIZE of pattern between two PROT_NONE pages, so a write past either
 * end faults instead of passing unnoticed. */
static uint8_t *area_new(void) {
        uint8_t *p = mmap(NULL, AREA_SIZE + 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        g_assert_true(p != MAP_FAILED);
        g_assert_cmpint(mprotect(p, PAGE, PROT_NONE), ==, 0);
        g_assert_cmpint(mprotect(p + PAGE + AREA_SIZE, PAGE, PROT_NONE), ==, 0);
        return p + PAGE;
}

static void area_free(uint8_t *a) {
        g_assert_cmpint(munmap(a - PAGE, AREA_SIZE + 2 * PAGE), ==, 0);
}

/* Index of the first byte in [p, p+len) that is not c, or len. */
static size_t first_not(const uint8_t *p, size_t len, uint8_t c) {
        for (size_t i = 0; i < len; i++)
                if (p[i] != c)
                        return i;
        return len;
}

/* [off, off+len) of a is zero and the rest of [lo, hi) still the pattern. */
static void assert_scrubbed(const uint8_t *a, size_t lo, size_t hi, size_t off, size_t len) {
        g_assert_cmpuint(first_not(a + lo, off - lo, PATTERN), ==, off - lo);
        g_assert_cmpuint(first_not(a + off, len, 0), ==, len);
        g_assert_cmpuint(first_not(a + off + len, hi - off - len, PATTERN), ==, hi - off - len);
}

static int scrubber_new_with(const char *method, unsigned threads, Scrubber **ret) {
        int r;

        /* libc's setenv(): g_setenv() warns once any thread ever existed,
         * but every scrubber thread of earlier tests has been joined. */
        g_assert_cmpint(setenv("DAXBROKER_SCRUB_METHOD", method, 1), ==, 0);
        r = scrubber_new(threads, ret);
        g_assert_cmpint(unsetenv("DAXBROKER_SCRUB_METHOD"), ==, 0);
        return r;
}

static void test_method(const void *data) {
        const char *method = data;
        /* Offsets and lengths around the chunk size: below one chunk, one
         * page, exactly one chunk, odd chunk counts, a partial last chunk,
         * ranges not starting on a chunk boundary, and both ends of the
         * area. */
        static const struct {
                size_t off, len;
        } cases[] = {
                { PAGE, PAGE },
                { 3 * PAGE, SCRUB_CHUNK_SIZE / 2 + PAGE },
                { 0, SCRUB_CHUNK_SIZE },
                { 2 * SCRUB_CHUNK_SIZE, 3 * SCRUB_CHUNK_SIZE },
                { SCRUB_CHUNK_SIZE + PAGE, 5 * SCRUB_CHUNK_SIZE - 2 * PAGE },
                { 7 * PAGE, 9 * SCRUB_CHUNK_SIZE + PAGE },
                { AREA_SIZE - 3 * SCRUB_CHUNK_SIZE - PAGE, 3 * SCRUB_CHUNK_SIZE + PAGE },
                { 0, AREA_SIZE },
        };
        Scrubber *s;
        uint8_t *a;
        int r;

        /* Three threads: chunk counts that do not divide evenly. */
        r = scrubber_new_with(method, 3, &s);
        if (r == -EOPNOTSUPP) {
                g_test_skip("method not supported on this CPU");
                return;
        }
        g_assert_cmpint(r, ==, 0);
        g_assert_cmpstr(scrubber_method(s), ==, method);
        g_assert_cmpuint(scrubber_threads(s), ==, 3);

        a = area_new();
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                memset(a, PATTERN, AREA_SIZE);
                g_assert_cmpint(scrubber_zero(s, a + cases[i].off, cases[i].len), ==, 0);
                assert_scrubbed(a, 0, AREA_SIZE, cases[i].off, cases[i].len);
        }
        area_free(a);
        scrubber_free(s);
}

static void test_invalid(void) {
        Scrubber *s;
        uint8_t *a;

        g_assert_cmpint(scrubber_new(SCRUB_THREADS_MAX + 1, &s), ==, -EINVAL);
        g_assert_cmpint(scrubber_new_with("bzero", 1, &s), ==, -EINVAL);

        g_assert_cmpint(scrubber_new(1, &s), ==, 0);
        a = area_new();
        memset(a, PATTERN, 4 * PAGE);
        g_assert_cmpint(scrubber_zero(s, a + 64, PAGE), ==, -EINVAL);
        g_assert_cmpint(scrubber_zero(s, a, PAGE + 64), ==, -EINVAL);
        g_assert_cmpint(scrubber_zero(s, a + PAGE, 0), ==, 0);
        g_assert_cmpuint(first_not(a, 4 * PAGE, PATTERN), ==, 4 * PAGE);
        area_free(a);
        scrubber_free(s);
}

static void test_default(void) {
        Scrubber *s;

        g_assert_cmpint(unsetenv("DAXBROKER_SCRUB_METHOD"), ==, 0);
        g_assert_cmpint(scrubber_new(0, &s), ==, 0);
        g_assert_cmpuint(scrubber_threads(s), >=, 1);
        g_assert_cmpuint(scrubber_threads(s), <=, SCRUB_THREADS_DEFAULT_MAX);
#if defined(__x86_64__)
        g_assert_cmpstr(scrubber_method(s), ==, __builtin_cpu_supports("avx2") ? "avx2-nt" : "sse2-nt");
#else
        g_assert_cmpstr(scrubber_method(s), ==, "memset");
#endif
        scrubber_free(s);
}

typedef struct Caller {
        Scrubber *s;
        uint8_t *addr;
        size_t len;
} Caller;

#define CALLER_ROUNDS 20

static void *caller_run(void *p) {
        Caller *c = p;

        for (unsigned i = 0; i < CALLER_ROUNDS; i++) {
                memset(c->addr, PATTERN, c->len);
                g_assert_cmpint(scrubber_zero(c->s, c->addr, c->len), ==, 0);
                g_assert_cmpuint(first_not(c->addr, c->len, 0), ==, c->len);
        }
        return NULL;
}

static void test_concurrent(void) {
        /* Disjoint ranges with a pattern page between them: one page, less
         * than a chunk, odd chunk counts, one not starting on a chunk. */
        static const size_t lens[] = {
                PAGE,
                SCRUB_CHUNK_SIZE - PAGE,
                3 * SCRUB_CHUNK_SIZE,
                9 * SCRUB_CHUNK_SIZE + PAGE,
                11 * SCRUB_CHUNK_SIZE,
        };
        Caller callers[G_N_ELEMENTS(lens)];
        GThread *threads[G_N_ELEMENTS(lens)];
        size_t off = PAGE;
        Scrubber *s;
        uint8_t *a;

        g_assert_cmpint(scrubber_new(2, &s), ==, 0);
        a = area_new();
        memset(a, PATTERN, AREA_SIZE);
        for (size_t i = 0; i < G_N_ELEMENTS(lens); i++) {
                callers[i] = (Caller) { .s = s, .addr = a + off, .len = lens[i] };
                off += lens[i] + PAGE;
        }
        g_assert_cmpuint(off, <=, AREA_SIZE);

        for (size_t i = 0; i < G_N_ELEMENTS(lens); i++)
                threads[i] = g_thread_new("caller", caller_run, &callers[i]);
        for (size_t i = 0; i < G_N_ELEMENTS(lens); i++)
                g_thread_join(threads[i]);

        /* Every gap page, and everything after the last range, is intact. */
        off = 0;
        for (size_t i = 0; i < G_N_ELEMENTS(lens); i++) {
                g_assert_cmpuint(first_not(a + off, PAGE, PATTERN), ==, PAGE);
                off += PAGE + lens[i];
        }
        g_assert_cmpuint(first_not(a + off, AREA_SIZE - off, PATTERN), ==, AREA_SIZE - off);
        area_free(a);
        scrubber_free(s);
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        for (size_t i = 0; i < G_N_ELEMENTS(method_names); i++) {
                g_autofree char *path = g_strdup_printf("/scrub/method/%s", method_names[i]);

                g_test_add_data_func(path, method_names[i], test_method);
        }
        g_test_add_func("/scrub/invalid", test_invalid);
        g_test_add_func("/scrub/default", test_default);
        g_test_add_func("/scrub/concurrent", test_concurrent);
        return g_test_run();
}
