/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>

#include "build-config.h"
#include "config.h"
#include "dax-backend.h"
#include "util.h"

#define DEFAULT_ALIGN (2 * MiB)
#define DEFAULT_MAX_RANGES 16
#define DEFAULT_MAX_ALLOCATIONS_PER_OWNER 1024
#define MAX_ALLOCATIONS_PER_OWNER_LIMIT 100000
#define DEFAULT_MAX_ALLOCATIONS_PER_UID 4096
#define MAX_ALLOCATIONS_PER_UID_LIMIT 1000000
#define BOUNDARY_GRANULE (2 * MiB)

/* Where each pool setting came from, so that checks made after all files
 * are merged can still name the file and quote the value. */
typedef struct PoolSource {
        const char *section_file;
        const char *region_file, *start_file;
        char *region_value, *start_value;
        bool has_align;
} PoolSource;

typedef struct ConfigParser {
        Config *config;
        bool has_manage_unlisted;
        GPtrArray *files; /* owns the names that PoolSource points to */
        GArray *pools;    /* PoolConfig */
        GArray *sources;  /* PoolSource, parallel to pools */
} ConfigParser;

typedef enum SectionType {
        SECTION_BROKER,
        SECTION_POOL,
} SectionType;

G_GNUC_PRINTF(6, 7)
static bool config_fail(GError **error, const char *file, const char *section, const char *key,
                        const char *value, const char *format, ...) {
        g_autofree char *what = NULL;
        va_list ap;

        va_start(ap, format);
        what = g_strdup_vprintf(format, ap);
        va_end(ap);

        if (key && value)
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "%s: [%s] %s: %s (value '%s')", file, section, key, what, value);
        else if (key)
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "%s: [%s] %s: %s", file, section, key, what);
        else
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "%s: [%s]: %s", file, section, what);
        return false;
}

int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                unsigned shift;
        } suffixes[] = {
                { "",    0  },
                { "K",   10 }, { "KiB", 10 },
                { "M",   20 }, { "MiB", 20 },
                { "G",   30 }, { "GiB", 30 },
                { "T",   40 }, { "TiB", 40 },
        };
        uint64_t v = 0;
        unsigned base = 10;
        const char *p, *digits;

        if (!s)
                return -EINVAL;

        p = s;
        if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
                base = 16;
                p += 2;
        }

        /* By hand rather than strtoull(): that one accepts leading blanks
         * and signs, and silently negates "-1". */
        digits = p;
        for (; *p; p++) {
                unsigned d;

                if (g_ascii_isdigit(*p))
                        d = *p - '0';
                else if (base == 16 && g_ascii_isxdigit(*p))
                        d = g_ascii_xdigit_value(*p);
                else
                        break;

                if (v > (UINT64_MAX - d) / base)
                        return -EINVAL;
                v = v * base + d;
        }
        if (p == digits)
                return -EINVAL;

        for (size_t i = 0; i < G_N_ELEMENTS(suffixes); i++) {
                if (g_ascii_strcasecmp(p, suffixes[i].suffix) != 0)
                        continue;
                if (suffixes[i].shift > 0 && v > (UINT64_MAX >> suffixes[i].shift))
                        return -EINVAL;
                *ret = v << suffixes[i].shift;
                return 0;
        }

        return -EINVAL;
}

int parse_timespan(const char *s, uint64_t *ret_usec) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "", 1000000ULL },      { "s", 1000000ULL },       { "sec", 1000000ULL },
                { "ms", 1000ULL },       { "msec", 1000ULL },       { "us", 1ULL },
                { "min", 60000000ULL },  { "m", 60000000ULL },      { "h", 3600000000ULL },
        };
        uint64_t v = 0;
        const char *p = s;

        while (*p == ' ')
                p++;
        if (!g_ascii_isdigit(*p))
                return -EINVAL;
        for (; g_ascii_isdigit(*p); p++) {
                if (v > (UINT64_MAX - 9) / 10)
                        return -EINVAL;
                v = v * 10 + (uint64_t) (*p - '0');
        }
        while (*p == ' ')
                p++;
        for (size_t i = 0; i < G_N_ELEMENTS(units); i++) {
                if (strcmp(p, units[i].suffix) != 0)
                        continue;
                if (v > UINT64_MAX / units[i].usec)
                        return -EINVAL;
                *ret_usec = v * units[i].usec;
                return 0;
        }
        return -EINVAL;
}

