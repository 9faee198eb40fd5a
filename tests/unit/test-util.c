/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>

#include "host-zeroing.h"
#include "util.h"

static char *test_dir;

static void rm_rf(const char *path) {
        GDir *dir = g_dir_open(path, 0, NULL);
        const char *name;

        if (!dir) {
                g_assert_cmpint(g_unlink(path), ==, 0);
                return;
        }
        while ((name = g_dir_read_name(dir))) {
                g_autofree char *child = g_build_filename(path, name, NULL);

                rm_rf(child);
        }
        g_dir_close(dir);
        g_assert_cmpint(g_rmdir(path), ==, 0);
}

static char *write_temp(const char *name, const char *contents, gssize len) {
        char *path = g_build_filename(test_dir, name, NULL);

        g_assert_true(g_file_set_contents(path, contents, len, NULL));
        return path;
}

static void test_host_zeroing(void) {
        static const char on[] = "CONFIG_X=y\nCONFIG_INIT_ON_ALLOC_DEFAULT_ON=y\n# CONFIG_INIT_ON_FREE_DEFAULT_ON is not set\n";
        static const char off[] = "# CONFIG_INIT_ON_ALLOC_DEFAULT_ON is not set\nCONFIG_Y=m\n";
        static const char both[] = "CONFIG_INIT_ON_ALLOC_DEFAULT_ON=y\nCONFIG_INIT_ON_FREE_DEFAULT_ON=y\n";
        static const struct {
                const char *cmdline, *kconfig;
                bool yes;
        } cases[] = {
                { "BOOT_IMAGE=/vmlinuz root=/dev/vda quiet\n", on, true },   /* Debian's default */
                { "root=/dev/vda init_on_alloc=0\n", on, false },            /* turned off */
                { "init_on_alloc=0 init_on_alloc=1", on, true },             /* the last wins */
                { "root=/dev/vda init_on_alloc=1", off, true },
                { "init_on_alloc=on", off, true },
                { "init_on_alloc=off", on, false },
                { "xinit_on_alloc=1", off, false },                          /* another parameter */
                { "root=/dev/vda", off, false },
                { "root=/dev/vda", both, false },                            /* init_on_free wins */
                { "init_on_free=1", on, false },
                { "init_on_free=0", both, true },
                { "page_poison=1", on, false },
                { "init_on_alloc=1", NULL, false },                          /* init_on_free unknown */
                { "init_on_alloc=1 init_on_free=0", NULL, true },
                { NULL, on, true },
                { NULL, NULL, false },
                { "init_on_alloc=bogus", off, false },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                const char *why = NULL;

                g_assert_cmpint(host_zeroing_parse(cases[i].cmdline, cases[i].kconfig, &why), ==, cases[i].yes);
                g_assert_nonnull(why);
        }
}

static void test_format_size(void) {
        static const struct {
                uint64_t bytes;
                const char *text;
        } cases[] = {
                { 0, "0 B" },
                { 1, "1 B" },
                { 1023, "1023 B" },
                { 1024, "1 KiB" },
                { 1536, "1.5 KiB" },
                { 4097, "4097 B" },
                { 2 * MiB, "2 MiB" },
                { 512 * MiB, "512 MiB" },
                { GiB, "1 GiB" },
                { GiB + 512 * MiB, "1.5 GiB" },
                { GiB + 256 * MiB, "1.25 GiB" },
                { GiB + 768 * MiB, "1.75 GiB" },
                { GiB + 2 * MiB, "1026 MiB" },
                { 64 * GiB, "64 GiB" },
                { 3 * (GiB << 10), "3 TiB" },
                { UINT64_C(1) << 63, "8 EiB" },
                { UINT64_MAX, "18446744073709551615 B" },
        };
        char buf[FORMAT_SIZE_MAX], small[4];

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++)
                g_assert_cmpstr(format_size(cases[i].bytes, buf, sizeof buf), ==, cases[i].text);

        /* Truncates, never overflows. */
        g_assert_cmpstr(format_size(512 * MiB, small, sizeof small), ==, "512");
}

