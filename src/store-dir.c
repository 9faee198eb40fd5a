/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The state directory (format version 3), one small file per record, so
 * that an operation writes and fsyncs only the records it changes, never
 * the whole state:
 *
 *   meta.json               {"version": 3, "boot_id": "0f3c..."}  boot_id optional
 *   allocation-ID.json      one allocation, exactly the members of a
 *                           state.json allocation (store.c), ID its id
 *   owner-NAME.json         {"owner": "vm1", "uid": 107}: who an owner of an
 *                           allocation belongs to. NAME is the owner when it
 *                           is 1..64 of A-Z a-z 0-9 _ -, otherwise the file
 *                           is owner=SHA256.json, the hex SHA-256 of the name
 *   host-R-START.json       {"region": 0, "start": 6442450944, "size": 1073741824}
 *                           a chunk of ours bound to kmem; START in hex (0x...)
 *   dirty-R-START.json      the same for memory to zero before use
 *
 * Every file is one line of JSON. It is written as a temporary file
 * (.tmp-XXXXXX), fsync'ed and renamed over its name; a durable save then
 * fsyncs the directory. A save that changes several files writes all new
 * and changed files before it removes any, allocations last among the
 * writes and first among the removals, dirty ranges the other way round:
 * a crash half-way leaves a record of memory twice (harmless: dirt is
 * zeroed once more; two claims are refused on load) rather than memory
 * nobody records. An owner is written before its first allocation; its
 * file stays after its last one is gone (up to OWNER_FILES_IDLE_MAX such
 * files), so that the owner's next allocation writes one file, not two.
 *
 * Loading checks every file with the rules of state.json, each on its own
 * and across files (no memory owned twice). A bad file is renamed to
 * NAME.corrupt-TIME and only it is lost: the good records load. Both files
 * of a conflict are set aside, because which one is right cannot be known.
 *
 * The store remembers what it last wrote to each directory, so a save
 * compares in memory and touches the disk only for what differs.
 */

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernel-ops.h"
#include "log.h"
#include "store-private.h"
#include "util.h"

#define STORE_DIR_VERSION 3
/* A record is a few hundred bytes; anything far larger is not ours. */
#define RECORD_SIZE_MAX (64 * 1024)
#define OWNER_PLAIN_MAX 64
/* Files of owners that hold nothing kept at most; more are all removed. */
#define OWNER_FILES_IDLE_MAX 64

void (*store_test_step)(const char *step);

static void test_step(const char *step) {
        if (store_test_step)
                store_test_step(step);
}

/* One file on disk as this process last wrote or read it: its text
 * without the final newline, and the save that last found it wanted. */
typedef struct Entry {
        char *text;
        uid_t uid;    /* owners */
        uint64_t gen;
} Entry;

static void entry_free(Entry *e) {
        g_free(e->text);
        g_free(e);
}

/* What is on disk in one directory. Allocations are found by id and owners
 * by name, so that a save finds a record's file without building its
 * name; meta, host and dirty files by file name. */
typedef struct StoreView {
        GHashTable *allocations; /* id -> Entry* */
        GHashTable *owners;      /* owner -> Entry* */
        GHashTable *files;       /* file name -> Entry* */
        uint64_t gen;            /* of the last save */
        bool unsynced; /* renames or removals not yet made durable by an fsync of the directory */
} StoreView;

static GHashTable *views; /* directory -> StoreView* */

static void view_free(StoreView *v) {
        g_hash_table_unref(v->allocations);
        g_hash_table_unref(v->owners);
        g_hash_table_unref(v->files);
        g_free(v);
}

static GHashTable *entries_new(void) {
        return g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify) entry_free);
}

static StoreView *view_reset(const char *dir) {
        StoreView *v = g_new0(StoreView, 1);

        if (!views)
                views = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify) view_free);
        v->allocations = entries_new();
        v->owners = entries_new();
        v->files = entries_new();
        g_hash_table_replace(views, g_strdup(dir), v);
        return v;
}

static Entry *entry_put(GHashTable *h, const char *key, const char *text) {
        Entry *e = g_hash_table_lookup(h, key);

        if (!e) {
                e = g_new0(Entry, 1);
                g_hash_table_insert(h, g_strdup(key), e);
        }
        g_free(e->text);
        e->text = g_strdup(text);
        return e;
}

void store_forget(const char *dir) {
        if (views)
                g_hash_table_remove(views, dir);
}

typedef enum FileKind {
        FILE_OWNER,
        FILE_DIRTY,
        FILE_HOST,
        FILE_ALLOCATION,
        FILE_META,
        FILE_UNKNOWN,
} FileKind;

static FileKind file_kind(const char *name) {
        if (!g_str_has_suffix(name, ".json"))
                return FILE_UNKNOWN;
        if (strcmp(name, "meta.json") == 0)
                return FILE_META;
        if (g_str_has_prefix(name, "allocation-"))
                return FILE_ALLOCATION;
        if (g_str_has_prefix(name, "owner-") || g_str_has_prefix(name, "owner="))
                return FILE_OWNER;
        if (g_str_has_prefix(name, "host-"))
                return FILE_HOST;
        if (g_str_has_prefix(name, "dirty-"))
                return FILE_DIRTY;
        return FILE_UNKNOWN;
}

static char *owner_file_name(const char *owner) {
        g_autofree char *hash = NULL;

        if (store_identifier_valid(owner, OWNER_PLAIN_MAX))
                return g_strdup_printf("owner-%s.json", owner);
        hash = g_compute_checksum_for_string(G_CHECKSUM_SHA256, owner, -1);
        return g_strdup_printf("owner=%s.json", hash);
}

