/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * log: one line per event on stderr, with a syslog priority prefix when
 * stderr is the journal (so journald keeps the level).
 */

#include <stdbool.h>
#include <syslog.h>

void log_set_max_level(int level);
/* Whether messages of this level are logged at all. */
bool log_level_enabled(int level);
/* Whether stderr is the journal (systemd set JOURNAL_STREAM). */
bool log_to_journal(void);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
