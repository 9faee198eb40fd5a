/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * scrub: the zeroing engine. It owns a fixed pool of threads, created once,
 * and the choice of how memory is zeroed (non-temporal stores, rep stosb or
 * memset), and it zeroes one mapped range at a time per caller at memory
 * bandwidth: the range is cut into chunks that every thread pulls from, and
 * concurrent callers share the threads chunk by chunk. It knows nothing
 * about devices, allocations or which ranges are dirty; the broker decides
 * what to scrub and when, and maps the memory before asking.
 */

#include <stddef.h>

/* Work unit the threads pull; a range shorter than this is one unit. */
#define SCRUB_CHUNK_SIZE ((size_t) 2 << 20)
/* The default thread count (online CPUs) is capped here: a few threads
 * saturate a memory controller and more only take CPUs from the VMs. */
#define SCRUB_THREADS_DEFAULT_MAX 16U
/* Upper bound for an explicit thread count. */
#define SCRUB_THREADS_MAX 256U

typedef struct Scrubber Scrubber;

/* threads: 0 means the number of online CPUs, at most
 * SCRUB_THREADS_DEFAULT_MAX. The method is chosen here (see scrub.c);
 * $DAXBROKER_SCRUB_METHOD names one instead, for benchmarks and tests:
 * -EINVAL for an unknown name, -EOPNOTSUPP if this CPU lacks it. */
int scrubber_new(unsigned threads, Scrubber **ret);
/* No scrubber_zero() may be running. */
void scrubber_free(Scrubber *s);

/* Zeroes [addr, addr+len) on all threads and returns when every byte is
 * globally visible as zero: 0, or -EINVAL if addr or len is not 4096-aligned.
 * Thread-safe; concurrent calls share the threads fairly. */
int scrubber_zero(Scrubber *s, void *addr, size_t len);

/* "avx2-nt", "sse2-nt", "rep-stosb" or "memset". */
const char *scrubber_method(const Scrubber *s);
/* Number of threads in the pool. */
unsigned scrubber_threads(const Scrubber *s);
