/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "libvirt-domain.h"

#define DOMAIN_XML_ERROR (g_quark_from_static_string("daxbroker-domain-xml"))

G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlDoc, xmlFreeDoc)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlXPathContext, xmlXPathFreeContext)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlXPathObject, xmlXPathFreeObject)

static const struct {
        const char *name;
        uint64_t factor;
} units[] = {
        { "b", 1 },          { "bytes", 1 },
        { "k", 1ULL << 10 }, { "kib", 1ULL << 10 }, { "kb", 1000ULL },
        { "m", 1ULL << 20 }, { "mib", 1ULL << 20 }, { "mb", 1000ULL * 1000 },
        { "g", 1ULL << 30 }, { "gib", 1ULL << 30 }, { "gb", 1000ULL * 1000 * 1000 },
        { "t", 1ULL << 40 }, { "tib", 1ULL << 40 }, { "tb", 1000ULL * 1000 * 1000 * 1000 },
        { "p", 1ULL << 50 }, { "pib", 1ULL << 50 }, { "pb", 1000ULL * 1000 * 1000 * 1000 * 1000 },
        { "e", 1ULL << 60 }, { "eib", 1ULL << 60 }, { "eb", 1000ULL * 1000 * 1000 * 1000 * 1000 * 1000 },
};

int libvirt_scaled_size(const char *number, const char *unit, uint64_t *ret) {
        uint64_t v = 0, factor = 0;

        if (!number || !number[0])
                return -EINVAL;
        for (const char *p = number; *p; p++) {
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t) (*p - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (*p - '0');
        }
        if (!unit || !unit[0])
                factor = 1024;
        for (size_t i = 0; !factor && i < G_N_ELEMENTS(units); i++)
                if (g_ascii_strcasecmp(unit, units[i].name) == 0)
                        factor = units[i].factor;
        if (!factor)
                return -EINVAL;
        if (v > UINT64_MAX / factor)
                return -ERANGE;
        *ret = v * factor;
        return 0;
}

void domain_spec_free(DomainSpec *s) {
        if (!s)
                return;
        for (unsigned i = 0; i < s->n_regions; i++) {
                g_free(s->regions[i].label);
                g_free(s->regions[i].pool);
                g_free(s->regions[i].user);
                g_free(s->regions[i].group);
        }
        g_free(s->name);
        g_free(s);
}