static char *range_file_name(const char *kind, const RegionRange *r) {
        return g_strdup_printf("%s-%u-%#" G_GINT64_MODIFIER "x.json", kind, r->region_id, r->start);
}

static char *range_text(const RegionRange *r) {
        return g_strdup_printf("{\"region\": %u, \"start\": %" G_GUINT64_FORMAT ", \"size\": %" G_GUINT64_FORMAT "}",
                               r->region_id, r->start, r->size);
}

static char *owner_text(const char *owner, uid_t uid) {
        g_autoptr(JsonNode) node = json_node_init_string(json_node_alloc(), owner);
        g_autofree char *quoted = json_to_string(node, FALSE);

        return g_strdup_printf("{\"owner\": %s, \"uid\": %u}", quoted, (unsigned) uid);
}

static char *meta_text(const char *boot_id) {
        /* boot_id is a UUID from the kernel or validated on load. */
        if (boot_id)
                return g_strdup_printf("{\"version\": %d, \"boot_id\": \"%s\"}", STORE_DIR_VERSION, boot_id);
        return g_strdup_printf("{\"version\": %d}", STORE_DIR_VERSION);
}

/* Writes dir/name atomically: with sync, the data is on disk before the
 * name can point at it, so a power cut leaves the old file or the new one. */
static int write_record_file(const char *dir, const char *name, const char *text, bool sync, GError **error) {
        g_autofree char *tmp = g_build_filename(dir, ".tmp-XXXXXX", NULL);
        g_autofree char *path = g_build_filename(dir, name, NULL);
        const char *step;
        int fd, r;

        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "%s: cannot create temporary file: %s", path, g_strerror(-r));
                return r;
        }
        /* mkostemp()'s 0600 is filtered by the umask; make it exact. */
        step = "set mode of";
        r = fchmod(fd, 0600) < 0 ? -errno : 0;
        if (r == 0) {
                g_autofree char *line = g_strconcat(text, "\n", NULL);
                step = "write";
                r = store_write_all(fd, line, strlen(line));
        }
        if (r == 0 && sync) {
                step = "fsync";
                r = fsync(fd) < 0 ? -errno : 0;
        }
        if (close(fd) < 0 && r == 0) {
                step = "close";
                r = -errno;
        }
        if (r == 0) {
                step = "rename";
                r = rename(tmp, path) < 0 ? -errno : 0;
        }
        if (r < 0) {
                (void) unlink(tmp);
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: cannot %s temporary file %s: %s",
                            path, step, tmp, g_strerror(-r));
                return r;
        }
        return 0;
}

static int fsync_dir(const char *dir, GError **error) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0 || fsync(fd) < 0) {
                int r = -errno;
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: cannot fsync directory: %s", dir,
                            g_strerror(-r));
                return r;
        }
        return 0;
}

/* ---- saving ---- */

/* A file to write or remove: key into one of the view's tables. */
typedef struct Change {
        FileKind kind;
        char *key;
        char *text;    /* NULL: remove */
        uid_t uid;
} Change;

static void change_clear(void *p) {
        Change *c = p;
        g_free(c->key);
        g_free(c->text);
}

static char *change_file_name(const Change *c) {
        switch (c->kind) {
        case FILE_ALLOCATION:
                return g_strconcat("allocation-", c->key, ".json", NULL);
        case FILE_OWNER:
                return owner_file_name(c->key);
        default:
                return g_strdup(c->key);
        }
}

static GHashTable *view_table(StoreView *v, FileKind kind) {
        return kind == FILE_ALLOCATION ? v->allocations : kind == FILE_OWNER ? v->owners : v->files;
}

static bool ranges_meet(uint64_t a, uint64_t as, uint64_t b, uint64_t bs) {
        return a < b + bs && b < a + as;
}

G_GNUC_PRINTF(2, 3)
static int invalid(GError **error, const char *format, ...) {
        g_autofree char *message = NULL;
        va_list ap;

        va_start(ap, format);
        message = g_strdup_vprintf(format, ap);
        va_end(ap);
        g_set_error_literal(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA, message);
        return -EBADMSG;
}

/* A record that changed is checked as loading would check it, against
 * every other record: a save must never write what the next start
 * refuses. Records that did not change were checked when they did. */
static int check_changed(const StoreState *st, const GPtrArray *changed, GError **error) {
        for (guint c = 0; c < changed->len; c++) {
                size_t i = GPOINTER_TO_SIZE(changed->pdata[c]);
                const AllocationRecord *r = st->allocations->pdata[i];
                int ret = store_record_validate(r, i, error);

                if (ret < 0)
                        return ret;
                for (unsigned k = 0; k < r->n_ranges; k++) {
                        for (unsigned q = 0; q < k; q++)
                                if (ranges_meet(r->ranges[k].start, r->ranges[k].size, r->ranges[q].start,
                                                r->ranges[q].size))
                                        return invalid(error, "allocation %zu (id '%s'): ranges[%u]: overlaps ranges[%u]",
                                                       i, r->id, k, q);
                        for (guint o = 0; o < st->allocations->len; o++) {
                                const AllocationRecord *x = st->allocations->pdata[o];

                                if (o == i || x->region_id != r->region_id)
                                        continue;
                                for (unsigned q = 0; q < x->n_ranges; q++)
                                        if (ranges_meet(r->ranges[k].start, r->ranges[k].size, x->ranges[q].start,
                                                        x->ranges[q].size))
                                                return invalid(error,
                                                               "allocation %zu (id '%s'): ranges[%u]: overlaps ranges[%u] "
                                                               "of allocation %u (id '%s')",
                                                               i, r->id, k, q, o, x->id);
                        }
                        for (guint h = 0; st->host && h < st->host->len; h++) {
                                const RegionRange *hr = &g_array_index(st->host, RegionRange, h);
                                if (hr->region_id == r->region_id &&
                                    ranges_meet(r->ranges[k].start, r->ranges[k].size, hr->start, hr->size))
                                        return invalid(error, "host %u: overlaps another host chunk or an allocation", h);
                        }
                }
        }
        return 0;
}