/* systemd's spellings, so that unit-file habits carry over. */
static int parse_boolean(const char *s, bool *ret) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };

        for (size_t i = 0; i < G_N_ELEMENTS(yes); i++)
                if (g_ascii_strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
        for (size_t i = 0; i < G_N_ELEMENTS(no); i++)
                if (g_ascii_strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        return -EINVAL;
}

static int parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *ret) {
        uint64_t v = 0;

        if (!s[0])
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (!g_ascii_isdigit(*p))
                        return -EINVAL;
                v = v * 10 + (*p - '0');
                if (v > max)
                        return -ERANGE;
        }
        if (v < min)
                return -ERANGE;

        *ret = (unsigned) v;
        return 0;
}

static bool align_valid(uint64_t a) {
        return a == 4 * KiB || a == 2 * MiB || a == GiB;
}

static bool pool_name_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n >= CONFIG_POOL_NAME_MAX)
                return false;
        for (const char *p = s; *p; p++)
                if (!g_ascii_isalnum(*p) && *p != '_' && *p != '-')
                        return false;
        return true;
}

Config *config_new_default(void) {
        Config *c = g_new0(Config, 1);

        c->manage_unlisted = true;
        c->default_align = DEFAULT_ALIGN;
        c->max_ranges = DEFAULT_MAX_RANGES;
        c->max_allocations_per_owner = DEFAULT_MAX_ALLOCATIONS_PER_OWNER;
        c->allocate_timeout_usec = DEFAULT_ALLOCATE_TIMEOUT_USEC;
        c->max_allocations_per_uid = DEFAULT_MAX_ALLOCATIONS_PER_UID;
        c->host_zeroes_on_alloc = -1;
        return c;
}

void config_free(Config *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n_pools; i++) {
                g_free(c->pools[i].name);
                g_free(c->pools[i].tier);
        }
        g_free(c->pools);
        g_free(c->libvirt_uri);
        g_free(c);
}

const char *tier_invalid_reason(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 64)
                return "must be 1 to 64 characters long";
        for (size_t i = 0; i < n; i++)
                if (!g_ascii_isalnum(s[i]) && s[i] != '_' && s[i] != '-')
                        return "may contain only A-Z, a-z, 0-9, '_' and '-'";
        return NULL;
}

const PoolConfig *config_find_pool(const Config *c, unsigned region_id, uint64_t region_start) {
        /* Region= is the more specific match, so it wins over a Start= of
         * another pool that happens to name the same region. */
        for (size_t i = 0; i < c->n_pools; i++)
                if (c->pools[i].match_region && c->pools[i].region_id == region_id)
                        return &c->pools[i];
        for (size_t i = 0; i < c->n_pools; i++)
                if (c->pools[i].match_start && c->pools[i].start == region_start)
                        return &c->pools[i];
        return NULL;
}

static void pool_source_clear(gpointer p) {
        PoolSource *s = p;

        g_free(s->region_value);
        g_free(s->start_value);
}

static void pool_config_clear(gpointer p) {
        g_free(((PoolConfig *) p)->name);
        g_free(((PoolConfig *) p)->tier);
}

static void config_parser_init(ConfigParser *p) {
        *p = (ConfigParser) {
                .config = config_new_default(),
                .files = g_ptr_array_new_with_free_func(g_free),
                .pools = g_array_new(false, true, sizeof(PoolConfig)),
                .sources = g_array_new(false, true, sizeof(PoolSource)),
        };
        g_array_set_clear_func(p->pools, pool_config_clear);
        g_array_set_clear_func(p->sources, pool_source_clear);
}

static void config_parser_done(ConfigParser *p) {
        g_clear_pointer(&p->config, config_free);
        g_clear_pointer(&p->files, g_ptr_array_unref);
        g_clear_pointer(&p->pools, g_array_unref);
        g_clear_pointer(&p->sources, g_array_unref);
}

static size_t config_parser_get_pool(ConfigParser *p, const char *name, const char *file) {
        PoolConfig pool = {};
        PoolSource source = {};

        for (size_t i = 0; i < p->pools->len; i++)
                if (strcmp(g_array_index(p->pools, PoolConfig, i).name, name) == 0)
                        return i;

        pool.name = g_strdup(name);
        pool.manage = true;
        pool.host_delay_usec = DEFAULT_HOST_DELAY_USEC;
        pool.warm_budget = DEFAULT_WARM_BUDGET;
        source.section_file = file;
        g_array_append_val(p->pools, pool);
        g_array_append_val(p->sources, source);
        return p->pools->len - 1;
}

