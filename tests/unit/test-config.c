/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>

#include "config.h"
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

/* A fresh directory per test, so that drop-ins of one test never leak
 * into another. */
static char *make_case_dir(void) {
        static unsigned counter;
        char *dir = g_strdup_printf("%s/case%u", test_dir, counter++);

        g_assert_cmpint(g_mkdir(dir, 0700), ==, 0);
        return dir;
}

static void write_file(const char *dir, const char *name, const char *contents) {
        g_autofree char *path = g_build_filename(dir, name, NULL);

        g_assert_true(g_file_set_contents(path, contents, -1, NULL));
}

static Config *load_ok(const char *text) {
        g_autoptr(GError) error = NULL;
        Config *c = config_load_data(text, strlen(text), &error);

        g_assert_no_error(error);
        g_assert_nonnull(c);
        return c;
}

/* Asserts rejection, and that the message contains every fragment. */
static void load_fails(const char *text, const char *const *fragments) {
        g_autoptr(GError) error = NULL;
        g_autoptr(Config) c = config_load_data(text, strlen(text), &error);

        g_assert_null(c);
        g_assert_nonnull(error);
        g_test_message("rejected: %s", error->message);
        for (size_t i = 0; fragments[i]; i++)
                if (!strstr(error->message, fragments[i]))
                        g_error("message '%s' lacks '%s' (input:\n%s)", error->message, fragments[i], text);
}

#define LOAD_FAILS(text, ...) load_fails(text, (const char *const[]) { __VA_ARGS__, NULL })

static void assert_defaults(const Config *c) {
        g_assert_true(c->manage_unlisted);
        g_assert_cmpuint(c->default_align, ==, 2 * MiB);
        g_assert_cmpuint(c->max_ranges, ==, 16);
        g_assert_cmpuint(c->max_allocations_per_owner, ==, 1024);
        g_assert_cmpuint(c->max_allocations_per_uid, ==, 4096);
        g_assert_cmpuint(c->n_pools, ==, 0);
}

static void test_parse_size(void) {
        static const struct {
                const char *text;
                uint64_t value;
        } good[] = {
                { "0", 0 },
                { "4096", 4096 },
                { "0x200000", 2 * MiB },
                { "0X1F", 0x1f },
                { "4K", 4 * KiB },
                { "4k", 4 * KiB },
                { "4KiB", 4 * KiB },
                { "4kib", 4 * KiB },
                { "2M", 2 * MiB },
                { "512MiB", 512 * MiB },
                { "1G", GiB },
                { "1gib", GiB },
                { "3T", 3 * (GiB << 10) },
                { "3TiB", 3 * (GiB << 10) },
                { "0x10G", 16 * GiB },
                { "18446744073709551615", UINT64_MAX },
                { "0xffffffffffffffff", UINT64_MAX },
                { "16777215T", UINT64_C(16777215) << 40 },
        };
        static const char *const bad[] = {
                "", "-1", "+1", " 1", "1 ", "1.5G", "G", "0x", "0xG", "1X", "1KB", "1Ki",
                "1GG", "1E", "abc", "12abc", "18446744073709551616", "0x10000000000000000",
                "16777216T", "17179869184G", "0x1000000000000000K",
        };
        uint64_t v;

        for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
                v = 0;
                g_test_message("parse_size \"%s\"", good[i].text);
                g_assert_cmpint(parse_size(good[i].text, &v), ==, 0);
                g_assert_cmpuint(v, ==, good[i].value);
        }
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                v = 42;
                g_test_message("parse_size \"%s\"", bad[i]);
                g_assert_cmpint(parse_size(bad[i], &v), ==, -EINVAL);
                g_assert_cmpuint(v, ==, 42);
        }
        g_assert_cmpint(parse_size(NULL, &v), ==, -EINVAL);
}

