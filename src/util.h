/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * util: small helpers shared by every layer: sizes, sysfs-style file
 * reads and writes that keep the kernel's errno, name validation.
 */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

#define NAME_MAX_BYTES 255

static inline void freep(void *p) {
        free(*(void **) p);
}
static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ __attribute__((cleanup(freep)))
#define _cleanup_close_ __attribute__((cleanup(closep)))

static inline uint64_t round_up_u64(uint64_t v, uint64_t a) {
        return a ? (v + a - 1) / a * a : v;
}
static inline uint64_t round_down_u64(uint64_t v, uint64_t a) {
        return a ? v / a * a : v;
}
static inline uint64_t max_u64(uint64_t a, uint64_t b) {
        return a > b ? a : b;
}
static inline uint64_t min_u64(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

/* "1.5 GiB", "512 MiB", "4 KiB", "0 B": into buf. */
const char *format_size(uint64_t bytes, char *buf, size_t len);
#define FORMAT_SIZE_MAX 32

/* Writes value to a sysfs attribute in one write(); returns 0 or the
 * kernel's -errno. */
int write_attr(const char *path, const char *value);
/* Reads an attribute, trailing newline stripped; *ret malloc()ed. */
int read_attr(const char *path, char **ret);
/* Reads an attribute as unsigned (decimal or 0x hex). */
int read_attr_u64(const char *path, uint64_t *ret);
int read_attr_int(const char *path, int *ret);

/* Owner and label names: 1..255 bytes, valid UTF-8, no control characters.
 * Returns NULL if valid, else a static message saying what is wrong. */
const char *name_invalid_reason(const char *s);

/* Makes a name safe as one path component: '/' and a leading '.' are
 * escaped as \xNN, as are backslashes. Returns malloc()ed string. */
char *path_component_escape(const char *s);
/* strlen() of path_component_escape(s). */
size_t path_component_escaped_len(const char *s);
/* Like name_invalid_reason(), and refuses a name whose escaped form would
 * not fit in one file name (NAME_MAX): every owner and label of a new
 * allocation must be able to get its stable path. */
const char *link_name_invalid_reason(const char *s);

uint64_t now_usec(void);