static bool dirty_valid(const RegionRange *d) {
        return d->size > 0 && d->start % (2 * MiB) == 0 && d->size % (2 * MiB) == 0 && d->start + d->size > d->start &&
               d->start <= INT64_MAX && d->size <= INT64_MAX;
}

/* Compares st with the view: the files to write (changed, in the order
 * they must be written) and to remove. Costs a hash lookup per record;
 * only what changed is formatted and validated. */
static int diff(StoreView *v, const StoreState *st, GArray *changes, GError **error) {
        g_autoptr(GPtrArray) changed = g_ptr_array_new();
        g_autoptr(GHashTable) new_ids = NULL;
        g_autoptr(GArray) ranges = g_array_new(FALSE, FALSE, sizeof(Change));
        uint64_t gen = ++v->gen;
        unsigned seen_allocations = 0, seen_owners = 0, seen_files = 0;
        bool host_changed = false;
        g_autofree char *meta = NULL;
        Entry *e;
        int r;

        g_array_set_clear_func(ranges, change_clear);

        /* Allocations, and the owners they name. */
        for (guint i = 0; i < st->allocations->len; i++) {
                AllocationRecord *rec = st->allocations->pdata[i];
                const char *text;
                void *u;
                uid_t uid = rec->owner_uid;

                if (!rec->id || !rec->owner)
                        return store_record_validate(rec, i, error);
                text = store_record_text(rec);
                e = g_hash_table_lookup(v->allocations, rec->id);
                if (e && e->gen == gen)
                        return invalid(error, "allocation %u (id '%s'): id: is recorded twice", i, rec->id);
                if (!e) {
                        if (!new_ids)
                                new_ids = g_hash_table_new(g_str_hash, g_str_equal);
                        if (!g_hash_table_add(new_ids, rec->id))
                                return invalid(error, "allocation %u (id '%s'): id: is recorded twice", i, rec->id);
                } else {
                        e->gen = gen;
                        seen_allocations++;
                }
                if (!e || !e->text || strcmp(e->text, text) != 0) {
                        Change c = { FILE_ALLOCATION, g_strdup(rec->id), g_strdup(text), 0 };
                        g_array_append_val(changes, c);
                        g_ptr_array_add(changed, GSIZE_TO_POINTER((gsize) i));
                }

                if (st->owners && g_hash_table_lookup_extended(st->owners, rec->owner, NULL, &u))
                        uid = (uid_t) GPOINTER_TO_UINT(u);
                e = g_hash_table_lookup(v->owners, rec->owner);
                if (e && e->gen == gen)
                        continue;
                if (e) {
                        e->gen = gen;
                        seen_owners++;
                }
                if (!e || !e->text || e->uid != uid) {
                        const char *reason = name_invalid_reason(rec->owner);
                        Change c = { FILE_OWNER, NULL, NULL, uid };

                        if (reason)
                                return invalid(error, "allocation %u (id '%s'): owner: %s", i, rec->id, reason);
                        c.key = g_strdup(rec->owner);
                        c.text = owner_text(rec->owner, uid);
                        g_array_append_val(changes, c);
                        if (!e) {
                                /* Marks the owner as handled in this save. */
                                e = entry_put(v->owners, rec->owner, NULL);
                                e->uid = (uid_t) -1;
                                e->gen = gen;
                                seen_owners++;
                        }
                }
        }
        r = check_changed(st, changed, error);
        if (r < 0)
                return r;

        /* Host chunks and dirt: few, compared by file name. */
        for (int pass = 0; pass < 2; pass++) {
                const GArray *a = pass == 0 ? st->host : st->dirty;

                for (guint i = 0; a && i < a->len; i++) {
                        const RegionRange *d = &g_array_index(a, RegionRange, i);
                        g_autofree char *name = range_file_name(pass == 0 ? "host" : "dirty", d);
                        g_autofree char *text = NULL;

                        if (pass == 1 && !dirty_valid(d))
                                return invalid(error, "dirty %u: must be a non-empty range of whole 2 MiB units", i);
                        e = g_hash_table_lookup(v->files, name);
                        if (e && e->gen == gen)
                                return invalid(error, "%s %u: is recorded twice", pass == 0 ? "host" : "dirty", i);
                        text = range_text(d);
                        if (e) {
                                e->gen = gen;
                                seen_files++;
                        }
                        if (!e || !e->text || strcmp(e->text, text) != 0) {
                                Change c = { pass == 0 ? FILE_HOST : FILE_DIRTY, g_steal_pointer(&name),
                                             g_steal_pointer(&text), 0 };
                                g_array_append_val(ranges, c);
                                host_changed = host_changed || pass == 0;
                        }
                }
        }

        meta = meta_text(st->boot_id);
        e = g_hash_table_lookup(v->files, "meta.json");
        if (e) {
                e->gen = gen;
                seen_files++;
        }
        if (!e || !e->text || strcmp(e->text, meta) != 0) {
                Change c = { FILE_META, g_strdup("meta.json"), g_steal_pointer(&meta), 0 };
                g_array_append_val(changes, c);
        }

        /* What the state no longer has. Counting the files found spares a
         * walk over all of them when nothing went away. */
        for (int kind = 0; kind < 3; kind++) {
                GHashTable *h = kind == 0 ? v->allocations : kind == 1 ? v->owners : v->files;
                unsigned seen = kind == 0 ? seen_allocations : kind == 1 ? seen_owners : seen_files;
                GHashTableIter it;
                void *key, *value;

                if (seen == g_hash_table_size(h))
                        continue;
                /* An owner's file outlives its last allocation, up to a
                 * point: the owner's next Allocate (a VM started again)
                 * then writes and fsyncs one file, not two. A load keeps
                 * only owners that hold something, and an owner taken by
                 * another uid has its file rewritten before its first
                 * allocation. */
                if (kind == 1 && g_hash_table_size(h) - seen <= OWNER_FILES_IDLE_MAX)
                        continue;
                g_hash_table_iter_init(&it, h);
                while (g_hash_table_iter_next(&it, &key, &value)) {
                        Entry *x = value;
                        Change c = { kind == 0 ? FILE_ALLOCATION : kind == 1 ? FILE_OWNER : file_kind(key),
                                     NULL, NULL, 0 };

                        if (x->gen == gen)
                                continue;
                        c.key = g_strdup(key);
                        host_changed = host_changed || c.kind == FILE_HOST;
                        g_array_append_val(ranges, c);
                }
        }
        if (host_changed && st->host) {
                r = store_host_validate(st->host, st->allocations, error);
                if (r < 0)
                        return r;
        }
        for (guint i = 0; i < ranges->len; i++) {
                Change *c = &g_array_index(ranges, Change, i);
                g_array_append_val(changes, *c);
                *c = (Change) {};
        }
        return 0;
}