static void test_defaults(void) {
        g_autoptr(Config) d = config_new_default();
        g_autoptr(Config) empty = load_ok("");
        g_autoptr(Config) comments = load_ok("# nothing here\n\n[Broker]\n");

        assert_defaults(d);
        assert_defaults(empty);
        assert_defaults(comments);
}

static void test_broker_section(void) {
        g_autoptr(Config) c = load_ok("[Broker]\n"
                                      "ManageUnlisted=no\n"
                                      "DefaultAlign=1G\n"
                                      "MaxRanges=64\n"
                                      "MaxAllocationsPerOwner=100000\n"
                                      "MaxAllocationsPerUid=7\n");

        g_assert_false(c->manage_unlisted);
        g_assert_cmpuint(c->default_align, ==, GiB);
        g_assert_cmpuint(c->max_ranges, ==, 64);
        g_assert_cmpuint(c->max_allocations_per_owner, ==, 100000);
        g_assert_cmpuint(c->max_allocations_per_uid, ==, 7);
}

static void test_libvirt_keys(void) {
        g_autoptr(Config) off = load_ok("[Broker]\nMaxRanges=8\n");
        g_autoptr(Config) on = load_ok("[Broker]\nLibvirtURI=qemu:///system\nLibvirtOrphans=report\n");
        g_autoptr(Config) reset = load_ok("[Broker]\nLibvirtURI=\nLibvirtOrphans=\n");

        g_assert_null(off->libvirt_uri);
        g_assert_false(off->libvirt_report_only);
        g_assert_cmpstr(on->libvirt_uri, ==, "qemu:///system");
        g_assert_true(on->libvirt_report_only);
        g_assert_null(reset->libvirt_uri);
        g_assert_false(reset->libvirt_report_only);
        load_fails("[Broker]\nLibvirtURI=qemu system\n", (const char *const[]) { "LibvirtURI", "libvirt URI", NULL });
        load_fails("[Broker]\nLibvirtURI=system\n", (const char *const[]) { "LibvirtURI", NULL });
        load_fails("[Broker]\nLibvirtOrphans=ignore\n",
                   (const char *const[]) { "LibvirtOrphans", "'release' or 'report'", NULL });
}

static void test_journal_ranges(void) {
        g_autoptr(Config) off = load_ok("[Broker]\nMaxRanges=8\n");
        g_autoptr(Config) on = load_ok("[Broker]\nJournalRanges=yes\n");
        g_autoptr(Config) reset = load_ok("[Broker]\nJournalRanges=yes\nJournalRanges=\n");

        g_assert_false(off->journal_ranges);
        g_assert_true(on->journal_ranges);
        g_assert_false(reset->journal_ranges);
        load_fails("[Broker]\nJournalRanges=maybe\n", (const char *const[]) { "JournalRanges", "boolean", NULL });
}

static void test_values_are_trimmed(void) {
        g_autoptr(Config) c = load_ok("[Broker]\nMaxRanges =   8   \nDefaultAlign = 4K\t\n");

        g_assert_cmpuint(c->max_ranges, ==, 8);
        g_assert_cmpuint(c->default_align, ==, 4 * KiB);
}

static void test_booleans(void) {
        static const char *const yes[] = { "1", "yes", "YES", "y", "true", "True", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "FALSE", "f", "off", "Off" };

        for (size_t i = 0; i < G_N_ELEMENTS(yes); i++) {
                g_autofree char *text = g_strdup_printf("[Broker]\nManageUnlisted=%s\n", yes[i]);
                g_autoptr(Config) c = load_ok(text);

                g_assert_true(c->manage_unlisted);
        }
        for (size_t i = 0; i < G_N_ELEMENTS(no); i++) {
                g_autofree char *text = g_strdup_printf("[Broker]\nManageUnlisted=%s\n", no[i]);
                g_autoptr(Config) c = load_ok(text);

                g_assert_false(c->manage_unlisted);
        }
        LOAD_FAILS("[Broker]\nManageUnlisted=maybe\n",
                   "<data>: [Broker] ManageUnlisted: is not a boolean (value 'maybe')");
        LOAD_FAILS("[Pool a]\nRegion=0\nManage=2\n", "[Pool a] Manage: is not a boolean (value '2')");
}

