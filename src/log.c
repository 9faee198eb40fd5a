/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

static int max_level = LOG_INFO;

void log_set_max_level(int level) {
        max_level = level;
}

bool log_level_enabled(int level) {
        return level <= max_level;
}

bool log_to_journal(void) {
        static int to_journal = -1;

        if (to_journal < 0)
                to_journal = getenv("JOURNAL_STREAM") != NULL;
        return to_journal;
}

void log_msg(int level, const char *fmt, ...) {
        bool to_journal = log_to_journal();
        char line[2048];
        va_list ap;

        if (level > max_level)
                return;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);

        if (to_journal)
                fprintf(stderr, "<%d>%s\n", level, line);
        else
                fprintf(stderr, "daxbrokerd: %s\n", line);
}