/* An empty value resets a key to its default, so that a drop-in can undo
 * what an earlier file set (e.g. switch a pool from Region= to Start=). */
static bool parse_broker_key(ConfigParser *p, const char *file, const char *section,
                             const char *key, const char *value, GError **error) {
        Config *c = p->config;
        bool empty = value[0] == 0;

        if (strcmp(key, "ManageUnlisted") == 0) {
                p->has_manage_unlisted = !empty;
                if (!empty && parse_boolean(value, &c->manage_unlisted) < 0)
                        return config_fail(error, file, section, key, value, "is not a boolean");

        } else if (strcmp(key, "DefaultAlign") == 0) {
                uint64_t a = DEFAULT_ALIGN;

                if (!empty && (parse_size(value, &a) < 0 || !align_valid(a)))
                        return config_fail(error, file, section, key, value, "must be 4K, 2M or 1G");
                c->default_align = a;

        } else if (strcmp(key, "MaxRanges") == 0) {
                unsigned n = DEFAULT_MAX_RANGES;

                if (!empty && parse_unsigned(value, 1, DAX_RANGES_MAX, &n) < 0)
                        return config_fail(error, file, section, key, value,
                                           "must be a number from 1 to %u", DAX_RANGES_MAX);
                c->max_ranges = n;

        } else if (strcmp(key, "MaxAllocationsPerOwner") == 0) {
                unsigned n = DEFAULT_MAX_ALLOCATIONS_PER_OWNER;

                if (!empty && parse_unsigned(value, 1, MAX_ALLOCATIONS_PER_OWNER_LIMIT, &n) < 0)
                        return config_fail(error, file, section, key, value,
                                           "must be a number from 1 to %u",
                                           MAX_ALLOCATIONS_PER_OWNER_LIMIT);
                c->max_allocations_per_owner = n;

        } else if (strcmp(key, "MaxAllocationsPerUid") == 0) {
                unsigned n = DEFAULT_MAX_ALLOCATIONS_PER_UID;

                if (!empty && parse_unsigned(value, 1, MAX_ALLOCATIONS_PER_UID_LIMIT, &n) < 0)
                        return config_fail(error, file, section, key, value, "must be a number from 1 to %u",
                                           MAX_ALLOCATIONS_PER_UID_LIMIT);
                c->max_allocations_per_uid = n;

        } else if (strcmp(key, "ScrubThreads") == 0) {
                unsigned n = 0;

                if (!empty && parse_unsigned(value, 0, SCRUB_THREADS_LIMIT, &n) < 0)
                        return config_fail(error, file, section, key, value,
                                           "must be a number from 0 (all CPUs) to %u", SCRUB_THREADS_LIMIT);
                c->scrub_threads = n;

        } else if (strcmp(key, "AllocateTimeout") == 0) {
                uint64_t t = DEFAULT_ALLOCATE_TIMEOUT_USEC;

                if (!empty && (parse_timespan(value, &t) < 0 || t < 1000 || t > ALLOCATE_TIMEOUT_MAX_USEC))
                        return config_fail(error, file, section, key, value,
                                           "must be a time span from 1ms to 1h");
                c->allocate_timeout_usec = t;
        } else if (strcmp(key, "LibvirtURI") == 0) {
                /* A URI is printable ASCII without blanks; anything else is
                 * a typo that would only show up as a failing connection. */
                for (const char *q = value; *q; q++)
                        if (*q <= ' ' || *q > '~')
                                return config_fail(error, file, section, key, value,
                                                   "must be a libvirt URI such as qemu:///system");
                if (!empty && !strstr(value, ":"))
                        return config_fail(error, file, section, key, value,
                                           "must be a libvirt URI such as qemu:///system");
                g_free(c->libvirt_uri);
                c->libvirt_uri = empty ? NULL : g_strdup(value);

        } else if (strcmp(key, "JournalRanges") == 0) {
                c->journal_ranges = false;
                if (!empty && parse_boolean(value, &c->journal_ranges) < 0)
                        return config_fail(error, file, section, key, value, "is not a boolean");

        } else if (strcmp(key, "LibvirtOrphans") == 0) {
                if (empty || strcmp(value, "release") == 0)
                        c->libvirt_report_only = false;
                else if (strcmp(value, "report") == 0)
                        c->libvirt_report_only = true;
                else
                        return config_fail(error, file, section, key, value, "must be 'release' or 'report'");

        } else if (strcmp(key, "HostZeroesOnAlloc") == 0) {
                if (empty || strcmp(value, "auto") == 0)
                        c->host_zeroes_on_alloc = -1;
                else if (strcmp(value, "yes") == 0)
                        c->host_zeroes_on_alloc = 1;
                else if (strcmp(value, "no") == 0)
                        c->host_zeroes_on_alloc = 0;
                else
                        return config_fail(error, file, section, key, value, "must be 'auto', 'yes' or 'no'");

        } else
                return config_fail(error, file, section, key, NULL, "unknown key");

        return true;
}