static void test_broker_rejects(void) {
        LOAD_FAILS("[Broker]\nMaxRanges=0\n",
                   "<data>: [Broker] MaxRanges: must be a number from 1 to 64 (value '0')");
        LOAD_FAILS("[Broker]\nMaxRanges=65\n", "[Broker] MaxRanges", "(value '65')");
        LOAD_FAILS("[Broker]\nMaxRanges=-1\n", "[Broker] MaxRanges", "(value '-1')");
        LOAD_FAILS("[Broker]\nMaxRanges=8x\n", "[Broker] MaxRanges", "(value '8x')");
        LOAD_FAILS("[Broker]\nMaxRanges=99999999999999999999999\n", "[Broker] MaxRanges");
        LOAD_FAILS("[Broker]\nMaxAllocationsPerOwner=0\n", "[Broker] MaxAllocationsPerOwner",
                   "from 1 to 100000", "(value '0')");
        LOAD_FAILS("[Broker]\nMaxAllocationsPerOwner=100001\n", "[Broker] MaxAllocationsPerOwner",
                   "(value '100001')");
        LOAD_FAILS("[Broker]\nMaxAllocationsPerUid=0\n", "[Broker] MaxAllocationsPerUid",
                   "from 1 to 1000000", "(value '0')");
        LOAD_FAILS("[Broker]\nMaxAllocationsPerUid=1000001\n", "[Broker] MaxAllocationsPerUid",
                   "(value '1000001')");
        LOAD_FAILS("[Broker]\nDefaultAlign=8K\n",
                   "[Broker] DefaultAlign: must be 4K, 2M or 1G (value '8K')");
        LOAD_FAILS("[Broker]\nDefaultAlign=huge\n", "[Broker] DefaultAlign", "(value 'huge')");
        LOAD_FAILS("[Broker]\nDefaultAlign=0\n", "[Broker] DefaultAlign", "(value '0')");
}

static void test_unknown_names(void) {
        LOAD_FAILS("[Broker]\nMaxRange=4\n", "<data>: [Broker] MaxRange: unknown key");
        LOAD_FAILS("[broker]\nMaxRanges=4\n", "<data>: [broker]: unknown section");
        LOAD_FAILS("[Daemon]\n", "[Daemon]: unknown section");
        LOAD_FAILS("[Pool a]\nRegion=0\nNode=1\n", "<data>: [Pool a] Node: unknown key");
        /* GKeyFile would hide these from its key list; they are rejected. */
        LOAD_FAILS("[Broker]\nMaxRanges[de]=4\n", "[Broker] MaxRanges[de]", "localized");
        LOAD_FAILS("[Pool a]\nRegion=0\n  Start[x] = 1\n", "[Pool a] Start[x]", "localized");
        LOAD_FAILS("[Broker\nMaxRanges=4\n", "<data>");
        LOAD_FAILS("MaxRanges=4\n", "<data>");
        LOAD_FAILS("[Broker]\njunk\n", "<data>");
}

static void test_pool_names(void) {
        g_autofree char *name63 = g_strnfill(63, 'p');
        g_autofree char *name64 = g_strnfill(64, 'p');
        g_autofree char *ok = g_strdup_printf("[Pool %s]\nRegion=0\n[Pool A-z_09]\nRegion=1\n", name63);
        g_autofree char *too_long = g_strdup_printf("[Pool %s]\nRegion=0\n", name64);
        g_autoptr(Config) c = load_ok(ok);

        g_assert_cmpuint(c->n_pools, ==, 2);
        g_assert_cmpstr(c->pools[0].name, ==, name63);
        g_assert_cmpstr(c->pools[1].name, ==, "A-z_09");

        LOAD_FAILS(too_long, "pool name must be 1 to 63 characters");
        LOAD_FAILS("[Pool ]\nRegion=0\n", "[Pool ]", "pool name");
        LOAD_FAILS("[Pool]\nRegion=0\n", "[Pool]: unknown section");
        LOAD_FAILS("[Pool a b]\nRegion=0\n", "[Pool a b]", "pool name");
        LOAD_FAILS("[Pool a.b]\nRegion=0\n", "[Pool a.b]", "pool name");
        LOAD_FAILS("[Pool  a]\nRegion=0\n", "pool name");
        LOAD_FAILS("[Pool \xc3\xa4]\nRegion=0\n", "pool name");
}

