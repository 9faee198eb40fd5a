/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * store-private: what the record format (store.c) shares with the state
 * directory (store-dir.c), so that a record in its own file is parsed and
 * validated by exactly the code that reads it from the old state.json.
 */

#include <json-glib/json-glib.h>

#include "store.h"

bool store_identifier_valid(const char *s, size_t max);
int store_parse_allocation(JsonNode *node, size_t index, AllocationRecord **ret, GError **error);
int store_record_validate(const AllocationRecord *r, size_t index, GError **error);
int store_records_validate(AllocationRecord *const *records, size_t n, GError **error);
int store_host_validate(const GArray *host, const GPtrArray *records, GError **error);
bool store_json_depth_ok(const char *data, gsize len);
void store_owners_from_records(const GPtrArray *records, GHashTable *owners);
/* s as a JSON string literal, as json-glib's generator writes it. */
void store_append_json_string(GString *out, const char *s);
/* The record as one line of compact JSON, cached in the record. */
const char *store_record_text(AllocationRecord *r);

int store_read_file(const char *path, size_t max, char **ret, gsize *ret_len);
int store_write_all(int fd, const char *data, size_t len);
int store_fsync_directory_of(const char *path);
/* Renames path to PATH.corrupt-<UTC time>, never replacing an earlier one. */
int store_set_aside(const char *path, char **ret_name);
const RegionRange *store_region_find(const RegionRange *regions, size_t n, unsigned id);
bool store_range_inside(const RegionRange *region, uint64_t start, uint64_t size);

/* state.json (versions 1 and 2), the single file of earlier releases:
 * read once, to upgrade it into the state directory. */
int store_legacy_load(const char *path, StoreState *ret, GError **error);
int store_legacy_load_or_set_aside(const char *path, const RegionRange *regions, size_t n_regions,
                                   StoreState *ret, char **ret_set_aside, char **ret_reason, GError **error);

/* Tests only: called at the steps where a crash matters ("save-written":
 * a save's new files are in place, the old ones not yet removed;
 * "upgrade-written", "upgrade-renamed": the upgrade's directory is
 * complete, resp. in place with state.json not yet removed). */
extern void (*store_test_step)(const char *step);
