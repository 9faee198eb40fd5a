/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test helpers for the tenant tests on the private bus (tests/bus).
 *
 *   polkit-mock ADDR LOG serve
 *       owns org.freedesktop.PolicyKit1 and answers CheckAuthorization the
 *       way polkitd would with rules alone: authorized if the action is in
 *       the allowed set (none at first), never a challenge. Everything it is
 *       asked is appended to LOG, one line per call:
 *         check ACTION FLAGS CANCELLATION-ID
 *         cancel CANCELLATION-ID
 *       Controlled over the bus, interface org.daxbroker.test.PolkitMock on
 *       /org/freedesktop/PolicyKit1/Authority:
 *         SetAllowed(as actions)   the granted actions
 *         SetHang(b hang)          hold every new check unanswered
 *         Pending() -> u           checks held and not cancelled
 *       A held check that is cancelled gets polkit's Cancelled error.
 *   polkit-mock ADDR - flood N OWNER
 *       one connection sends N Allocate calls of 2 MiB for OWNER at once;
 *       prints "reply NAME" (or "reply ok") for each call answered, in
 *       order, then stays connected until killed.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#define PK_NAME "org.freedesktop.PolicyKit1"
#define PK_PATH "/org/freedesktop/PolicyKit1/Authority"
#define PK_IFACE "org.freedesktop.PolicyKit1.Authority"
#define MOCK_IFACE "org.daxbroker.test.PolkitMock"
#define HELD_MAX 4096

static FILE *log_file;
static char **allowed;
static bool hang;
static struct {
        sd_bus_message *m;
        char *id;
} held[HELD_MAX];

static bool is_allowed(const char *action) {
        for (char **a = allowed; a && *a; a++)
                if (strcmp(*a, action) == 0)
                        return true;
        return false;
}

static int reply_check(sd_bus_message *m, bool ok) {
        return sd_bus_reply_method_return(m, "(bba{ss})", ok, 0, 0);
}

static int method_check(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *kind, *action, *id;
        uint32_t flags;
        int r;

        r = sd_bus_message_enter_container(m, 'r', "sa{sv}");
        if (r >= 0)
                r = sd_bus_message_read(m, "s", &kind);
        if (r >= 0)
                r = sd_bus_message_skip(m, "a{sv}");
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_read(m, "s", &action);
        if (r >= 0)
                r = sd_bus_message_skip(m, "a{ss}");
        if (r >= 0)
                r = sd_bus_message_read(m, "us", &flags, &id);
        if (r < 0)
                return r;
        fprintf(log_file, "check %s %u %s\n", action, flags, id[0] ? id : "-");
        fflush(log_file);
        if (hang) {
                for (size_t i = 0; i < HELD_MAX; i++)
                        if (!held[i].m) {
                                held[i].m = sd_bus_message_ref(m);
                                held[i].id = strdup(id);
                                return 1;
                        }
                return sd_bus_error_set(ret_error, "org.freedesktop.PolicyKit1.Error.Failed", "too many held");
        }
        return reply_check(m, is_allowed(action));
}

static int method_cancel(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *id;
        int r = sd_bus_message_read(m, "s", &id);

        if (r < 0)
                return r;
        fprintf(log_file, "cancel %s\n", id);
        fflush(log_file);
        for (size_t i = 0; i < HELD_MAX; i++)
                if (held[i].m && strcmp(held[i].id, id) == 0) {
                        (void) sd_bus_reply_method_errorf(held[i].m, "org.freedesktop.PolicyKit1.Error.Cancelled",
                                                          "cancelled");
                        held[i].m = sd_bus_message_unref(held[i].m);
                        free(held[i].id);
                        held[i].id = NULL;
                        return sd_bus_reply_method_return(m, NULL);
                }
        return sd_bus_error_set(ret_error, "org.freedesktop.PolicyKit1.Error.Failed", "no such check");
}

static int method_set_allowed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        char **l = NULL;
        int r = sd_bus_message_read_strv(m, &l);

        if (r < 0)
                return r;
        for (char **a = allowed; a && *a; a++)
                free(*a);
        free(allowed);
        allowed = l;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_set_hang(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        int b, r = sd_bus_message_read(m, "b", &b);

        if (r < 0)
                return r;
        hang = b;
        if (!hang)
                for (size_t i = 0; i < HELD_MAX; i++)
                        if (held[i].m) {
                                const char *kind, *action;

                                /* Answer by the rules now in force. */
                                (void) sd_bus_message_rewind(held[i].m, true);
                                if (sd_bus_message_enter_container(held[i].m, 'r', "sa{sv}") >= 0 &&
                                    sd_bus_message_read(held[i].m, "s", &kind) >= 0 &&
                                    sd_bus_message_skip(held[i].m, "a{sv}") >= 0 &&
                                    sd_bus_message_exit_container(held[i].m) >= 0 &&
                                    sd_bus_message_read(held[i].m, "s", &action) >= 0)
                                        (void) reply_check(held[i].m, is_allowed(action));
                                held[i].m = sd_bus_message_unref(held[i].m);
                                free(held[i].id);
                                held[i].id = NULL;
                        }
        return sd_bus_reply_method_return(m, NULL);
}