static void test_pools(void) {
        g_autoptr(Config) c = load_ok("[Pool fast]\n"
                                      "Region=0\n"
                                      "Boundary=1G\n"
                                      "Align=1G\n"
                                      "[Pool slow]\n"
                                      "Start=0x880000000\n"
                                      "Manage=no\n"
                                      "[Pool cache]\n"
                                      "Start=64G\n"
                                      "Boundary=0\n"
                                      "[Pool colours]\n"
                                      "Region=5\n"
                                      "Boundary=2M\n"
                                      "Align=1G\n"
                                      "[Broker]\n"
                                      "DefaultAlign=4K\n");
        const PoolConfig *p;

        /* Pools are listed: ManageUnlisted now defaults to no. */
        g_assert_false(c->manage_unlisted);
        g_assert_cmpuint(c->n_pools, ==, 4);

        p = &c->pools[0];
        g_assert_cmpstr(p->name, ==, "fast");
        g_assert_true(p->match_region);
        g_assert_false(p->match_start);
        g_assert_cmpuint(p->region_id, ==, 0);
        g_assert_cmpuint(p->boundary, ==, GiB);
        g_assert_cmpuint(p->align, ==, GiB);
        g_assert_true(p->manage);

        p = &c->pools[1];
        g_assert_cmpstr(p->name, ==, "slow");
        g_assert_false(p->match_region);
        g_assert_true(p->match_start);
        g_assert_cmpuint(p->start, ==, UINT64_C(0x880000000));
        g_assert_cmpuint(p->boundary, ==, 0);
        /* DefaultAlign applies even when set after the pool. */
        g_assert_cmpuint(p->align, ==, 4 * KiB);
        g_assert_false(p->manage);

        p = &c->pools[2];
        g_assert_cmpuint(p->start, ==, 64 * GiB);
        g_assert_cmpuint(p->align, ==, 4 * KiB);

        p = &c->pools[3];
        g_assert_cmpuint(p->boundary, ==, 2 * MiB);
        g_assert_cmpuint(p->align, ==, GiB);
}

static void test_manage_unlisted_explicit(void) {
        g_autoptr(Config) c = load_ok("[Broker]\nManageUnlisted=yes\n[Pool a]\nRegion=3\n");
        g_autoptr(Config) d = load_ok("[Broker]\nManageUnlisted=no\n");

        g_assert_true(c->manage_unlisted);
        g_assert_false(d->manage_unlisted);
}