/* Order of writes: owners before the allocations that name them, dirt
 * before the claims it replaces; removals the other way round. */
static const unsigned write_rank[] = {
        [FILE_OWNER] = 0, [FILE_DIRTY] = 1, [FILE_HOST] = 2, [FILE_ALLOCATION] = 3, [FILE_META] = 4, [FILE_UNKNOWN] = 5,
};
static const unsigned unlink_rank[] = {
        [FILE_ALLOCATION] = 0, [FILE_HOST] = 1, [FILE_OWNER] = 2, [FILE_DIRTY] = 3, [FILE_META] = 4, [FILE_UNKNOWN] = 5,
};

static int load_directory(const char *dir, const RegionRange *regions, size_t n_regions, StoreState *ret,
                          GString *set_aside, GString *reasons, GError **error);

/* A directory this process has not read yet is read first (and created
 * if missing), so that the save knows what is there. */
static int view_scan(const char *dir, StoreView **ret, GError **error) {
        g_autoptr(GString) aside = g_string_new(NULL), reasons = g_string_new(NULL);
        StoreState st;
        int r;

        if (mkdir(dir, 0700) == 0) {
                g_autofree char *parent = g_path_get_dirname(dir);
                r = fsync_dir(parent, error);
                if (r < 0)
                        return r;
        } else if (errno != EEXIST) {
                r = -errno;
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: cannot create directory: %s", dir,
                            g_strerror(-r));
                return r;
        }
        r = load_directory(dir, NULL, 0, &st, aside, reasons, error);
        if (r < 0)
                return r;
        if (r > 0)
                log_warning("Invalid state file: %s. Kept it as %s", reasons->str, aside->str);
        store_state_clear(&st);
        *ret = g_hash_table_lookup(views, dir);
        return 0;
}

/* Does the save only add allocation records, replacing and removing
 * nothing? */
static bool only_new_allocations(StoreView *v, const GArray *changes) {
        for (guint i = 0; i < changes->len; i++) {
                const Change *c = &g_array_index(changes, Change, i);

                if (!c->text || c->kind != FILE_ALLOCATION || g_hash_table_contains(v->allocations, c->key))
                        return false;
        }
        return true;
}

int store_save_state(const char *dir, const StoreState *st, StoreSaveFlags flags, GError **error) {
        g_autoptr(GArray) changes = g_array_new(FALSE, FALSE, sizeof(Change));
        StoreView *v = views ? g_hash_table_lookup(views, dir) : NULL;
        bool wrote = false, removes = false, sync;
        int r;

        g_array_set_clear_func(changes, change_clear);
        if (!v) {
                r = view_scan(dir, &v, error);
                if (r < 0)
                        return r;
        }

        r = diff(v, st, changes, error);
        if (r < 0) {
                g_prefix_error(error, "%s: refusing to save invalid state: ", dir);
                return -EINVAL;
        }
        /* The intent of kernel work about to start (an Allocate's or a warm
         * fill's "creating" record) replaces nothing: after a power cut,
         * which ends that work, the file may be missing or empty (a load
         * sets it aside) and nothing is lost. Not fsync'ing it spares the
         * request a journal commit. Anything that replaces or removes a
         * file (taking dirt off the list, say) keeps the fsync. */
        sync = (flags & STORE_SAVE_DURABLE) || !only_new_allocations(v, changes);

        for (unsigned rank = 0; rank <= write_rank[FILE_META]; rank++)
                for (guint i = 0; i < changes->len; i++) {
                        Change *c = &g_array_index(changes, Change, i);
                        g_autofree char *name = NULL;
                        Entry *e;

                        if (!c->text) {
                                removes = true;
                                continue;
                        }
                        if (write_rank[c->kind] != rank)
                                continue;
                        name = change_file_name(c);
                        r = write_record_file(dir, name, c->text, sync, error);
                        if (r < 0)
                                return r;
                        e = entry_put(view_table(v, c->kind), c->key, c->text);
                        e->uid = c->uid;
                        e->gen = v->gen;
                        v->unsynced = wrote = true;
                }

        if (wrote && removes) {
                test_step("save-written");
                crash_point("state-half-saved");
        }
        for (unsigned rank = 0; removes && rank <= unlink_rank[FILE_UNKNOWN]; rank++)
                for (guint i = 0; i < changes->len; i++) {
                        Change *c = &g_array_index(changes, Change, i);
                        g_autofree char *name = NULL, *path = NULL;

                        if (c->text || unlink_rank[c->kind] != rank)
                                continue;
                        name = change_file_name(c);
                        path = g_build_filename(dir, name, NULL);
                        if (unlink(path) < 0 && errno != ENOENT) {
                                r = -errno;
                                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: cannot remove: %s",
                                            path, g_strerror(-r));
                                return r;
                        }
                        g_hash_table_remove(view_table(v, c->kind), c->key);
                        v->unsynced = true;
                }

        /* Without this a rename or removal may not survive a power cut;
         * for records that a power cut makes moot, the old files are as
         * good. An earlier save's renames become durable here too. */
        if (!(flags & STORE_SAVE_DURABLE) || !v->unsynced)
                return 0;
        r = fsync_dir(dir, error);
        if (r < 0)
                return r;
        v->unsynced = false;
        return 0;
}

