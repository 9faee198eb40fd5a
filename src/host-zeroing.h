/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * host-zeroing: whether the host kernel zeroes every page before it hands
 * it out (init_on_alloc), so that memory lent to the host through kmem
 * may go there without being zeroed first: no tenant's data can reach a
 * host user through the page allocator. Read from the kernel command line
 * and the kernel's build configuration; anything unclear is "no".
 */

#include <stdbool.h>

/* Decides from the text of /proc/cmdline and of the kernel's config file
 * (either may be NULL: not readable). True only if init_on_alloc is on
 * (command line, else CONFIG_INIT_ON_ALLOC_DEFAULT_ON) and neither
 * init_on_free (which makes the kernel skip zeroing on allocation) nor
 * page_poison (which takes precedence over init_on_alloc) is. *ret_why
 * says how it was decided (a static string). */
bool host_zeroing_parse(const char *cmdline, const char *kconfig, const char **ret_why);

/* The same for the running kernel: /proc/cmdline and
 * /boot/config-$(uname -r). */
bool host_zeroing_detect(const char **ret_why);