static void test_pool_rejects(void) {
        LOAD_FAILS("[Pool a]\nManage=yes\n",
                   "<data>: [Pool a]: needs exactly one of Region= or Start=, has neither");
        LOAD_FAILS("[Pool a]\n", "[Pool a]: needs exactly one of Region= or Start=, has neither");
        LOAD_FAILS("[Pool a]\nRegion=0\nStart=4G\n", "[Pool a]: needs exactly one", "has both");
        LOAD_FAILS("[Pool a]\nRegion=x\n", "<data>: [Pool a] Region: is not a region number (value 'x')");
        LOAD_FAILS("[Pool a]\nRegion=-1\n", "[Pool a] Region", "(value '-1')");
        LOAD_FAILS("[Pool a]\nRegion=4294967296\n", "[Pool a] Region", "(value '4294967296')");
        LOAD_FAILS("[Pool a]\nStart=4Q\n", "[Pool a] Start: is not an address (value '4Q')");
        LOAD_FAILS("[Pool a]\nStart=-4G\n", "[Pool a] Start", "(value '-4G')");
        LOAD_FAILS("[Pool a]\nRegion=0\nBoundary=1M\n",
                   "[Pool a] Boundary: must be 0 or a power of two of at least 2 MiB (value '1M')");
        LOAD_FAILS("[Pool a]\nRegion=0\nBoundary=3M\n", "[Pool a] Boundary", "(value '3M')");
        /* A multiple of 2 MiB, but placement needs a power of two. */
        LOAD_FAILS("[Pool a]\nRegion=0\nBoundary=6M\n", "[Pool a] Boundary", "power of two", "(value '6M')");
        LOAD_FAILS("[Pool a]\nRegion=0\nBoundary=big\n", "[Pool a] Boundary: is not a size (value 'big')");
        LOAD_FAILS("[Pool a]\nRegion=0\nAlign=64K\n", "[Pool a] Align: must be 4K, 2M or 1G (value '64K')");
}

/* Host return: defaults, accepted spellings, and what is refused. */
static void test_pool_tier_colors(void) {
        g_autoptr(Config) d = load_ok("[Pool a]\nRegion=0\n");
        g_autoptr(Config) c = load_ok("[Pool a]\nRegion=0\nTier=fast_1\nColors=4\n");
        g_autoptr(Config) reset = load_ok("[Pool a]\nRegion=0\nTier=fast\nColors=4\nTier=\nColors=\n");

        g_assert_null(d->pools[0].tier);
        g_assert_cmpuint(d->pools[0].colors, ==, 0);
        g_assert_cmpstr(c->pools[0].tier, ==, "fast_1");
        g_assert_cmpuint(c->pools[0].colors, ==, 4);
        g_assert_null(reset->pools[0].tier);
        g_assert_cmpuint(reset->pools[0].colors, ==, 0);

        LOAD_FAILS("[Pool a]\nRegion=0\nTier=fast tier\n", "Tier", "may contain only");
        LOAD_FAILS("[Pool a]\nRegion=0\nColors=1\n", "Colors", "from 2 to 64");
        LOAD_FAILS("[Pool a]\nRegion=0\nColors=65\n", "Colors", "from 2 to 64");
        LOAD_FAILS("[Pool a]\nRegion=0\nColors=four\n", "Colors", "from 2 to 64");
}

static void test_pool_host_return(void) {
        g_autoptr(Config) d = load_ok("[Pool a]\nRegion=0\n");
        g_autoptr(Config) c = load_ok("[Pool a]\nRegion=0\nHostReturn=yes\nHostChunk=256M\nReserve=512M\n"
                                      "HostReturnDelay=1500ms\n");
        uint64_t us = 0;

        g_assert_false(d->pools[0].host_return);
        g_assert_cmpuint(d->pools[0].host_chunk, ==, 0);
        g_assert_cmpuint(d->pools[0].reserve, ==, 0);
        g_assert_cmpuint(d->pools[0].host_delay_usec, ==, DEFAULT_HOST_DELAY_USEC);

        g_assert_true(c->pools[0].host_return);
        g_assert_cmpuint(c->pools[0].host_chunk, ==, 256 * MiB);
        g_assert_cmpuint(c->pools[0].reserve, ==, 512 * MiB);
        g_assert_cmpuint(c->pools[0].host_delay_usec, ==, 1500 * 1000);

        g_assert_cmpint(parse_timespan("30", &us), ==, 0);
        g_assert_cmpuint(us, ==, 30 * 1000 * 1000);
        g_assert_cmpint(parse_timespan("2min", &us), ==, 0);
        g_assert_cmpuint(us, ==, 120 * 1000 * 1000);
        g_assert_cmpint(parse_timespan("0", &us), ==, 0);
        g_assert_cmpuint(us, ==, 0);
        g_assert_cmpint(parse_timespan("-1s", &us), ==, -EINVAL);
        g_assert_cmpint(parse_timespan("5 fortnights", &us), ==, -EINVAL);
        g_assert_cmpint(parse_timespan("99999999999999999999", &us), ==, -EINVAL);
        g_assert_cmpint(parse_timespan("", &us), ==, -EINVAL);

        LOAD_FAILS("[Pool a]\nRegion=0\nHostReturn=sometimes\n",
                   "[Pool a] HostReturn: is not a boolean (value 'sometimes')");
        LOAD_FAILS("[Pool a]\nRegion=0\nHostChunk=0\n", "[Pool a] HostChunk: must be a non-zero size");
        LOAD_FAILS("[Pool a]\nRegion=0\nHostChunk=3K\n", "[Pool a] HostChunk:");
        LOAD_FAILS("[Pool a]\nRegion=0\nReserve=1M\n", "[Pool a] Reserve: must be a size in whole 2 MiB units");
        LOAD_FAILS("[Pool a]\nRegion=0\nHostReturnDelay=soon\n",
                   "[Pool a] HostReturnDelay: is not a time span", "value 'soon'");
}

