/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * bench-util: what the benchmark programs share: a monotonic clock, sample
 * series with median and mean, size parsing and the one result line format
 * that bench/report.awk reads.
 *
 * A result line is
 *   result tool=T kernel=K size=BYTES held=N op=OP n=N median_us=M mean_us=A min_us=X max_us=Y
 * where held counts the devices or allocations kept alive, besides the one
 * being measured, while the series was taken.
 */

#include <stddef.h>
#include <stdint.h>

#define BENCH_KiB (UINT64_C(1) << 10)
#define BENCH_MiB (UINT64_C(1) << 20)
#define BENCH_GiB (UINT64_C(1) << 30)

/* Microseconds of CLOCK_MONOTONIC. */
double bench_now_us(void);

typedef struct BenchSeries {
        double *v;
        size_t n;
        size_t allocated;
} BenchSeries;

void bench_series_add(BenchSeries *s, double us);
void bench_series_reset(BenchSeries *s);
void bench_series_free(BenchSeries *s);
double bench_series_median(const BenchSeries *s);
double bench_series_mean(const BenchSeries *s);

/* Sleeps ms milliseconds (none for 0). A pause longer than an RCU grace
 * period between two kernel operations makes each of them pay the
 * synchronize_rcu() in mem_hotplug_begin() (percpu_down_write() of
 * mem_hotplug_lock), which back-to-back operations skip: paused series
 * show that cost, and are reported as tool "T-paused". */
void bench_pause_ms(unsigned ms);

/* Prints one result line (nothing for an empty series). */
void bench_print(const char *tool, uint64_t size, unsigned held, const char *op, const BenchSeries *s);

/* "2M", "1G", "4096", "0x200000": returns 0 or -EINVAL. */
int bench_parse_size(const char *s, uint64_t *ret);
/* A comma-separated list of sizes, at most max entries. */
int bench_parse_sizes(const char *s, uint64_t *ret, size_t max, size_t *ret_n);
int bench_parse_unsigned(const char *s, unsigned *ret);

/* "2 MiB", "1 GiB" for messages. */
const char *bench_size_str(uint64_t size, char *buf, size_t len);