static bool parse_pool_key(ConfigParser *p, size_t index, const char *file, const char *section,
                           const char *key, const char *value, GError **error) {
        PoolConfig *pool = &g_array_index(p->pools, PoolConfig, index);
        PoolSource *source = &g_array_index(p->sources, PoolSource, index);
        bool empty = value[0] == 0;

        if (strcmp(key, "Region") == 0) {
                pool->match_region = !empty;
                pool->region_id = 0;
                if (!empty && parse_unsigned(value, 0, UINT_MAX, &pool->region_id) < 0)
                        return config_fail(error, file, section, key, value,
                                           "is not a region number");
                source->region_file = file;
                g_free(source->region_value);
                source->region_value = g_strdup(value);

        } else if (strcmp(key, "Start") == 0) {
                pool->match_start = !empty;
                pool->start = 0;
                if (!empty && parse_size(value, &pool->start) < 0)
                        return config_fail(error, file, section, key, value,
                                           "is not an address");
                source->start_file = file;
                g_free(source->start_value);
                source->start_value = g_strdup(value);

        } else if (strcmp(key, "Boundary") == 0) {
                pool->boundary = 0;
                if (!empty && parse_size(value, &pool->boundary) < 0)
                        return config_fail(error, file, section, key, value, "is not a size");
                /* Placement (extent-map) works with power-of-two boundaries
                 * only; anything else would fail every allocation later. */
                if (pool->boundary != 0 &&
                    (pool->boundary % BOUNDARY_GRANULE != 0 || (pool->boundary & (pool->boundary - 1)) != 0))
                        return config_fail(error, file, section, key, value,
                                           "must be 0 or a power of two of at least 2 MiB");

        } else if (strcmp(key, "Align") == 0) {
                source->has_align = !empty;
                if (!empty && (parse_size(value, &pool->align) < 0 || !align_valid(pool->align)))
                        return config_fail(error, file, section, key, value, "must be 4K, 2M or 1G");

        } else if (strcmp(key, "Manage") == 0) {
                pool->manage = true;
                if (!empty && parse_boolean(value, &pool->manage) < 0)
                        return config_fail(error, file, section, key, value, "is not a boolean");

        } else if (strcmp(key, "HostReturn") == 0) {
                pool->host_return = false;
                if (!empty && parse_boolean(value, &pool->host_return) < 0)
                        return config_fail(error, file, section, key, value, "is not a boolean");

        } else if (strcmp(key, "HostChunk") == 0) {
                /* Whether it is a multiple of the memory block size is only
                 * known on the host; the broker checks that at start. */
                pool->host_chunk = 0;
                if (!empty && (parse_size(value, &pool->host_chunk) < 0 || pool->host_chunk == 0 ||
                               pool->host_chunk % BOUNDARY_GRANULE != 0))
                        return config_fail(error, file, section, key, value,
                                           "must be a non-zero size, a multiple of the memory block size");

        } else if (strcmp(key, "Reserve") == 0) {
                pool->reserve = 0;
                if (!empty && (parse_size(value, &pool->reserve) < 0 || pool->reserve % BOUNDARY_GRANULE != 0))
                        return config_fail(error, file, section, key, value, "must be a size in whole 2 MiB units");

        } else if (strcmp(key, "HostReturnDelay") == 0) {
                pool->host_delay_usec = DEFAULT_HOST_DELAY_USEC;
                if (!empty && parse_timespan(value, &pool->host_delay_usec) < 0)
                        return config_fail(error, file, section, key, value,
                                           "is not a time span (such as 30s, 500ms or 5min)");

        } else if (strcmp(key, "Tier") == 0) {
                const char *why = empty ? NULL : tier_invalid_reason(value);

                if (why)
                        return config_fail(error, file, section, key, value, "%s", why);
                g_free(pool->tier);
                pool->tier = empty ? NULL : g_strdup(value);

        } else if (strcmp(key, "Colors") == 0) {
                /* Whether the cache and the pool's alignment agree is only
                 * known on the host; the broker checks that at start. */
                pool->colors = 0;
                if (!empty && (parse_unsigned(value, 2, 64, &pool->colors) < 0))
                        return config_fail(error, file, section, key, value, "must be a number from 2 to 64");
        } else if (strcmp(key, "WarmBudget") == 0) {
                pool->warm_budget = DEFAULT_WARM_BUDGET;
                if (!empty && (parse_size(value, &pool->warm_budget) < 0 || pool->warm_budget % BOUNDARY_GRANULE != 0))
                        return config_fail(error, file, section, key, value, "must be a size in whole 2 MiB units");

        } else if (strcmp(key, "WarmSizes") == 0) {
                g_auto(GStrv) words = g_strsplit_set(value, " \t,", -1);

                pool->n_warm_sizes = 0;
                for (char **w = words; *w; w++) {
                        uint64_t v;

                        if (!**w)
                                continue;
                        if (pool->n_warm_sizes >= WARM_SIZES_MAX)
                                return config_fail(error, file, section, key, value,
                                                   "lists more than %d sizes", WARM_SIZES_MAX);
                        if (parse_size(*w, &v) < 0 || v == 0 || v % BOUNDARY_GRANULE != 0)
                                return config_fail(error, file, section, key, value,
                                                   "must be sizes in whole 2 MiB units, separated by spaces or commas");
                        pool->warm_sizes[pool->n_warm_sizes++] = v;
                }

        } else
                return config_fail(error, file, section, key, NULL, "unknown key");

        return true;
}