/* ---- loading ---- */

typedef struct Loaded {
        char *name;
        char *text;
        char *bad; /* why the file is set aside, or NULL */
        FileKind kind;
        AllocationRecord *rec;  /* FILE_ALLOCATION */
        RegionRange range;      /* FILE_HOST, FILE_DIRTY */
        char *owner;            /* FILE_OWNER */
        uid_t uid;
        char *boot_id;          /* FILE_META */
} Loaded;

static void loaded_free(Loaded *l) {
        g_free(l->name);
        g_free(l->text);
        g_free(l->bad);
        allocation_record_free(l->rec);
        g_free(l->owner);
        g_free(l->boot_id);
        g_free(l);
}

G_GNUC_PRINTF(2, 3)
static void mark_bad(Loaded *l, const char *format, ...) {
        va_list ap;

        if (l->bad)
                return;
        va_start(ap, format);
        l->bad = g_strdup_vprintf(format, ap);
        va_end(ap);
}

static bool members_exactly(JsonObject *o, const char *const *allowed, size_t n, const char **ret_unknown) {
        g_autoptr(GList) members = json_object_get_members(o);

        for (GList *m = members; m; m = m->next) {
                bool known = false;
                for (size_t i = 0; i < n; i++)
                        known = known || strcmp(m->data, allowed[i]) == 0;
                if (!known) {
                        *ret_unknown = m->data;
                        return false;
                }
        }
        return true;
}

static bool member_int(JsonObject *o, const char *name, gint64 *ret) {
        JsonNode *m = json_object_get_member(o, name);

        if (!m || !JSON_NODE_HOLDS_VALUE(m) || json_node_get_value_type(m) != G_TYPE_INT64 || json_node_get_int(m) < 0)
                return false;
        *ret = json_node_get_int(m);
        return true;
}

static void parse_range_file(Loaded *l, JsonObject *o, const char *kind, const RegionRange *regions,
                             size_t n_regions) {
        static const char *const names[] = { "region", "start", "size" };
        g_autofree char *expected = NULL;
        const RegionRange *region;
        const char *unknown;
        gint64 v[3];

        if (!members_exactly(o, names, G_N_ELEMENTS(names), &unknown))
                return mark_bad(l, "%s: unknown member", unknown);
        for (size_t k = 0; k < G_N_ELEMENTS(names); k++)
                if (!member_int(o, names[k], &v[k]))
                        return mark_bad(l, "%s: must be a non-negative integer", names[k]);
        if ((uint64_t) v[0] > UINT_MAX || v[2] == 0 || v[1] % (2 * MiB) || v[2] % (2 * MiB) || v[1] + v[2] < v[1])
                return mark_bad(l, "must be a non-empty range of whole 2 MiB units");
        l->range = (RegionRange) { (unsigned) v[0], (uint64_t) v[1], (uint64_t) v[2] };
        expected = range_file_name(kind, &l->range);
        if (strcmp(expected, l->name) != 0)
                return mark_bad(l, "holds the range of %s", expected);
        region = store_region_find(regions, n_regions, l->range.region_id);
        if (region && !store_range_inside(region, l->range.start, l->range.size))
                mark_bad(l,
                         "[%#" G_GINT64_MODIFIER "x, +%#" G_GINT64_MODIFIER "x) lies outside region %u [%#" G_GINT64_MODIFIER
                         "x, +%#" G_GINT64_MODIFIER "x)",
                         l->range.start, l->range.size, l->range.region_id, region->start, region->size);
}

static void parse_owner_file(Loaded *l, JsonObject *o) {
        static const char *const names[] = { "owner", "uid" };
        g_autofree char *expected = NULL;
        const char *unknown, *owner, *reason;
        JsonNode *m = json_object_get_member(o, "owner");
        gint64 uid;

        if (!members_exactly(o, names, G_N_ELEMENTS(names), &unknown))
                return mark_bad(l, "%s: unknown member", unknown);
        if (!m || !JSON_NODE_HOLDS_VALUE(m) || json_node_get_value_type(m) != G_TYPE_STRING)
                return mark_bad(l, "owner: must be a string");
        owner = json_node_get_string(m);
        reason = name_invalid_reason(owner);
        if (reason)
                return mark_bad(l, "owner: %s", reason);
        if (!member_int(o, "uid", &uid) || uid >= (gint64) UINT32_MAX)
                return mark_bad(l, "uid: must be an integer from 0 to %u", (unsigned) UINT32_MAX - 1);
        expected = owner_file_name(owner);
        if (strcmp(expected, l->name) != 0)
                return mark_bad(l, "holds owner '%s', whose file is %s", owner, expected);
        l->owner = g_strdup(owner);
        l->uid = (uid_t) uid;
}

