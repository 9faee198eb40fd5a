/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "bench-util.h"

double bench_now_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

void bench_pause_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (ms > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

void bench_series_add(BenchSeries *s, double us) {
        if (s->n == s->allocated) {
                size_t want = s->allocated ? s->allocated * 2 : 64;
                double *p = realloc(s->v, want * sizeof(double));

                if (!p) {
                        fprintf(stderr, "out of memory\n");
                        exit(EXIT_FAILURE);
                }
                s->v = p;
                s->allocated = want;
        }
        s->v[s->n++] = us;
}

void bench_series_reset(BenchSeries *s) {
        s->n = 0;
}

void bench_series_free(BenchSeries *s) {
        free(s->v);
        *s = (BenchSeries) {};
}

static int double_compare(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;

        return x < y ? -1 : x > y;
}

double bench_series_median(const BenchSeries *s) {
        double *c, m;

        if (s->n == 0)
                return 0;
        c = malloc(s->n * sizeof(double));
        if (!c) {
                fprintf(stderr, "out of memory\n");
                exit(EXIT_FAILURE);
        }
        memcpy(c, s->v, s->n * sizeof(double));
        qsort(c, s->n, sizeof(double), double_compare);
        m = s->n % 2 ? c[s->n / 2] : (c[s->n / 2 - 1] + c[s->n / 2]) / 2;
        free(c);
        return m;
}

double bench_series_mean(const BenchSeries *s) {
        double sum = 0;

        if (s->n == 0)
                return 0;
        for (size_t i = 0; i < s->n; i++)
                sum += s->v[i];
        return sum / (double) s->n;
}

void bench_print(const char *tool, uint64_t size, unsigned held, const char *op, const BenchSeries *s) {
        double lo, hi;
        struct utsname u;

        if (s->n == 0)
                return;
        lo = hi = s->v[0];
        for (size_t i = 1; i < s->n; i++) {
                lo = s->v[i] < lo ? s->v[i] : lo;
                hi = s->v[i] > hi ? s->v[i] : hi;
        }
        if (uname(&u) < 0)
                strcpy(u.release, "unknown");
        printf("result tool=%s kernel=%s size=%" PRIu64 " held=%u op=%s n=%zu median_us=%.1f mean_us=%.1f "
               "min_us=%.1f max_us=%.1f\n",
               tool, u.release, size, held, op, s->n, bench_series_median(s), bench_series_mean(s), lo, hi);
        fflush(stdout);
}

int bench_parse_size(const char *s, uint64_t *ret) {
        unsigned long long v;
        uint64_t mult = 1;
        char *end;

        if (!s || !*s || *s == '-')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno != 0 || end == s)
                return -EINVAL;
        switch (*end) {
        case 0:
                break;
        case 'K':
        case 'k':
                mult = BENCH_KiB;
                end++;
                break;
        case 'M':
        case 'm':
                mult = BENCH_MiB;
                end++;
                break;
        case 'G':
        case 'g':
                mult = BENCH_GiB;
                end++;
                break;
        default:
                return -EINVAL;
        }
        if (*end != 0 || v == 0 || v > UINT64_MAX / mult)
                return -EINVAL;
        *ret = v * mult;
        return 0;
}

int bench_parse_sizes(const char *s, uint64_t *ret, size_t max, size_t *ret_n) {
        char *copy = strdup(s), *save = NULL;
        size_t n = 0;
        int r = 0;

        if (!copy)
                return -ENOMEM;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (n >= max) {
                        r = -E2BIG;
                        break;
                }
                r = bench_parse_size(t, &ret[n]);
                if (r < 0)
                        break;
                n++;
        }
        free(copy);
        if (r == 0 && n == 0)
                r = -EINVAL;
        if (r == 0)
                *ret_n = n;
        return r;
}

int bench_parse_unsigned(const char *s, unsigned *ret) {
        unsigned long v;
        char *end;

        if (!s || !*s || *s == '-')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != 0 || v > UINT32_MAX)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

const char *bench_size_str(uint64_t size, char *buf, size_t len) {
        if (size >= BENCH_GiB && size % BENCH_GiB == 0)
                snprintf(buf, len, "%" PRIu64 " GiB", size / BENCH_GiB);
        else if (size >= BENCH_MiB && size % BENCH_MiB == 0)
                snprintf(buf, len, "%" PRIu64 " MiB", size / BENCH_MiB);
        else
                snprintf(buf, len, "%" PRIu64 " B", size);
        return buf;
}