static void test_pool_duplicates(void) {
        LOAD_FAILS("[Pool a]\nRegion=1\n[Pool b]\nRegion=1\n",
                   "<data>: [Pool b] Region: region is already matched by [Pool a] (value '1')");
        LOAD_FAILS("[Pool a]\nStart=4G\n[Pool b]\nStart=0x100000000\n",
                   "<data>: [Pool b] Start: start address is already matched by [Pool a] (value '0x100000000')");

        /* The same section twice is one pool, not a duplicate. */
        {
                g_autoptr(Config) c = load_ok("[Pool a]\nRegion=1\n[Pool a]\nAlign=4K\n");

                g_assert_cmpuint(c->n_pools, ==, 1);
                g_assert_cmpuint(c->pools[0].region_id, ==, 1);
                g_assert_cmpuint(c->pools[0].align, ==, 4 * KiB);
        }
}

static void test_find_pool(void) {
        g_autoptr(Config) c = load_ok("[Pool by-start]\nStart=4G\n"
                                      "[Pool by-region]\nRegion=1\n"
                                      "[Pool other]\nRegion=2\n");

        g_assert_cmpstr(config_find_pool(c, 2, 0)->name, ==, "other");
        g_assert_cmpstr(config_find_pool(c, 7, 4 * GiB)->name, ==, "by-start");
        /* Region= is more specific than another pool's Start=. */
        g_assert_cmpstr(config_find_pool(c, 1, 4 * GiB)->name, ==, "by-region");
        g_assert_null(config_find_pool(c, 9, 8 * GiB));
}

static void test_load_missing(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "daxbroker.conf", NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(Config) c = config_load(path, &error);

        g_assert_no_error(error);
        assert_defaults(c);
}