static void parse_meta_file(Loaded *l, JsonObject *o) {
        static const char *const names[] = { "version", "boot_id" };
        const char *unknown;
        JsonNode *m;
        gint64 version;

        if (!members_exactly(o, names, G_N_ELEMENTS(names), &unknown))
                return mark_bad(l, "%s: unknown member", unknown);
        m = json_object_get_member(o, "version");
        if (!m || !JSON_NODE_HOLDS_VALUE(m) || json_node_get_value_type(m) != G_TYPE_INT64)
                return mark_bad(l, "version: must be an integer");
        version = json_node_get_int(m);
        if (version != STORE_DIR_VERSION)
                return mark_bad(l, "version: unsupported version %" G_GINT64_FORMAT ", this broker reads version %d",
                                version, STORE_DIR_VERSION);
        m = json_object_get_member(o, "boot_id");
        if (m) {
                if (!JSON_NODE_HOLDS_VALUE(m) || json_node_get_value_type(m) != G_TYPE_STRING ||
                    !store_identifier_valid(json_node_get_string(m), 64))
                        return mark_bad(l, "boot_id: must be a boot id string");
                l->boot_id = g_strdup(json_node_get_string(m));
        }
}

static void parse_allocation_file(Loaded *l, JsonNode *root, const RegionRange *regions, size_t n_regions) {
        g_autoptr(AllocationRecord) rec = NULL;
        g_autoptr(GError) e = NULL;
        g_autofree char *expected = NULL;
        const RegionRange *region;

        if (store_parse_allocation(root, 0, &rec, &e) < 0 || store_record_validate(rec, 0, &e) < 0) {
                /* "allocation 0" counts within state.json; here the file names it. */
                const char *m = e->message;
                if (g_str_has_prefix(m, "allocation 0 ("))
                        return mark_bad(l, "allocation %s", m + strlen("allocation 0 "));
                if (g_str_has_prefix(m, "allocation 0: "))
                        return mark_bad(l, "%s", m + strlen("allocation 0: "));
                return mark_bad(l, "%s", m);
        }
        expected = g_strconcat("allocation-", rec->id, ".json", NULL);
        if (strcmp(expected, l->name) != 0)
                return mark_bad(l, "holds allocation '%s', whose file is %s", rec->id, expected);
        region = store_region_find(regions, n_regions, rec->region_id);
        for (unsigned k = 0; region && k < rec->n_ranges; k++)
                if (!store_range_inside(region, rec->ranges[k].start, rec->ranges[k].size))
                        return mark_bad(l,
                                        "ranges[%u]: [%#" G_GINT64_MODIFIER "x, +%#" G_GINT64_MODIFIER
                                        "x) lies outside region %u [%#" G_GINT64_MODIFIER "x, +%#" G_GINT64_MODIFIER "x)",
                                        k, rec->ranges[k].start, rec->ranges[k].size, rec->region_id, region->start,
                                        region->size);
        l->rec = g_steal_pointer(&rec);
}

/* Reads and checks one file on its own. An error is returned only when
 * the file cannot be read: its content may be fine. */
static int load_file(const char *dir, Loaded *l, const RegionRange *regions, size_t n_regions, GError **error) {
        g_autofree char *path = g_build_filename(dir, l->name, NULL);
        g_autoptr(JsonParser) parser = NULL;
        g_autoptr(GError) e = NULL;
        JsonNode *root;
        gsize len = 0;
        int r;

        l->kind = file_kind(l->name);
        r = store_read_file(path, RECORD_SIZE_MAX, &l->text, &len);
        if (r == -EFBIG || r == -EISDIR || r == -EINVAL) {
                mark_bad(l, "%s", r == -EFBIG ? "too big to be a state record" : "not a regular file");
                return 0;
        }
        if (r < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: cannot read state: %s", path,
                            g_strerror(-r));
                return r;
        }
        l->text = g_realloc(l->text, len + 1);
        l->text[len] = 0;
        if (l->kind == FILE_UNKNOWN) {
                mark_bad(l, "not a file of the state directory");
                return 0;
        }
        if (strlen(l->text) != len || !store_json_depth_ok(l->text, len)) {
                mark_bad(l, "not a state record");
                return 0;
        }
        parser = json_parser_new_immutable();
        if (!json_parser_load_from_data(parser, l->text, (gssize) len, &e)) {
                mark_bad(l, "%s", e->message);
                return 0;
        }
        root = json_parser_get_root(parser);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
                mark_bad(l, "top level must be an object");
                return 0;
        }
        switch (l->kind) {
        case FILE_META:
                parse_meta_file(l, json_node_get_object(root));
                break;
        case FILE_ALLOCATION:
                parse_allocation_file(l, root, regions, n_regions);
                break;
        case FILE_OWNER:
                parse_owner_file(l, json_node_get_object(root));
                break;
        case FILE_HOST:
                parse_range_file(l, json_node_get_object(root), "host", regions, n_regions);
                break;
        case FILE_DIRTY:
                parse_range_file(l, json_node_get_object(root), "dirty", regions, n_regions);
                break;
        case FILE_UNKNOWN:
                break;
        }
        /* The view compares texts without the line's end. */
        if (len > 0 && l->text[len - 1] == '\n')
                l->text[len - 1] = 0;
        return 0;
}

