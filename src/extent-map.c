/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "extent-map.h"
#include "util.h"

/* The kernel's smallest dynamic-dax mapping unit (one subsection). */
#define EXTENT_MIN_GRANULE (2 * MiB)

struct ExtentMap {
        uint64_t start;
        uint64_t size;
        Extent *extents; /* sorted, tiling [start, start+size), neighbours never equal */
        size_t n;
        size_t allocated;
};

static uint64_t extent_end(const Extent *e) {
        return e->start + e->size;
}

static bool extent_same_use(const Extent *a, const Extent *b) {
        return a->kind == b->kind && a->tag == b->tag;
}

ExtentMap *extent_map_new(uint64_t start, uint64_t size) {
        ExtentMap *m;

        if (size == 0 || start > UINT64_MAX - size)
                return NULL;

        m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;

        m->allocated = 8;
        m->extents = calloc(m->allocated, sizeof(Extent));
        if (!m->extents) {
                free(m);
                return NULL;
        }

        m->start = start;
        m->size = size;
        m->extents[0] = (Extent) { .start = start, .size = size, .kind = EXTENT_FREE };
        m->n = 1;
        return m;
}

void extent_map_free(ExtentMap *m) {
        if (!m)
                return;
        free(m->extents);
        free(m);
}

uint64_t extent_map_start(const ExtentMap *m) {
        return m->start;
}

uint64_t extent_map_size(const ExtentMap *m) {
        return m->size;
}

static bool extent_map_contains(const ExtentMap *m, uint64_t start, uint64_t size) {
        return start >= m->start && size <= m->size && start - m->start <= m->size - size;
}

/* Index of the extent holding addr; addr must lie inside the pool. */
static size_t extent_map_find(const ExtentMap *m, uint64_t addr) {
        size_t lo = 0, hi = m->n;

        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;

                if (m->extents[mid].start <= addr)
                        lo = mid;
                else
                        hi = mid;
        }
        return lo;
}

static int extent_map_reserve(ExtentMap *m, size_t extra) {
        Extent *v;
        size_t want;

        if (m->n + extra <= m->allocated)
                return 0;

        want = m->allocated;
        while (want < m->n + extra)
                want *= 2;

        v = reallocarray(m->extents, want, sizeof(Extent));
        if (!v)
                return -ENOMEM;
        m->extents = v;
        m->allocated = want;
        return 0;
}

/* Caller checked bounds and reserved room for two more extents. */
static void extent_map_set_unchecked(ExtentMap *m, uint64_t start, uint64_t size, ExtentKind kind, const void *tag) {
        uint64_t end = start + size;
        size_t first, last, lo, hi, n_old, k = 0, j = 0;
        Extent pieces[5];

        first = extent_map_find(m, start);
        last = extent_map_find(m, end - 1);

        /* Rebuild the window [lo, hi]: the touched extents plus one neighbour
         * on each side, so equal neighbours get merged too. */
        lo = first > 0 ? first - 1 : first;
        hi = last + 1 < m->n ? last + 1 : last;

        if (lo < first)
                pieces[k++] = m->extents[lo];
        if (m->extents[first].start < start)
                pieces[k++] = (Extent) {
                        .start = m->extents[first].start,
                        .size = start - m->extents[first].start,
                        .kind = m->extents[first].kind,
                        .tag = m->extents[first].tag,
                };
        pieces[k++] = (Extent) { .start = start, .size = size, .kind = kind, .tag = tag };
        if (extent_end(&m->extents[last]) > end)
                pieces[k++] = (Extent) {
                        .start = end,
                        .size = extent_end(&m->extents[last]) - end,
                        .kind = m->extents[last].kind,
                        .tag = m->extents[last].tag,
                };
        if (hi > last)
                pieces[k++] = m->extents[hi];

        for (size_t i = 0; i < k; i++) {
                if (j > 0 && extent_same_use(&pieces[j - 1], &pieces[i]))
                        pieces[j - 1].size += pieces[i].size;
                else
                        pieces[j++] = pieces[i];
        }

        n_old = hi - lo + 1;
        memmove(m->extents + lo + j, m->extents + hi + 1, (m->n - hi - 1) * sizeof(Extent));
        memcpy(m->extents + lo, pieces, j * sizeof(Extent));
        m->n = m->n - n_old + j;
}