static bool fail(GError **error, const DomainSpec *s, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static bool fail(GError **error, const DomainSpec *s, const char *fmt, ...) {
        g_autofree char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error_literal(error, DOMAIN_XML_ERROR, 0, msg);
        return false;
}

static bool name_chars_ok(const char *s, size_t max, const char *extra) {
        size_t n = strlen(s);

        if (n == 0 || n > max)
                return false;
        for (const char *p = s; *p; p++)
                if (!g_ascii_isalnum(*p) && !strchr(extra, *p))
                        return false;
        return true;
}

static bool uuid_normalize(const char *in, char out[37]) {
        size_t n = strlen(in);

        if (n != 36)
                return false;
        for (size_t i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;

                if (dash ? in[i] != '-' : !g_ascii_isxdigit(in[i]))
                        return false;
                out[i] = g_ascii_tolower(in[i]);
        }
        out[36] = 0;
        return true;
}

static char *node_text(xmlNode *n) {
        xmlChar *c = xmlNodeGetContent(n);
        char *r = g_strstrip(g_strdup(c ? (const char *) c : ""));

        xmlFree(c);
        return r;
}

static const char *const region_attrs[] = {
        "label", "size", "unit", "pool", "node", "align", "contiguous", "user", "group", NULL,
};

static bool parse_region(DomainSpec *s, xmlNode *n, GError **error) {
        DomainRegion *r = &s->regions[s->n_regions];
        g_autofree char *size = NULL, *unit = NULL, *node = NULL, *align = NULL, *contiguous = NULL;
        unsigned index = s->n_regions + 1;
        const char *label;
        int e;

        *r = (DomainRegion) { .numa_node = -1, .contiguous = -1 };

        for (xmlAttr *a = n->properties; a; a = a->next) {
                if (a->ns)
                        return fail(error, s, "region %u: attribute '%s:%s' is not part of the daxbroker schema",
                                    index, a->ns->prefix ? (const char *) a->ns->prefix : "", a->name);
                if (!g_strv_contains(region_attrs, (const char *) a->name))
                        return fail(error, s,
                                    "region %u: unknown attribute '%s' (allowed: label, size, unit, pool, node, "
                                    "align, contiguous, user, group)", index, a->name);
        }
        for (xmlNode *c = n->children; c; c = c->next) {
                if (c->type == XML_ELEMENT_NODE)
                        return fail(error, s, "region %u: unexpected element <%s> inside <region>", index, c->name);
                if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
                        g_autofree char *t = node_text(c);
                        if (t[0])
                                return fail(error, s, "region %u: unexpected text '%s' inside <region>", index, t);
                }
        }

        {
                xmlChar *x;

                x = xmlGetNoNsProp(n, (const xmlChar *) "label");
                r->label = x ? g_strdup((const char *) x) : NULL;
                xmlFree(x);
                s->n_regions++; /* from here on r is freed with s */
#define TAKE(var, name)                                                       \
        do {                                                                  \
                x = xmlGetNoNsProp(n, (const xmlChar *) (name));              \
                var = x ? g_strdup((const char *) x) : NULL;                  \
                xmlFree(x);                                                   \
        } while (0)
                TAKE(size, "size");
                TAKE(unit, "unit");
                TAKE(r->pool, "pool");
                TAKE(node, "node");
                TAKE(align, "align");
                TAKE(contiguous, "contiguous");
                TAKE(r->user, "user");
                TAKE(r->group, "group");
#undef TAKE
        }

        label = r->label;
        if (!label)
                return fail(error, s, "region %u has no label= (give each region a unique name, e.g. label='ram')", index);
        if (!name_chars_ok(label, DOMAIN_LABEL_MAX, "_.-") || label[0] == '.')
                return fail(error, s,
                            "region label '%s' must be 1 to %d characters of A-Z, a-z, 0-9, '_', '.' and '-', "
                            "not starting with '.'", label, DOMAIN_LABEL_MAX);
        for (unsigned i = 0; i + 1 < s->n_regions; i++)
                if (strcmp(s->regions[i].label, label) == 0)
                        return fail(error, s, "region label '%s' is used twice; labels must be unique", label);

        if (!size)
                return fail(error, s, "region '%s' has no size= (e.g. size='4' unit='GiB')", label);
        e = libvirt_scaled_size(size, unit, &r->size);
        if (e == -EINVAL && unit && unit[0]) {
                uint64_t dummy;
                if (libvirt_scaled_size(size, NULL, &dummy) != -EINVAL)
                        return fail(error, s,
                                    "region '%s': unit '%s' is not a libvirt unit (b, KiB, MiB, GiB, TiB, PiB, EiB, "
                                    "KB, MB, GB, TB, PB, EB)", label, unit);
        }
        if (e == -EINVAL)
                return fail(error, s, "region '%s': size '%s' is not a whole number", label, size);
        if (e == -ERANGE || r->size > DOMAIN_REGION_SIZE_MAX)
                return fail(error, s, "region '%s': size %s %s is larger than any host's memory", label, size,
                            unit && unit[0] ? unit : "KiB");
        if (r->size == 0)
                return fail(error, s, "region '%s': size must not be 0", label);

        if (align) {
                const char *p = align;
                g_autofree char *num = NULL;

                while (g_ascii_isdigit(*p))
                        p++;
                num = g_strndup(align, (gsize) (p - align));
                if (libvirt_scaled_size(num, *p ? p : "b", &r->align) < 0 ||
                    (r->align != 4096 && r->align != (UINT64_C(2) << 20) && r->align != (UINT64_C(1) << 30)))
                        return fail(error, s, "region '%s': align '%s' must be 4KiB, 2MiB or 1GiB", label, align);
        }
        if (r->size % (UINT64_C(2) << 20) || (r->align && r->size % r->align))
                return fail(error, s, "region '%s': size %" G_GUINT64_FORMAT " bytes is not a multiple of %s",
                            label, r->size, r->align > (UINT64_C(2) << 20) ? "its align" : "2 MiB");

        if (r->pool && !name_chars_ok(r->pool, 63, "_-"))
                return fail(error, s, "region '%s': pool '%s' is not a pool name (A-Z, a-z, 0-9, '_', '-')", label,
                            r->pool);
        if (node) {
                char *end = NULL;
                unsigned long v;

                errno = 0;
                v = g_ascii_isdigit(node[0]) ? strtoul(node, &end, 10) : 0;
                if (!g_ascii_isdigit(node[0]) || errno || *end || v > 4095)
                        return fail(error, s, "region '%s': node '%s' must be a NUMA node number (0 to 4095)", label,
                                    node);
                r->numa_node = (int) v;
        }
        if (contiguous) {
                if (strcmp(contiguous, "yes") == 0)
                        r->contiguous = 1;
                else if (strcmp(contiguous, "no") == 0)
                        r->contiguous = 0;
                else
                        return fail(error, s, "region '%s': contiguous '%s' must be 'yes' or 'no'", label, contiguous);
        }
        if (r->user && !name_chars_ok(r->user, 32, "_.-"))
                return fail(error, s, "region '%s': user '%s' is not a user name or number", label, r->user);
        if (r->group && !name_chars_ok(r->group, 32, "_.-"))
                return fail(error, s, "region '%s': group '%s' is not a group name or number", label, r->group);
        if (r->group && !r->user)
                return fail(error, s, "region '%s': group= needs user= as well", label);
        return true;
}