/* GKeyFile hides "Key[locale]" entries from g_key_file_get_keys(), so they
 * would be ignored silently; look for them in the text itself. */
static bool check_no_localized_keys(const char *file, const char *data, gsize len, GError **error) {
        g_autofree char *section = NULL;
        const char *end = data + len;

        for (const char *line = data; line < end;) {
                const char *eol = memchr(line, '\n', end - line);
                const char *next = eol ? eol + 1 : end;
                const char *eq;

                if (!eol)
                        eol = end;
                while (line < eol && (*line == ' ' || *line == '\t'))
                        line++;

                if (line < eol && *line == '[') {
                        g_free(section);
                        section = g_strchomp(g_strndup(line + 1, eol - line - 1));
                        if (g_str_has_suffix(section, "]"))
                                section[strlen(section) - 1] = 0;
                } else if (line < eol && *line != '#' && (eq = memchr(line, '=', eol - line))) {
                        const char *bracket = memchr(line, '[', eq - line);

                        if (bracket) {
                                g_autofree char *key = g_strndup(line, eq - line);

                                return config_fail(error, file, section ? section : "", g_strstrip(key),
                                                   NULL, "localized keys are not supported");
                        }
                }
                line = next;
        }
        return true;
}

static bool config_parser_add_data(ConfigParser *p, const char *filename, const char *data, gsize len,
                                   GError **error) {
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_auto(GStrv) groups = NULL;
        const char *file;

        g_ptr_array_add(p->files, g_strdup(filename));
        file = g_ptr_array_index(p->files, p->files->len - 1);

        if (!g_key_file_load_from_data(kf, data, len, G_KEY_FILE_NONE, error)) {
                g_prefix_error(error, "%s: ", file);
                return false;
        }
        if (!check_no_localized_keys(file, data, len, error))
                return false;

        groups = g_key_file_get_groups(kf, NULL);
        for (size_t i = 0; groups[i]; i++) {
                const char *section = groups[i];
                g_auto(GStrv) keys = NULL;
                SectionType type;
                size_t pool = 0;

                if (strcmp(section, "Broker") == 0)
                        type = SECTION_BROKER;
                else if (g_str_has_prefix(section, "Pool ")) {
                        if (!pool_name_valid(section + 5))
                                return config_fail(error, file, section, NULL, NULL,
                                                   "pool name must be 1 to %d characters of A-Z, a-z, 0-9, '_' and '-'",
                                                   CONFIG_POOL_NAME_MAX - 1);
                        type = SECTION_POOL;
                        pool = config_parser_get_pool(p, section + 5, file);
                } else
                        return config_fail(error, file, section, NULL, NULL,
                                           "unknown section, expected [Broker] or [Pool NAME]");

                keys = g_key_file_get_keys(kf, section, NULL, NULL);
                for (size_t j = 0; keys && keys[j]; j++) {
                        g_autofree char *raw = g_key_file_get_value(kf, section, keys[j], NULL);
                        /* GKeyFile keeps trailing blanks; nobody means them. */
                        const char *value = g_strstrip(raw);
                        bool ok;

                        if (type == SECTION_BROKER)
                                ok = parse_broker_key(p, file, section, keys[j], value, error);
                        else
                                ok = parse_pool_key(p, pool, file, section, keys[j], value, error);
                        if (!ok)
                                return false;
                }
        }

        return true;
}