typedef struct Claim {
        unsigned region_id;
        uint64_t start, end;
        Loaded *file;
} Claim;

static int claim_compare(gconstpointer x, gconstpointer y) {
        const Claim *a = x, *b = y;

        if (a->region_id != b->region_id)
                return a->region_id < b->region_id ? -1 : 1;
        return a->start < b->start ? -1 : a->start > b->start;
}

/* No memory may be claimed twice, by allocations and host chunks. Both
 * files of a conflict go: neither can be trusted over the other. */
static void check_claims(GPtrArray *files) {
        g_autoptr(GArray) claims = g_array_new(FALSE, FALSE, sizeof(Claim));
        const Claim *reach = NULL;

        for (guint i = 0; i < files->len; i++) {
                Loaded *l = files->pdata[i];

                if (l->bad)
                        continue;
                if (l->kind == FILE_HOST) {
                        Claim c = { l->range.region_id, l->range.start, l->range.start + l->range.size, l };
                        g_array_append_val(claims, c);
                } else if (l->kind == FILE_ALLOCATION)
                        for (unsigned k = 0; k < l->rec->n_ranges; k++) {
                                Claim c = { l->rec->region_id, l->rec->ranges[k].start,
                                            l->rec->ranges[k].start + l->rec->ranges[k].size, l };
                                g_array_append_val(claims, c);
                        }
        }
        g_array_sort(claims, claim_compare);
        for (guint i = 0; i < claims->len; i++) {
                const Claim *c = &g_array_index(claims, Claim, i);

                if (reach && reach->region_id == c->region_id && c->start < reach->end) {
                        if (reach->file == c->file)
                                mark_bad(c->file, "ranges: two of its ranges overlap");
                        else {
                                mark_bad(c->file, "overlaps the memory of %s", reach->file->name);
                                mark_bad(reach->file, "overlaps the memory of %s", c->file->name);
                        }
                }
                if (!reach || reach->region_id != c->region_id || c->end > reach->end)
                        reach = c;
        }
}

static int load_directory(const char *dir, const RegionRange *regions, size_t n_regions, StoreState *ret,
                          GString *set_aside, GString *reasons, GError **error) {
        g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func((GDestroyNotify) loaded_free);
        g_autoptr(GHashTable) owner_uids = store_owners_new();
        g_autoptr(GPtrArray) unowned = g_ptr_array_new();
        StoreState st;
        StoreView *v;
        bool meta_seen = false, any_bad = false;
        DIR *d;
        struct dirent *de;
        int r;

        d = opendir(dir);
        if (!d) {
                r = -errno;
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: cannot read state: %s", dir,
                            g_strerror(-r));
                return r;
        }
        while ((de = readdir(d))) {
                Loaded *l;

                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                    strstr(de->d_name, ".corrupt-"))
                        continue;
                if (g_str_has_prefix(de->d_name, ".tmp-")) {
                        /* A save cut short before its rename: never part of the state. */
                        g_autofree char *path = g_build_filename(dir, de->d_name, NULL);
                        (void) unlink(path);
                        continue;
                }
                l = g_new0(Loaded, 1);
                l->name = g_strdup(de->d_name);
                g_ptr_array_add(files, l);
        }
        closedir(d);

        for (guint i = 0; i < files->len; i++) {
                r = load_file(dir, files->pdata[i], regions, n_regions, error);
                if (r < 0)
                        return r;
        }
        check_claims(files);

        for (guint i = 0; i < files->len; i++) {
                Loaded *l = files->pdata[i];
                g_autofree char *path = NULL, *name = NULL;

                if (!l->bad)
                        continue;
                path = g_build_filename(dir, l->name, NULL);
                r = store_set_aside(path, &name);
                if (r < 0) {
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                                    "%s: %s (and it cannot be set aside: %s)", path, l->bad, g_strerror(-r));
                        return r;
                }
                g_string_append_printf(set_aside, "%s%s", set_aside->len ? ", " : "", name);
                g_string_append_printf(reasons, "%s%s: %s", reasons->len ? "; " : "", path, l->bad);
                any_bad = true;
        }

        store_state_init(&st);
        v = view_reset(dir);
        for (guint i = 0; i < files->len; i++) {
                Loaded *l = files->pdata[i];

                if (l->bad)
                        continue;
                switch (l->kind) {
                case FILE_META:
                        meta_seen = true;
                        st.boot_id = g_steal_pointer(&l->boot_id);
                        (void) entry_put(v->files, l->name, l->text);
                        break;
                case FILE_ALLOCATION:
                        (void) entry_put(v->allocations, l->rec->id, l->text);
                        g_ptr_array_add(st.allocations, g_steal_pointer(&l->rec));
                        break;
                case FILE_OWNER:
                        entry_put(v->owners, l->owner, l->text)->uid = l->uid;
                        g_hash_table_insert(owner_uids, g_steal_pointer(&l->owner), GUINT_TO_POINTER(l->uid));
                        break;
                case FILE_HOST:
                        g_array_append_val(st.host, l->range);
                        (void) entry_put(v->files, l->name, l->text);
                        break;
                case FILE_DIRTY:
                        g_array_append_val(st.dirty, l->range);
                        (void) entry_put(v->files, l->name, l->text);
                        break;
                case FILE_UNKNOWN:
                        break;
                }
        }

        /* Only owners that hold something are kept. An owner whose file
         * is gone belongs, as in version 1, to the uid of its earliest
         * allocation. */
        for (guint i = 0; i < st.allocations->len; i++) {
                AllocationRecord *rec = st.allocations->pdata[i];
                void *uid;

                if (g_hash_table_contains(st.owners, rec->owner))
                        continue;
                if (g_hash_table_lookup_extended(owner_uids, rec->owner, NULL, &uid))
                        g_hash_table_insert(st.owners, g_strdup(rec->owner), uid);
                else
                        g_ptr_array_add(unowned, rec);
        }
        if (unowned->len > 0)
                store_owners_from_records(unowned, st.owners);

        /* Memory a lost record described is not known to be clean: as
         * after a reboot, everything no record holds is zeroed first. */
        if (any_bad || (!meta_seen && files->len > 0))
                g_clear_pointer(&st.boot_id, g_free);
        *ret = st;
        return any_bad ? 1 : 0;
}