static void test_write_attr(void) {
        g_autofree char *path = write_temp("attr-w", "old", -1);
        g_autofree char *dir = g_build_filename(test_dir, "attr-dir", NULL);
        g_autofree char *missing = g_build_filename(test_dir, "no-such-attr", NULL);
        g_autofree char *contents = NULL;

        g_assert_cmpint(write_attr(path, "2097152"), ==, 0);
        g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
        /* O_WRONLY without O_TRUNC, like sysfs: the value lands at offset 0. */
        g_assert_true(g_str_has_prefix(contents, "2097152"));

        g_assert_cmpint(write_attr(missing, "1"), ==, -ENOENT);
        g_assert_cmpint(g_mkdir(dir, 0700), ==, 0);
        g_assert_cmpint(write_attr(dir, "1"), ==, -EISDIR);

        /* The errno of write() itself reaches the caller unchanged. */
        if (access("/dev/full", W_OK) == 0)
                g_assert_cmpint(write_attr("/dev/full", "1"), ==, -ENOSPC);
}

static void test_read_attr(void) {
        g_autofree char *big_text = g_strnfill(10000, 'x');
        g_autofree char *path = NULL, *s = NULL;
        g_autofree char *missing = g_build_filename(test_dir, "no-such-attr", NULL);
        _cleanup_free_ char *v = NULL;

        path = write_temp("attr-r1", "hmem\n", -1);
        g_assert_cmpint(read_attr(path, &v), ==, 0);
        g_assert_cmpstr(v, ==, "hmem");
        free(g_steal_pointer(&v));
        g_free(path);

        path = write_temp("attr-r2", "no newline", -1);
        g_assert_cmpint(read_attr(path, &v), ==, 0);
        g_assert_cmpstr(v, ==, "no newline");
        free(g_steal_pointer(&v));
        g_free(path);

        path = write_temp("attr-r3", "", -1);
        g_assert_cmpint(read_attr(path, &v), ==, 0);
        g_assert_cmpstr(v, ==, "");
        free(g_steal_pointer(&v));
        g_free(path);

        /* Only one trailing newline is the kernel's; the rest is content. */
        path = write_temp("attr-r4", "a\n\n", -1);
        g_assert_cmpint(read_attr(path, &v), ==, 0);
        g_assert_cmpstr(v, ==, "a\n");
        free(g_steal_pointer(&v));
        g_free(path);

        /* Longer than one page: read to EOF. */
        path = write_temp("attr-r5", big_text, -1);
        g_assert_cmpint(read_attr(path, &v), ==, 0);
        g_assert_cmpstr(v, ==, big_text);
        free(g_steal_pointer(&v));
        g_free(path);

        s = g_strnfill(2 * 1024 * 1024, 'y');
        path = write_temp("attr-r6", s, -1);
        g_assert_cmpint(read_attr(path, &v), ==, -EFBIG);
        g_assert_null(v);

        g_assert_cmpint(read_attr(missing, &v), ==, -ENOENT);
}