static int method_pending(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        uint32_t n = 0;

        for (size_t i = 0; i < HELD_MAX; i++)
                n += held[i].m != NULL;
        return sd_bus_reply_method_return(m, "u", n);
}

static const sd_bus_vtable pk_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("CheckAuthorization", "(sa{sv})sa{ss}us", "(bba{ss})", method_check, 0),
        SD_BUS_METHOD("CancelCheckAuthorization", "s", "", method_cancel, 0),
        SD_BUS_VTABLE_END,
};

static const sd_bus_vtable mock_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("SetAllowed", "as", "", method_set_allowed, 0),
        SD_BUS_METHOD("SetHang", "b", "", method_set_hang, 0),
        SD_BUS_METHOD("Pending", "", "u", method_pending, 0),
        SD_BUS_VTABLE_END,
};

static int connect_to(const char *address, sd_bus **ret) {
        sd_bus *b = NULL;
        int r = sd_bus_new(&b);

        if (r >= 0)
                r = sd_bus_set_address(b, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(b, 1);
        if (r >= 0)
                r = sd_bus_negotiate_fds(b, 1);
        if (r >= 0)
                r = sd_bus_start(b);
        if (r < 0) {
                sd_bus_unref(b);
                return r;
        }
        *ret = b;
        return 0;
}

static unsigned answered;

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        printf("reply %s\n", e ? e->name : "ok");
        fflush(stdout);
        answered++;
        return 0;
}

static int flood(sd_bus *b, unsigned n, const char *owner) {
        for (unsigned i = 0; i < n; i++) {
                sd_bus_message *m = NULL;
                int r = sd_bus_message_new_method_call(b, &m, "org.daxbroker.Broker1", "/org/daxbroker/Broker1",
                                                       "org.daxbroker.Broker1.Manager", "Allocate");
                if (r >= 0)
                        r = sd_bus_message_append(m, "sta{sv}", owner, (uint64_t) 2 << 20, 0);
                if (r >= 0)
                        r = sd_bus_call_async(b, NULL, m, on_reply, NULL, UINT64_MAX - 1);
                sd_bus_message_unref(m);
                if (r < 0) {
                        fprintf(stderr, "cannot send: %s\n", strerror(-r));
                        return 1;
                }
        }
        for (;;) {
                int r = sd_bus_process(b, NULL);

                if (r < 0)
                        return 1;
                if (r == 0 && sd_bus_wait(b, UINT64_MAX) < 0)
                        return 1;
        }
}

int main(int argc, char **argv) {
        sd_bus *b = NULL;
        sd_event *e = NULL;
        int r;

        if (argc < 4) {
                fprintf(stderr, "usage: %s ADDR LOG serve | ADDR - flood N OWNER\n", argv[0]);
                return 2;
        }
        r = connect_to(argv[1], &b);
        if (r < 0) {
                fprintf(stderr, "cannot connect to %s: %s\n", argv[1], strerror(-r));
                return 1;
        }
        if (strcmp(argv[3], "flood") == 0 && argc == 6)
                return flood(b, (unsigned) strtoul(argv[4], NULL, 10), argv[5]);
        if (strcmp(argv[3], "serve") != 0)
                return 2;

        log_file = fopen(argv[2], "ae");
        if (!log_file)
                return 1;
        if (sd_bus_add_object_vtable(b, NULL, PK_PATH, PK_IFACE, pk_vtable, NULL) < 0 ||
            sd_bus_add_object_vtable(b, NULL, PK_PATH, MOCK_IFACE, mock_vtable, NULL) < 0 ||
            sd_bus_request_name(b, PK_NAME, 0) < 0) {
                fprintf(stderr, "cannot serve %s\n", PK_NAME);
                return 1;
        }
        r = sd_event_default(&e);
        if (r >= 0)
                r = sd_bus_attach_event(b, e, 0);
        if (r >= 0)
                r = sd_event_loop(e);
        return r < 0 ? 1 : 0;
}