static void test_load_dropins(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "daxbroker.conf", NULL);
        g_autofree char *dropins = g_build_filename(dir, "daxbroker.conf.d", NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(Config) c = NULL;

        write_file(dir, "daxbroker.conf",
                   "[Broker]\nMaxRanges=8\nMaxAllocationsPerOwner=10\n"
                   "[Pool fast]\nRegion=0\nAlign=1G\nBoundary=2G\n");
        g_assert_cmpint(g_mkdir(dropins, 0700), ==, 0);
        /* Read in lexical order, not directory order or mtime. */
        write_file(dropins, "20-b.conf", "[Broker]\nMaxRanges=20\n");
        write_file(dropins, "10-a.conf", "[Broker]\nMaxRanges=10\n[Pool fast]\nAlign=2M\n");
        write_file(dropins, "30-c.conf", "[Pool slow]\nStart=16G\n");
        /* Not *.conf: ignored, even though it is invalid. */
        write_file(dropins, "99-z.conf.disabled", "[Nonsense]\n");
        write_file(dropins, "README", "not a config file\n");

        c = config_load(path, &error);
        g_assert_no_error(error);
        g_assert_nonnull(c);

        g_assert_cmpuint(c->max_ranges, ==, 20);
        /* Keys nobody overrode survive from the main file. */
        g_assert_cmpuint(c->max_allocations_per_owner, ==, 10);
        g_assert_false(c->manage_unlisted);
        g_assert_cmpuint(c->n_pools, ==, 2);
        g_assert_cmpstr(c->pools[0].name, ==, "fast");
        g_assert_cmpuint(c->pools[0].region_id, ==, 0);
        g_assert_cmpuint(c->pools[0].align, ==, 2 * MiB);
        g_assert_cmpuint(c->pools[0].boundary, ==, 2 * GiB);
        g_assert_cmpstr(c->pools[1].name, ==, "slow");
        g_assert_cmpuint(c->pools[1].start, ==, 16 * GiB);
}

static void test_load_dropin_reset(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "daxbroker.conf", NULL);
        g_autofree char *dropins = g_build_filename(dir, "daxbroker.conf.d", NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(Config) c = NULL;

        write_file(dir, "daxbroker.conf", "[Broker]\nMaxRanges=8\n[Pool a]\nRegion=0\nAlign=1G\n");
        g_assert_cmpint(g_mkdir(dropins, 0700), ==, 0);
        /* An empty value returns a key to its default, so a drop-in can
         * switch the pool from Region= to Start=. */
        write_file(dropins, "50-start.conf", "[Broker]\nMaxRanges=\n[Pool a]\nRegion=\nStart=4G\nAlign=\n");

        c = config_load(path, &error);
        g_assert_no_error(error);
        g_assert_cmpuint(c->max_ranges, ==, 16);
        g_assert_false(c->pools[0].match_region);
        g_assert_true(c->pools[0].match_start);
        g_assert_cmpuint(c->pools[0].start, ==, 4 * GiB);
        g_assert_cmpuint(c->pools[0].align, ==, 2 * MiB);
}

static void test_load_dropins_without_main(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "daxbroker.conf", NULL);
        g_autofree char *dropins = g_build_filename(dir, "daxbroker.conf.d", NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(Config) c = NULL;

        g_assert_cmpint(g_mkdir(dropins, 0700), ==, 0);
        write_file(dropins, "10.conf", "[Broker]\nMaxRanges=3\n");

        c = config_load(path, &error);
        g_assert_no_error(error);
        g_assert_cmpuint(c->max_ranges, ==, 3);
}

static void test_load_errors_name_file(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "daxbroker.conf", NULL);
        g_autofree char *dropins = g_build_filename(dir, "daxbroker.conf.d", NULL);
        g_autofree char *bad = g_build_filename(dropins, "20-bad.conf", NULL);
        g_autofree char *first = g_build_filename(dropins, "10-a.conf", NULL);
        g_autofree char *expected = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(Config) c = NULL;

        write_file(dir, "daxbroker.conf", "[Pool a]\nRegion=0\n");
        g_assert_cmpint(g_mkdir(dropins, 0700), ==, 0);
        write_file(dropins, "10-a.conf", "[Pool b]\nManage=no\n");
        write_file(dropins, "20-bad.conf", "[Pool b]\nRegion=0\n");

        /* The duplicate is reported where its value was written. */
        c = config_load(path, &error);
        g_assert_null(c);
        expected = g_strdup_printf("%s: [Pool b] Region: region is already matched by [Pool a] (value '0')", bad);
        g_assert_cmpstr(error->message, ==, expected);
        g_clear_error(&error);
        g_free(expected);

        /* A missing key is reported where the section first appeared. */
        write_file(dropins, "20-bad.conf", "[Broker]\n");
        c = config_load(path, &error);
        g_assert_null(c);
        expected = g_strdup_printf("%s: [Pool b]: needs exactly one of Region= or Start=, has neither", first);
        g_assert_cmpstr(error->message, ==, expected);
        g_clear_error(&error);

        /* A syntax error names its file too. */
        write_file(dropins, "20-bad.conf", "[Broker\n");
        c = config_load(path, &error);
        g_assert_null(c);
        g_assert_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE);
        g_assert_true(g_str_has_prefix(error->message, bad));
}