static void test_read_attr_u64(void) {
        static const struct {
                const char *text;
                int r;
                uint64_t value;
        } cases[] = {
                { "0\n", 0, 0 },
                { "123\n", 0, 123 },
                { "010", 0, 10 },
                { "0x200000\n", 0, 0x200000 },
                { "0X1f", 0, 0x1f },
                { "0xffffffffffffffff", 0, UINT64_MAX },
                { "18446744073709551615", 0, UINT64_MAX },
                { "18446744073709551616", -ERANGE, 0 },
                { "0x10000000000000000", -ERANGE, 0 },
                { "", -EINVAL, 0 },
                { "-1", -EINVAL, 0 },
                { "+1", -EINVAL, 0 },
                { " 1", -EINVAL, 0 },
                { "1 ", -EINVAL, 0 },
                { "12abc", -EINVAL, 0 },
                { "abc", -EINVAL, 0 },
                { "0x", -EINVAL, 0 },
                { "0x1g", -EINVAL, 0 },
                { "0x-1", -EINVAL, 0 },
        };
        g_autofree char *missing = g_build_filename(test_dir, "no-such-attr", NULL);
        uint64_t v;

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *path = write_temp("attr-u64", cases[i].text, -1);

                g_autofree char *escaped = g_strescape(cases[i].text, NULL);

                v = 42;
                g_test_message("read_attr_u64 \"%s\"", escaped);
                g_assert_cmpint(read_attr_u64(path, &v), ==, cases[i].r);
                g_assert_cmpuint(v, ==, cases[i].r == 0 ? cases[i].value : 42);
        }

        g_assert_cmpint(read_attr_u64(missing, &v), ==, -ENOENT);
}

static void test_read_attr_int(void) {
        static const struct {
                const char *text;
                int r;
                int value;
        } cases[] = {
                { "-1\n", 0, -1 },
                { "0", 0, 0 },
                { "3\n", 0, 3 },
                { "2147483647", 0, 2147483647 },
                { "-2147483648", 0, -2147483647 - 1 },
                { "2147483648", -ERANGE, 0 },
                { "-2147483649", -ERANGE, 0 },
                { "", -EINVAL, 0 },
                { "-", -EINVAL, 0 },
                { "+3", -EINVAL, 0 },
                { "3x", -EINVAL, 0 },
                { " 3", -EINVAL, 0 },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *path = write_temp("attr-int", cases[i].text, -1);
                g_autofree char *escaped = g_strescape(cases[i].text, NULL);
                int v = 42;

                g_test_message("read_attr_int \"%s\"", escaped);
                g_assert_cmpint(read_attr_int(path, &v), ==, cases[i].r);
                g_assert_cmpint(v, ==, cases[i].r == 0 ? cases[i].value : 42);
        }
}

static void test_name_invalid_reason(void) {
        g_autofree char *max = g_strnfill(NAME_MAX_BYTES, 'a');
        g_autofree char *too_long = g_strnfill(NAME_MAX_BYTES + 1, 'a');

        g_assert_null(name_invalid_reason("vm-web1"));
        g_assert_null(name_invalid_reason("qemu/instance 1 (prod)"));
        g_assert_null(name_invalid_reason("m\xc3\xa4rz \xe2\x82\xac"));
        g_assert_null(name_invalid_reason(max));

        g_assert_cmpstr(name_invalid_reason(NULL), ==, "must not be empty");
        g_assert_cmpstr(name_invalid_reason(""), ==, "must not be empty");
        g_assert_cmpstr(name_invalid_reason(too_long), ==, "is longer than 255 bytes");
        g_assert_cmpstr(name_invalid_reason("a\xff"), ==, "is not valid UTF-8");
        g_assert_cmpstr(name_invalid_reason("\xc3"), ==, "is not valid UTF-8");
        g_assert_cmpstr(name_invalid_reason("a\nb"), ==, "contains control characters");
        g_assert_cmpstr(name_invalid_reason("a\tb"), ==, "contains control characters");
        g_assert_cmpstr(name_invalid_reason("\x1b[31m"), ==, "contains control characters");
        g_assert_cmpstr(name_invalid_reason("del\x7f"), ==, "contains control characters");
        /* U+0085, a C1 control, is valid UTF-8 but still a control. */
        g_assert_cmpstr(name_invalid_reason("a\xc2\x85"), ==, "contains control characters");
}