static int rm_rf(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;

        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                        g_autofree char *path = g_build_filename(dir, de->d_name, NULL);
                        (void) unlink(path);
                }
        closedir(d);
        return rmdir(dir) < 0 ? -errno : 0;
}

/* state.json of earlier releases becomes the directory: written whole
 * under a temporary name, made durable, renamed into place, and only then
 * is state.json removed. A crash at any point leaves either state.json
 * alone (the upgrade runs again) or the complete directory. */
static int upgrade(const char *dir, const char *legacy, const StoreState *st, GError **error) {
        g_autofree char *tmp = g_strconcat(dir, ".upgrade", NULL);
        g_autofree char *parent = g_path_get_dirname(dir);
        int r;

        r = rm_rf(tmp);
        if (r < 0 && r != -ENOENT) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: cannot remove: %s", tmp,
                            g_strerror(-r));
                return r;
        }
        r = store_save_state(tmp, st, STORE_SAVE_DURABLE, error);
        store_forget(tmp);
        if (r < 0)
                return r;
        test_step("upgrade-written");
        if (rename(tmp, dir) < 0) {
                r = -errno;
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: cannot rename to %s: %s", tmp, dir,
                            g_strerror(-r));
                return r;
        }
        r = fsync_dir(parent, error);
        if (r < 0)
                return r;
        test_step("upgrade-renamed");
        if (unlink(legacy) < 0 && errno != ENOENT) {
                r = -errno;
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: cannot remove: %s", legacy,
                            g_strerror(-r));
                return r;
        }
        return fsync_dir(parent, error);
}

char *store_legacy_path(const char *dir) {
        g_autofree char *parent = g_path_get_dirname(dir);

        return g_build_filename(parent, "state.json", NULL);
}

int store_load_state_or_set_aside(const char *dir, const RegionRange *regions, size_t n_regions, StoreState *ret,
                                  char **ret_set_aside, char **ret_reason, GError **error) {
        g_autofree char *legacy = store_legacy_path(dir);
        g_autofree char *parent = g_path_get_dirname(dir);
        g_autofree char *tmp = g_strconcat(dir, ".upgrade", NULL);
        g_autoptr(GString) set_aside = g_string_new(NULL);
        g_autoptr(GString) reasons = g_string_new(NULL);
        struct stat sb;
        int r, bad = 0;

        if (lstat(dir, &sb) < 0) {
                if (errno != ENOENT) {
                        r = -errno;
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: cannot read state: %s", dir,
                                    g_strerror(-r));
                        return r;
                }
                if (access(legacy, F_OK) == 0) {
                        g_autofree char *aside = NULL, *reason = NULL;
                        StoreState old;

                        r = store_legacy_load_or_set_aside(legacy, regions, n_regions, &old, &aside, &reason, error);
                        if (r < 0)
                                return r;
                        if (r == 0) {
                                log_info("Moving the state from %s into %s (one file per record)", legacy, dir);
                                r = upgrade(dir, legacy, &old, error);
                        } else {
                                g_string_append(set_aside, aside);
                                g_string_append(reasons, reason);
                                bad = 1;
                                r = 0;
                        }
                        store_state_clear(&old);
                        if (r < 0) {
                                g_prefix_error(error, "cannot move %s into %s: ", legacy, dir);
                                return r;
                        }
                } else
                        (void) rm_rf(tmp);
        } else if (access(legacy, F_OK) == 0) {
                /* The upgrade was cut short after its directory was in place. */
                if (unlink(legacy) < 0) {
                        r = -errno;
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: cannot remove: %s", legacy,
                                    g_strerror(-r));
                        return r;
                }
                (void) fsync_dir(parent, NULL);
        }

        if (access(dir, F_OK) < 0 && errno == ENOENT) {
                store_state_init(ret);
                store_forget(dir);
        } else {
                r = load_directory(dir, regions, n_regions, ret, set_aside, reasons, error);
                if (r < 0)
                        return r;
                bad = bad || r > 0;
        }
        if (bad && set_aside->len > 0)
                (void) fsync_dir(dir, NULL);
        *ret_set_aside = bad ? g_strdup(set_aside->str) : NULL;
        *ret_reason = bad ? g_strdup(reasons->str) : NULL;
        return bad;
}

int store_load_state(const char *dir, StoreState *ret, GError **error) {
        g_autofree char *set_aside = NULL, *reason = NULL;
        int r;

        r = store_load_state_or_set_aside(dir, NULL, 0, ret, &set_aside, &reason, error);
        if (r <= 0)
                return r;
        store_state_clear(ret);
        g_set_error(error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA, "%s (kept as %s)", reason, set_aside);
        return -EBADMSG;
}