static bool parse_memory(DomainSpec *s, xmlNode *m, GError **error) {
        if (!xmlStrEqual(m->name, (const xmlChar *) "memory"))
                return fail(error, s, "unknown element <%s> in the daxbroker namespace (expected <memory>)", m->name);
        for (xmlAttr *a = m->properties; a; a = a->next)
                return fail(error, s, "<memory> takes no attributes, found '%s'", a->name);

        for (xmlNode *c = m->children; c; c = c->next) {
                if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
                        g_autofree char *t = node_text(c);
                        if (t[0])
                                return fail(error, s, "unexpected text '%s' inside <memory>", t);
                        continue;
                }
                if (c->type != XML_ELEMENT_NODE)
                        continue;
                if (!c->ns || !xmlStrEqual(c->ns->href, (const xmlChar *) DAXBROKER_LIBVIRT_NS) ||
                    !xmlStrEqual(c->name, (const xmlChar *) "region"))
                        return fail(error, s, "unexpected element <%s> inside <memory> (expected <region>)", c->name);
                if (s->n_regions == DOMAIN_REGIONS_MAX)
                        return fail(error, s, "more than %d regions", DOMAIN_REGIONS_MAX);
                if (!parse_region(s, c, error))
                        return false;
        }
        if (s->n_regions == 0)
                return fail(error, s, "<memory> declares no <region>");
        return true;
}

DomainSpec *domain_spec_parse(const char *xml, size_t len, bool strict, GError **error) {
        g_autoptr(DomainSpec) s = g_new0(DomainSpec, 1);
        g_autoptr(xmlDoc) doc = NULL;
        g_autoptr(xmlXPathContext) ctx = NULL;
        g_autoptr(xmlXPathObject) name = NULL, uuid = NULL, meta = NULL;
        xmlNode *root;
        const xmlError *xe;

        if (len > INT_MAX) {
                fail(error, NULL, "domain XML is too large");
                return NULL;
        }
        /* No network, no DTDs, no entity expansion: the XML comes from
         * libvirt, but a hook must not be talked into fetching anything. */
        doc = xmlReadMemory(xml, (int) len, "domain.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc) {
                g_autofree char *why = NULL;

                xe = xmlGetLastError();
                why = g_strstrip(g_strdup(xe && xe->message ? xe->message : "parse error"));
                fail(error, NULL, "the domain XML is not well-formed (line %d: %s)", xe ? xe->line : 0, why);
                return NULL;
        }
        root = xmlDocGetRootElement(doc);
        if (!root || !xmlStrEqual(root->name, (const xmlChar *) "domain") || root->ns) {
                fail(error, NULL, "the XML is not a libvirt domain (root element is not <domain>)");
                return NULL;
        }
        ctx = xmlXPathNewContext(doc);
        if (!ctx || xmlXPathRegisterNs(ctx, (const xmlChar *) "daxbroker", (const xmlChar *) DAXBROKER_LIBVIRT_NS) < 0) {
                fail(error, NULL, "out of memory");
                return NULL;
        }

        name = xmlXPathEvalExpression((const xmlChar *) "/domain/name", ctx);
        if (name && name->nodesetval && name->nodesetval->nodeNr == 1)
                s->name = node_text(name->nodesetval->nodeTab[0]);
        uuid = xmlXPathEvalExpression((const xmlChar *) "/domain/uuid", ctx);
        if (!s->name || !s->name[0]) {
                fail(error, NULL, "the domain XML has no <name>");
                return NULL;
        }
        if (!uuid || !uuid->nodesetval || uuid->nodesetval->nodeNr != 1) {
                fail(error, s, "the domain XML has no <uuid>");
                return NULL;
        }
        {
                g_autofree char *u = node_text(uuid->nodesetval->nodeTab[0]);
                if (!uuid_normalize(u, s->uuid)) {
                        fail(error, s, "<uuid> '%s' is not a UUID", u);
                        return NULL;
                }
        }

        /* Every element under <metadata> whose namespace is ours or any
         * other version of ours; libvirt keeps one element per namespace. */
        meta = xmlXPathEvalExpression((const xmlChar *) "/domain/metadata/*[starts-with(namespace-uri(), '"
                                      DAXBROKER_LIBVIRT_NS_BASE "')]", ctx);
        if (!meta || !meta->nodesetval || meta->nodesetval->nodeNr == 0)
                return g_steal_pointer(&s);
        if (meta->nodesetval->nodeNr > 1) {
                fail(error, s, "more than one daxbroker element in <metadata>; put every <region> in one <memory>");
                return NULL;
        }
        {
                xmlNode *m = meta->nodesetval->nodeTab[0];

                g_autoptr(GError) e = NULL;

                s->has_metadata = true;
                if (!xmlStrEqual(m->ns->href, (const xmlChar *) DAXBROKER_LIBVIRT_NS))
                        fail(&e, s, "namespace '%s' is not supported by this daxbroker (use '%s')", m->ns->href,
                             DAXBROKER_LIBVIRT_NS);
                else
                        parse_memory(s, m, &e);
                if (e && strict) {
                        g_propagate_error(error, g_steal_pointer(&e));
                        return NULL;
                }
        }
        return g_steal_pointer(&s);
}