static void test_path_component_escape(void) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "vm1", "vm1" },
                { "", "" },
                { "a.b", "a.b" },
                { "a/b", "a\\x2fb" },
                { "/etc/passwd", "\\x2fetc\\x2fpasswd" },
                { ".", "\\x2e" },
                { "..", "\\x2e." },
                { ".hidden", "\\x2ehidden" },
                { "a\\b", "a\\x5cb" },
                { "\\x2f", "\\x5cx2f" },
                { "m\xc3\xa4rz", "m\xc3\xa4rz" },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                _cleanup_free_ char *s = path_component_escape(cases[i].in);

                g_assert_cmpstr(s, ==, cases[i].out);
                g_assert_null(strchr(s, '/'));
                g_assert_cmpstr(s, !=, ".");
                g_assert_cmpstr(s, !=, "..");
                g_assert_cmpuint(path_component_escaped_len(cases[i].in), ==, strlen(s));
                /* The temporary link name of the stable paths starts with
                 * '.': no escaped name may. */
                g_assert_true(s[0] != '.');
        }
}

static void test_link_name_invalid_reason(void) {
        char name[NAME_MAX_BYTES + 2];

        g_assert_null(link_name_invalid_reason("vm1"));
        g_assert_nonnull(link_name_invalid_reason(""));

        /* 255 plain bytes fit; 64 slashes are 64 bytes but 256 escaped. */
        memset(name, 'a', NAME_MAX_BYTES);
        name[NAME_MAX_BYTES] = 0;
        g_assert_null(link_name_invalid_reason(name));
        memset(name, '/', 64);
        name[64] = 0;
        g_assert_null(name_invalid_reason(name));
        g_assert_nonnull(strstr(link_name_invalid_reason(name), "once escaped"));
        name[63] = 0;
        g_assert_null(link_name_invalid_reason(name)); /* 252 escaped */
        /* A leading '.' costs 4 too. */
        memset(name, 'a', 253);
        name[0] = '.';
        name[253] = 0;
        g_assert_nonnull(link_name_invalid_reason(name));
        name[252] = 0;
        g_assert_null(link_name_invalid_reason(name));
}

static void test_now_usec(void) {
        gint64 before = g_get_real_time();
        uint64_t now = now_usec();
        gint64 after = g_get_real_time();

        g_assert_cmpuint(now, >=, (uint64_t) before);
        g_assert_cmpuint(now, <=, (uint64_t) after);
}

static void test_rounding(void) {
        g_assert_cmpuint(round_up_u64(1, 2 * MiB), ==, 2 * MiB);
        g_assert_cmpuint(round_up_u64(2 * MiB, 2 * MiB), ==, 2 * MiB);
        g_assert_cmpuint(round_up_u64(7, 0), ==, 7);
        g_assert_cmpuint(round_down_u64(3 * MiB, 2 * MiB), ==, 2 * MiB);
        g_assert_cmpuint(max_u64(1, 2), ==, 2);
        g_assert_cmpuint(min_u64(1, 2), ==, 1);
}

int main(int argc, char **argv) {
        int r;

        g_test_init(&argc, &argv, NULL);

        test_dir = g_dir_make_tmp("test-util-XXXXXX", NULL);
        g_assert_nonnull(test_dir);

        g_test_add_func("/util/format-size", test_format_size);
        g_test_add_func("/util/write-attr", test_write_attr);
        g_test_add_func("/util/read-attr", test_read_attr);
        g_test_add_func("/util/read-attr-u64", test_read_attr_u64);
        g_test_add_func("/util/read-attr-int", test_read_attr_int);
        g_test_add_func("/util/name-invalid-reason", test_name_invalid_reason);
        g_test_add_func("/util/path-component-escape", test_path_component_escape);
        g_test_add_func("/util/link-name-invalid-reason", test_link_name_invalid_reason);
        g_test_add_func("/util/host-zeroing", test_host_zeroing);
        g_test_add_func("/util/now-usec", test_now_usec);
        g_test_add_func("/util/rounding", test_rounding);

        r = g_test_run();

        rm_rf(test_dir);
        g_free(test_dir);
        return r;
}
