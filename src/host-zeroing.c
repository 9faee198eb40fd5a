/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>
#include <sys/utsname.h>

#include <glib.h>

#include "host-zeroing.h"

/* The kernel's kstrtobool(): 1/y/Y/on true, 0/n/N/off false. -1: neither. */
static int kernel_bool(const char *v) {
        if (!v || !*v)
                return -1;
        if (v[0] == '1' || v[0] == 'y' || v[0] == 'Y')
                return 1;
        if (v[0] == '0' || v[0] == 'n' || v[0] == 'N')
                return 0;
        if ((v[0] == 'o' || v[0] == 'O') && (v[1] == 'n' || v[1] == 'N'))
                return 1;
        if ((v[0] == 'o' || v[0] == 'O') && (v[1] == 'f' || v[1] == 'F'))
                return 0;
        return -1;
}

/* The last "key=value" of the command line wins, as the kernel parses
 * early parameters in order. -1: not given (or not a boolean). */
static int cmdline_bool(const char *cmdline, const char *key) {
        g_auto(GStrv) words = NULL;
        size_t n = strlen(key);
        int v = -1;

        if (!cmdline)
                return -1;
        words = g_strsplit_set(cmdline, " \t\n", -1);
        for (char **w = words; *w; w++)
                if (strncmp(*w, key, n) == 0 && (*w)[n] == '=') {
                        int b = kernel_bool(*w + n + 1);
                        if (b >= 0)
                                v = b;
                }
        return v;
}

/* "CONFIG_X=y": 1; "# CONFIG_X is not set" or absent: 0; no config: -1. */
static int kconfig_bool(const char *kconfig, const char *key) {
        g_autofree char *on = NULL;

        if (!kconfig)
                return -1;
        on = g_strdup_printf("\n%s=y\n", key);
        return strstr(kconfig, on) || (g_str_has_prefix(kconfig, on + 1)) ? 1 : 0;
}

bool host_zeroing_parse(const char *cmdline, const char *kconfig, const char **ret_why) {
        int alloc = cmdline_bool(cmdline, "init_on_alloc");
        int freeing = cmdline_bool(cmdline, "init_on_free");
        const char *why = NULL;

        if (alloc < 0)
                alloc = kconfig_bool(kconfig, "CONFIG_INIT_ON_ALLOC_DEFAULT_ON");
        if (freeing < 0)
                freeing = kconfig_bool(kconfig, "CONFIG_INIT_ON_FREE_DEFAULT_ON");

        if (alloc < 0)
                why = "neither the kernel command line nor the kernel's config says whether init_on_alloc is on";
        else if (alloc == 0)
                why = "init_on_alloc is off";
        else if (freeing != 0)
                why = freeing > 0 ? "init_on_free is on (the kernel then skips zeroing on allocation)"
                                  : "the kernel's config is not readable to tell whether init_on_free is on";
        else if (cmdline_bool(cmdline, "page_poison") > 0)
                why = "page_poison is on (it takes precedence over init_on_alloc)";
        if (ret_why)
                *ret_why = why ? why : "init_on_alloc is on: the host kernel zeroes every page it hands out";
        return !why;
}

bool host_zeroing_detect(const char **ret_why) {
        g_autofree char *cmdline = NULL, *kconfig = NULL, *path = NULL;
        struct utsname u;

        (void) g_file_get_contents("/proc/cmdline", &cmdline, NULL, NULL);
        if (uname(&u) == 0) {
                path = g_strdup_printf("/boot/config-%s", u.release);
                (void) g_file_get_contents(path, &kconfig, NULL, NULL);
        }
        return host_zeroing_parse(cmdline, kconfig, ret_why);
}