static void test_load_unreadable(void) {
        g_autofree char *dir = make_case_dir();
        g_autofree char *path = g_build_filename(dir, "daxbroker.conf", NULL);
        g_autofree char *dropins = g_build_filename(dir, "daxbroker.conf.d", NULL);
        g_autofree char *sub = g_build_filename(dropins, "10-dir.conf", NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(Config) c = NULL;

        /* Only a missing file means "defaults"; anything else is an error. */
        g_assert_cmpint(g_mkdir(path, 0700), ==, 0);
        c = config_load(path, &error);
        g_assert_null(c);
        g_assert_error(error, G_FILE_ERROR, G_FILE_ERROR_ISDIR);
        g_clear_error(&error);
        g_assert_cmpint(g_rmdir(path), ==, 0);

        write_file(dir, "daxbroker.conf.d", "a file where a directory belongs\n");
        c = config_load(path, &error);
        g_assert_null(c);
        g_assert_error(error, G_FILE_ERROR, G_FILE_ERROR_NOTDIR);
        g_clear_error(&error);
        g_assert_cmpint(g_unlink(dropins), ==, 0);

        /* A *.conf that is a directory is not silently skipped. */
        g_assert_cmpint(g_mkdir(dropins, 0700), ==, 0);
        g_assert_cmpint(g_mkdir(sub, 0700), ==, 0);
        c = config_load(path, &error);
        g_assert_null(c);
        g_assert_nonnull(error);
}

int main(int argc, char **argv) {
        int r;

        g_test_init(&argc, &argv, NULL);

        test_dir = g_dir_make_tmp("test-config-XXXXXX", NULL);
        g_assert_nonnull(test_dir);

        g_test_add_func("/config/parse-size", test_parse_size);
        g_test_add_func("/config/defaults", test_defaults);
        g_test_add_func("/config/broker-section", test_broker_section);
        g_test_add_func("/config/values-are-trimmed", test_values_are_trimmed);
        g_test_add_func("/config/libvirt-keys", test_libvirt_keys);
        g_test_add_func("/config/journal-ranges", test_journal_ranges);
        g_test_add_func("/config/booleans", test_booleans);
        g_test_add_func("/config/broker-rejects", test_broker_rejects);
        g_test_add_func("/config/unknown-names", test_unknown_names);
        g_test_add_func("/config/pool-names", test_pool_names);
        g_test_add_func("/config/pools", test_pools);
        g_test_add_func("/config/manage-unlisted-explicit", test_manage_unlisted_explicit);
        g_test_add_func("/config/pool-rejects", test_pool_rejects);
        g_test_add_func("/config/pool-duplicates", test_pool_duplicates);
        g_test_add_func("/config/pool-host-return", test_pool_host_return);
        g_test_add_func("/config/pool-tier-colors", test_pool_tier_colors);
        g_test_add_func("/config/find-pool", test_find_pool);
        g_test_add_func("/config/load-missing", test_load_missing);
        g_test_add_func("/config/load-dropins", test_load_dropins);
        g_test_add_func("/config/load-dropin-reset", test_load_dropin_reset);
        g_test_add_func("/config/load-dropins-without-main", test_load_dropins_without_main);
        g_test_add_func("/config/load-errors-name-file", test_load_errors_name_file);
        g_test_add_func("/config/load-unreadable", test_load_unreadable);

        r = g_test_run();

        rm_rf(test_dir);
        g_free(test_dir);
        return r;
}