int extent_map_set(ExtentMap *m, uint64_t start, uint64_t size, ExtentKind kind, const void *tag) {
        int r;

        if ((unsigned) kind >= _EXTENT_KIND_MAX)
                return -EINVAL;
        if (!extent_map_contains(m, start, size))
                return -ERANGE;
        if (size == 0)
                return 0;

        r = extent_map_reserve(m, 2);
        if (r < 0)
                return r;

        extent_map_set_unchecked(m, start, size, kind, tag);
        return 0;
}

int extent_map_set_ranges(ExtentMap *m, const DaxRange *r, size_t n, ExtentKind kind, const void *tag) {
        int k;

        if ((unsigned) kind >= _EXTENT_KIND_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (!extent_map_contains(m, r[i].start, r[i].size))
                        return -ERANGE;
        if (n > (SIZE_MAX / sizeof(Extent) - m->n) / 2)
                return -ENOMEM;

        /* Reserve everything up front so the list is set entirely or not at all. */
        k = extent_map_reserve(m, 2 * n);
        if (k < 0)
                return k;

        for (size_t i = 0; i < n; i++)
                if (r[i].size > 0)
                        extent_map_set_unchecked(m, r[i].start, r[i].size, kind, tag);
        return 0;
}

ExtentMap *extent_map_copy(const ExtentMap *m) {
        ExtentMap *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        *c = *m;
        c->extents = calloc(m->allocated, sizeof(Extent));
        if (!c->extents) {
                free(c);
                return NULL;
        }
        memcpy(c->extents, m->extents, m->n * sizeof(Extent));
        return c;
}

int extent_map_replace(ExtentMap *m, const DaxRange *r, size_t n, ExtentKind old_kind, const void *old_tag,
                       ExtentKind kind, const void *tag) {
        DaxRange *pieces;
        size_t k = 0, max = 0;
        int ret;

        for (size_t i = 0; i < n; i++)
                if (!extent_map_contains(m, r[i].start, r[i].size))
                        return -ERANGE;
        max = m->n * n + 1;
        pieces = calloc(max, sizeof(DaxRange));
        if (!pieces)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                for (size_t e = 0; e < m->n; e++) {
                        const Extent *x = &m->extents[e];
                        uint64_t s = x->start > r[i].start ? x->start : r[i].start;
                        uint64_t t = extent_end(x) < r[i].start + r[i].size ? extent_end(x) : r[i].start + r[i].size;

                        if (s < t && x->kind == old_kind && x->tag == old_tag && k < max)
                                pieces[k++] = (DaxRange) { s, t - s };
                }
        ret = extent_map_set_ranges(m, pieces, k, kind, tag);
        free(pieces);
        return ret;
}

bool extent_map_is(const ExtentMap *m, uint64_t start, uint64_t size, ExtentKind kind, const void *tag) {
        uint64_t end = start + size;

        if (!extent_map_contains(m, start, size))
                return false;
        if (size == 0)
                return true;

        for (size_t i = extent_map_find(m, start); i < m->n && m->extents[i].start < end; i++) {
                if (m->extents[i].kind != kind)
                        return false;
                if (tag && m->extents[i].tag != tag)
                        return false;
        }
        return true;
}

uint64_t extent_map_total(const ExtentMap *m, ExtentKind kind) {
        uint64_t sum = 0;

        for (size_t i = 0; i < m->n; i++)
                if (m->extents[i].kind == kind)
                        sum += m->extents[i].size;
        return sum;
}

/* The placement rules of one request, reduced to where a range may start
 * and how long it may be. */
typedef struct PlacementRules {
        uint64_t base;    /* valid starts are base + k * step ... */
        uint64_t step;
        uint64_t granule; /* ... and lengths are multiples of this */
        bool feasible;    /* false if align and boundary can never agree */
        bool include_dirty; /* bare DIRTY extents count as free */
        const CacheColors *colors; /* NULL: no colour constraint */
        ColorMask color_mask;
} PlacementRules;

/* Walks the pieces placement may use: maximal usable runs, cut to the
 * allowed colours when there is a colour constraint. */
typedef struct PieceIter {
        size_t i;          /* next extent */
        uint64_t pos, end; /* what is left of the current run */
} PieceIter;

static bool is_pow2_or_zero(uint64_t v) {
        return (v & (v - 1)) == 0;
}

static int placement_rules_init(const ExtentMap *m, uint64_t align, uint64_t boundary, PlacementRules *ret) {
        uint64_t a = align ?: 1, b = boundary ?: 1;

        if (!is_pow2_or_zero(align) || !is_pow2_or_zero(boundary))
                return -EINVAL;

        /* Both are powers of two, so one divides the other: the larger
         * one alone decides the valid starts, provided the pool start is
         * compatible with the smaller one (else no start satisfies both). */
        *ret = (PlacementRules) {
                .base = b > a ? m->start : 0,
                .step = max_u64(a, b),
                .granule = max_u64(max_u64(a, b), EXTENT_MIN_GRANULE),
                .feasible = m->start % min_u64(a, b) == 0,
        };
        return 0;
}

/* The longest rule-abiding piece of the free run [s, e). */
static uint64_t placement_usable(const PlacementRules *rules, uint64_t s, uint64_t e, uint64_t *ret_start) {
        uint64_t rem, p;

        if (!rules->feasible)
                return 0;

        /* base <= s always: base is 0 or the pool start. */
        rem = (s - rules->base) % rules->step;
        if (rem == 0)
                p = s;
        else if (e - s <= rules->step - rem)
                return 0;
        else
                p = s + (rules->step - rem);

        *ret_start = p;
        return round_down_u64(e - p, rules->granule);
}

static bool extent_usable(const Extent *e, bool include_dirty) {
        return e->kind == EXTENT_FREE || (include_dirty && e->kind == EXTENT_DIRTY && !e->tag);
}

/* Walks maximal runs of usable extents (free extents with different tags are
 * still one run of free bytes). Returns the index after the run. */
static size_t extent_map_next_run(const ExtentMap *m, size_t i, bool include_dirty, uint64_t *ret_start,
                                  uint64_t *ret_end) {
        while (i < m->n && !extent_usable(&m->extents[i], include_dirty))
                i++;
        if (i >= m->n)
                return i;

        *ret_start = m->extents[i].start;
        while (i < m->n && extent_usable(&m->extents[i], include_dirty))
                i++;
        *ret_end = extent_end(&m->extents[i - 1]);
        return i;
}

uint64_t extent_map_largest_usable(const ExtentMap *m, uint64_t align, uint64_t boundary, bool include_dirty) {
        PlacementRules rules;
        uint64_t best = 0;

        if (placement_rules_init(m, align, boundary, &rules) < 0)
                return 0;

        for (size_t i = 0; i < m->n;) {
                uint64_t s = 0, e = 0, p;

                i = extent_map_next_run(m, i, include_dirty, &s, &e);
                if (e > s)
                        best = max_u64(best, placement_usable(&rules, s, e, &p));
        }
        return best;
}

uint64_t extent_map_largest_free(const ExtentMap *m, uint64_t align, uint64_t boundary) {
        return extent_map_largest_usable(m, align, boundary, false);
}

uint64_t extent_map_total_bare_dirty(const ExtentMap *m) {
        uint64_t sum = 0;

        for (size_t i = 0; i < m->n; i++)
                if (m->extents[i].kind == EXTENT_DIRTY && !m->extents[i].tag)
                        sum += m->extents[i].size;
        return sum;
}

static bool color_allowed(const PlacementRules *rules, uint64_t addr) {
        return rules->color_mask & ((ColorMask) 1 << cache_color_of(rules->colors, addr));
}

static bool placement_next_piece(const ExtentMap *m, const PlacementRules *rules, PieceIter *it, uint64_t *ret_start,
                                 uint64_t *ret_end) {
        for (;;) {
                uint64_t s, e;

                if (it->pos >= it->end) {
                        s = e = 0;
                        if (it->i >= m->n)
                                return false;
                        it->i = extent_map_next_run(m, it->i, rules->include_dirty, &s, &e);
                        if (e <= s)
                                return false;
                        it->pos = s;
                        it->end = e;
                }
                if (!rules->colors) {
                        *ret_start = it->pos;
                        *ret_end = it->end;
                        it->pos = it->end;
                        return true;
                }
                if (!color_allowed(rules, it->pos)) {
                        it->pos = min_u64(cache_color_next_edge(rules->colors, it->pos), it->end);
                        continue;
                }
                e = it->pos;
                do
                        e = min_u64(cache_color_next_edge(rules->colors, e), it->end);
                while (e < it->end && color_allowed(rules, e));
                *ret_start = it->pos;
                *ret_end = e;
                it->pos = e;
                return true;
        }
}

/* Best fit: the smallest free run that can hold size, lowest address on a tie. */
static bool placement_best_fit(const ExtentMap *m, const PlacementRules *rules, uint64_t size, DaxRange *ret) {
        uint64_t best_run = UINT64_MAX;
        bool found = false;

        PieceIter it = {};
        uint64_t s = 0, e = 0;

        while (placement_next_piece(m, rules, &it, &s, &e)) {
                uint64_t p = 0;

                if (e <= s || (found && e - s >= best_run))
                        continue;
                if (placement_usable(rules, s, e, &p) < size)
                        continue;

                best_run = e - s;
                *ret = (DaxRange) { .start = p, .size = size };
                found = true;
        }
        return found;
}

/* Largest pieces first (fewest ranges), up to max pieces, sorted by address. */
static int placement_split(const ExtentMap *m, const PlacementRules *rules, uint64_t size, DaxRange *ret, size_t max) {
        size_t n = 0, used = 0;
        uint64_t sum = 0;

        /* Keep the max largest pieces in ret, largest first; a piece only
         * displaces a strictly smaller one, so lower addresses win ties. */
        PieceIter it = {};
        uint64_t s = 0, e = 0;

        while (placement_next_piece(m, rules, &it, &s, &e)) {
                uint64_t p = 0, len;
                size_t j;

                if (e <= s)
                        continue;
                len = placement_usable(rules, s, e, &p);
                if (len == 0)
                        continue;
                if (n == max && len <= ret[n - 1].size)
                        continue;

                j = n < max ? n++ : n - 1;
                for (; j > 0 && ret[j - 1].size < len; j--)
                        ret[j] = ret[j - 1];
                ret[j] = (DaxRange) { .start = p, .size = len };
        }

        for (; used < n && sum < size; used++) {
                ret[used].size = min_u64(ret[used].size, size - sum);
                sum += ret[used].size;
        }
        if (sum < size)
                return -ENOSPC;

        for (size_t i = 1; i < used; i++) {
                DaxRange t = ret[i];
                size_t j = i;

                for (; j > 0 && ret[j - 1].start > t.start; j--)
                        ret[j] = ret[j - 1];
                ret[j] = t;
        }
        return (int) used;
}

int extent_map_place(const ExtentMap *m, const PlacementRequest *req, DaxRange *ret, size_t ret_max) {
        PlacementRules rules;
        size_t max;
        int r;

        if (!req || !ret || ret_max == 0 || req->size == 0)
                return -EINVAL;
        if (!req->contiguous && req->max_ranges == 0)
                return -EINVAL;

        r = placement_rules_init(m, req->align, req->boundary, &rules);
        if (r < 0)
                return r;
        if (req->size % rules.granule != 0)
                return -EINVAL;
        rules.include_dirty = req->include_dirty;
        if (cache_colors_enabled(req->colors)) {
                rules.colors = req->colors;
                rules.color_mask = req->color_mask;
        }

        if (placement_best_fit(m, &rules, req->size, ret))
                return 1;
        if (req->contiguous)
                return -ENOSPC;

        /* The return value is an int: keep the count representable. */
        max = min_u64(min_u64(req->max_ranges, ret_max), INT32_MAX);
        return placement_split(m, &rules, req->size, ret, max);
}

size_t extent_map_count(const ExtentMap *m) {
        return m->n;
}

const Extent *extent_map_get(const ExtentMap *m, size_t i) {
        return i < m->n ? &m->extents[i] : NULL;
}

static const char *const extent_kind_table[_EXTENT_KIND_MAX] = {
        [EXTENT_FREE] = "free",
        [EXTENT_ALLOCATED] = "allocated",
        [EXTENT_PENDING] = "pending",
        [EXTENT_HOST] = "host",
        [EXTENT_DIRTY] = "dirty",
        [EXTENT_FOREIGN] = "foreign",
};

const char *extent_kind_to_string(ExtentKind k) {
        return (unsigned) k < _EXTENT_KIND_MAX ? extent_kind_table[k] : NULL;
}
