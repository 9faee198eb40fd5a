/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <glib.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* sysfs attributes are at most a page; anything this big is not one. */
#define ATTR_SIZE_MAX (1024 * 1024)

const char *format_size(uint64_t bytes, char *buf, size_t len) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };

        /* Walk down from the largest unit that fits until the value is
         * exact: "1.5 GiB" is exact, "1.001953125 GiB" is not, so that one
         * becomes "1026 MiB". Bytes are always exact. Only .25, .5 and .75
         * are exact with two decimals for a power-of-two unit. */
        for (int i = G_N_ELEMENTS(units) - 1; i > 0; i--) {
                uint64_t unit = UINT64_C(1) << (10 * i);
                uint64_t whole = bytes / unit, frac = bytes % unit;

                if (whole == 0)
                        continue;
                if (frac == 0)
                        snprintf(buf, len, "%" PRIu64 " %s", whole, units[i]);
                else if (frac % (unit / 2) == 0)
                        snprintf(buf, len, "%" PRIu64 ".5 %s", whole, units[i]);
                else if (frac % (unit / 4) == 0)
                        snprintf(buf, len, "%" PRIu64 ".%02u %s", whole,
                                 (unsigned) (frac / (unit / 4) * 25), units[i]);
                else
                        continue;
                return buf;
        }

        snprintf(buf, len, "%" PRIu64 " B", bytes);
        return buf;
}

int write_attr(const char *path, const char *value) {
        _cleanup_close_ int fd = -EBADF;
        size_t n = strlen(value);
        ssize_t k;

        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;

        /* One write() carries the whole value: sysfs store handlers see
         * exactly one call, and its errno is the kernel's verdict. */
        k = write(fd, value, n);
        if (k < 0)
                return -errno;
        if ((size_t) k != n)
                return -EIO;

        return 0;
}

int read_attr(const char *path, char **ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, allocated = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;

        /* st_size of a sysfs file is not its content length: read to EOF. */
        for (;;) {
                ssize_t k;

                if (allocated - size < 2) {
                        size_t want = allocated ? allocated * 2 : 4096;
                        char *p;

                        if (want > ATTR_SIZE_MAX)
                                return -EFBIG;
                        p = realloc(buf, want);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        allocated = want;
                }

                k = read(fd, buf + size, allocated - size - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                size += k;
        }

        buf[size] = 0;
        if (size > 0 && buf[size - 1] == '\n')
                buf[size - 1] = 0;

        *ret = buf;
        buf = NULL;
        return 0;
}

/* Decimal or 0x hex, nothing else: no sign, no whitespace, no octal. */
static int parse_u64(const char *s, uint64_t *ret) {
        int base = 10;
        char *end;
        unsigned long long v;

        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                base = 16;
                s += 2;
        }
        if (!g_ascii_isxdigit(s[0]) || (base == 10 && !g_ascii_isdigit(s[0])))
                return -EINVAL;

        errno = 0;
        v = strtoull(s, &end, base);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end != 0)
                return -EINVAL;

        *ret = v;
        return 0;
}

int read_attr_u64(const char *path, uint64_t *ret) {
        _cleanup_free_ char *s = NULL;
        int r;

        r = read_attr(path, &s);
        if (r < 0)
                return r;

        return parse_u64(s, ret);
}

int read_attr_int(const char *path, int *ret) {
        _cleanup_free_ char *s = NULL;
        char *end;
        long v;
        int r;

        r = read_attr(path, &s);
        if (r < 0)
                return r;

        if (!g_ascii_isdigit(s[0]) && !(s[0] == '-' && g_ascii_isdigit(s[1])))
                return -EINVAL;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno == ERANGE || v < INT_MIN || v > INT_MAX)
                return -ERANGE;
        if (*end != 0)
                return -EINVAL;

        *ret = (int) v;
        return 0;
}

const char *name_invalid_reason(const char *s) {
        size_t n;

        if (!s || !s[0])
                return "must not be empty";

        n = strlen(s);
        if (n > NAME_MAX_BYTES)
                return "is longer than 255 bytes";
        if (!g_utf8_validate(s, n, NULL))
                return "is not valid UTF-8";

        /* C0, DEL and the C1 block: they would garble logs and terminals. */
        for (const char *p = s; *p; p = g_utf8_next_char(p))
                if (g_unichar_iscntrl(g_utf8_get_char(p)))
                        return "contains control characters";

        return NULL;
}

char *path_component_escape(const char *s) {
        size_t n = strlen(s);
        char *ret, *t;

        /* Worst case every byte becomes "\xNN". */
        ret = malloc(n * 4 + 1);
        if (!ret)
                return NULL;

        t = ret;
        for (const char *p = s; *p; p++) {
                if (*p == '/' || *p == '\\' || (p == s && *p == '.'))
                        t += sprintf(t, "\\x%02x", (unsigned char) *p);
                else
                        *t++ = *p;
        }
        *t = 0;

        return ret;
}

size_t path_component_escaped_len(const char *s) {
        size_t n = 0;

        for (const char *p = s; *p; p++)
                n += (*p == '/' || *p == '\\' || (p == s && *p == '.')) ? 4 : 1;
        return n;
}

const char *link_name_invalid_reason(const char *s) {
        const char *why = name_invalid_reason(s);

        if (why)
                return why;
        if (path_component_escaped_len(s) > NAME_MAX_BYTES)
                return "is longer than 255 bytes once escaped as a file name under /run/daxbroker/owners "
                       "('/', '\\' and a leading '.' take 4 bytes each)";
        return NULL;
}

/* Wall clock: the value is recorded (CreatedUSec) and shown to people. */
uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000;
}