static bool config_parser_add_file(ConfigParser *p, const char *path, bool missing_ok, GError **error) {
        g_autofree char *data = NULL;
        g_autoptr(GError) e = NULL;
        gsize len;

        if (!g_file_get_contents(path, &data, &len, &e)) {
                if (missing_ok && g_error_matches(e, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                        return true;
                g_propagate_error(error, g_steal_pointer(&e));
                return false;
        }

        return config_parser_add_data(p, path, data, len, error);
}

static int compare_strings(gconstpointer a, gconstpointer b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static bool config_parser_add_dropins(ConfigParser *p, const char *path, GError **error) {
        g_autofree char *dirname = g_strconcat(path, ".d", NULL);
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) e = NULL;
        GDir *dir;
        const char *name;

        dir = g_dir_open(dirname, 0, &e);
        if (!dir) {
                if (g_error_matches(e, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                        return true;
                g_propagate_error(error, g_steal_pointer(&e));
                return false;
        }
        while ((name = g_dir_read_name(dir)))
                if (g_str_has_suffix(name, ".conf"))
                        g_ptr_array_add(names, g_strdup(name));
        g_dir_close(dir);

        g_ptr_array_sort(names, compare_strings);

        for (size_t i = 0; i < names->len; i++) {
                g_autofree char *file = g_build_filename(dirname, g_ptr_array_index(names, i), NULL);

                if (!config_parser_add_file(p, file, false, error))
                        return false;
        }
        return true;
}

/* Checks that need every file merged first, then hands over the result. */
static Config *config_parser_finish(ConfigParser *p, GError **error) {
        Config *c = p->config;

        for (size_t i = 0; i < p->pools->len; i++) {
                PoolConfig *pool = &g_array_index(p->pools, PoolConfig, i);
                PoolSource *source = &g_array_index(p->sources, PoolSource, i);
                g_autofree char *section = g_strconcat("Pool ", pool->name, NULL);

                if (pool->match_region == pool->match_start) {
                        config_fail(error, source->section_file, section, NULL, NULL,
                                    "needs exactly one of Region= or Start=, has %s",
                                    pool->match_region ? "both" : "neither");
                        return NULL;
                }

                if (!source->has_align)
                        pool->align = c->default_align;

                for (size_t j = 0; j < i; j++) {
                        const PoolConfig *other = &g_array_index(p->pools, PoolConfig, j);

                        if (pool->match_region && other->match_region && pool->region_id == other->region_id) {
                                config_fail(error, source->region_file, section, "Region",
                                            source->region_value,
                                            "region is already matched by [Pool %s]", other->name);
                                return NULL;
                        }
                        if (pool->match_start && other->match_start && pool->start == other->start) {
                                config_fail(error, source->start_file, section, "Start",
                                            source->start_value,
                                            "start address is already matched by [Pool %s]", other->name);
                                return NULL;
                        }
                }
        }

        if (!p->has_manage_unlisted)
                c->manage_unlisted = p->pools->len == 0;

        /* Without its segment, g_array_free() runs no clear function: the
         * names move into the Config. */
        c->n_pools = p->pools->len;
        c->pools = (PoolConfig *) g_array_free(g_steal_pointer(&p->pools), false);
        return g_steal_pointer(&p->config);
}

Config *config_load(const char *path, GError **error) {
        ConfigParser p;
        Config *c = NULL;

        if (!path)
                path = CONFIG_FILE;

        config_parser_init(&p);
        if (config_parser_add_file(&p, path, true, error) &&
            config_parser_add_dropins(&p, path, error))
                c = config_parser_finish(&p, error);
        config_parser_done(&p);

        return c;
}

Config *config_load_data(const char *data, gsize len, GError **error) {
        ConfigParser p;
        Config *c = NULL;

        config_parser_init(&p);
        if (config_parser_add_data(&p, "<data>", data, len, error))
                c = config_parser_finish(&p, error);
        config_parser_done(&p);

        return c;
}
