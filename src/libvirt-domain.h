/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libvirt-domain: reads what a libvirt domain asks of daxbroker from its
 * XML. The domain's <metadata> holds one <memory> element in daxbroker's
 * namespace with one <region> per allocation; this module parses the domain
 * XML with libxml2 (XPath), validates the element strictly and turns
 * libvirt's size units into bytes. It knows nothing about D-Bus: the hook
 * and the tests use the result.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#define DAXBROKER_LIBVIRT_NS "https://daxbroker.org/libvirt/1"
#define DAXBROKER_LIBVIRT_NS_BASE "https://daxbroker.org/libvirt/"
#define DOMAIN_REGIONS_MAX 16
#define DOMAIN_LABEL_MAX 64
/* Larger than any machine's memory: a typo, not a request. */
#define DOMAIN_REGION_SIZE_MAX (UINT64_C(1) << 60)

typedef struct DomainRegion {
        char *label;
        uint64_t size;
        char *pool;       /* NULL: any pool */
        int numa_node;    /* -1: any node */
        uint64_t align;   /* 0: the pool's default */
        int contiguous;   /* -1: daemon default, 0 no, 1 yes */
        char *user;       /* device node owner, NULL: left to libvirt */
        char *group;
} DomainRegion;

typedef struct DomainSpec {
        char *name;
        char uuid[37];      /* lower case, as libvirt prints it */
        bool has_metadata;  /* our element is present */
        unsigned n_regions;
        DomainRegion regions[DOMAIN_REGIONS_MAX];
} DomainSpec;

/* Parses a domain XML. Returns NULL with error set (a one-line message
 * that says what to fix, without the domain name) if the XML is not a domain, or, when strict, if
 * our metadata element is present but invalid (not strict: has_metadata is
 * set and the regions are whatever parsed, for releasing). A domain without
 * our element gives a spec with has_metadata false and no regions. */
DomainSpec *domain_spec_parse(const char *xml, size_t len, bool strict, GError **error);
void domain_spec_free(DomainSpec *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(DomainSpec, domain_spec_free)

/* "1" "GiB" -> 1073741824 with libvirt's unit names (b, bytes, k, KiB, KB,
 * M, MiB, MB, ... E, EiB, EB; case-insensitive; NULL or "" is KiB, as for
 * libvirt's <memory>). -EINVAL for junk or an unknown unit, -ERANGE on
 * overflow. */
int libvirt_scaled_size(const char *number, const char *unit, uint64_t *ret);
