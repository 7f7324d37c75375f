/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 01-config.c - configuration parsing: defaults, every kind of bad value
 * reported with file, line and key, exit codes, cross-checks.
 */
#include "config.h"
#include "rateguard.h"
#include "tap.h"

#include <stdio.h>
#include <string.h>
#include <syslog.h>

static struct rg_config *load(const char *text, char *err, size_t size, int *code)
{
    return config_load_string(text, "test.conf", err, size, code);
}

/* A config that must be refused with exactly this message and exit code. */
static void refused(const char *text, const char *want_err, int want_code)
{
    char err[1024];
    int code = -1;
    char shown[256];
    size_t k = 0;
    struct rg_config *c = load(text, err, sizeof(err), &code);

    /* Show the config on one TAP line. */
    for (const char *s = text; *s && k + 2 < sizeof(shown); s++) {
        if (*s == '\n') {
            shown[k++] = '\\';
            shown[k++] = 'n';
        } else
            shown[k++] = *s;
    }
    shown[k] = '\0';
    ok(c == NULL, "refused: %s", shown);
    is_str(err, want_err, "  message");
    is_long(code, want_code, "  exit code");
    config_free(c);
}

static void test_defaults(void)
{
    char err[1024];
    int code = -1;
    struct rg_config *c = load("", err, sizeof(err), &code);

    if (!ok(c != NULL, "empty file gives the defaults")) {
        diag("%s", err);
        return;
    }
    is_long(code, RG_EXIT_OK, "exit code 0");
    is_str(c->user, "postfix", "user");
    is_str(c->group, "postfix", "group");
    is_long((long)c->listen.count, 1, "one listen address");
    is_str(c->listen.items[0], "127.0.0.1:10033", "listen default");
    is_long((long)c->allowed_clients.count, 2, "allowed_clients: loopback v4 and v6");
    is_str(c->action_accept, "DUNNO", "action_accept");
    is_str(c->action_blocked, "DEFER_IF_PERMIT Rate limit reached, retry later.", "action_blocked");
    is_str(c->on_error, "DUNNO", "on_error");
    is_long(c->quota.dflt, 1000, "quota.default");
    is_str(c->quota.protocol_state, "DATA", "quota.protocol_state");
    ok(c->quota.count_blocked, "quota.count_blocked");
    is_long(c->reset_schedule, RESET_NONE, "quota.reset_schedule none");
    is_long(c->cache.entries, 100000, "cache.entries");
    ok(c->workers.max >= 256, "workers.max at least 256");
    is_long(c->syslog_facility, LOG_MAIL, "log.facility mail");
    is_long(c->log_level, LOG_INFO, "log.level info");
    is_long(c->socket_mode, 0660, "socket_mode");
    ok(!c->webhook.enabled, "webhook disabled");
    config_free(c);
}

static void test_values(void)
{
    char err[1024];
    int code = -1;
    struct rg_config *c = load(
        "user = mail\n"
        "listen = {\"127.0.0.1:10040\", \"[::1]:10040\", \"unix:/var/spool/postfix/rateguard/policy\"}\n"
        "allowed_clients = {\"10.0.0.0/8\", \"2001:db8::/32\"}\n"
        "action_accept = \"OK\"\n"
        "quota {\n  default = 5\n  protocol_state = end-of-message\n  reset_schedule = weekly\n}\n"
        "workers { min = 2 max = 8 }\n"
        "log { facility = local3 level = debug }\n"
        "webhook { enabled = true url = \"https://example.com/{sender}?token={token}\" secret = \"s\" }\n",
        err, sizeof(err), &code);

    if (!ok(c != NULL, "a full config loads")) {
        diag("%s", err);
        return;
    }
    is_str(c->user, "mail", "user");
    is_long((long)c->listen.count, 3, "three listeners");
    is_long(c->listen_addrs[0].kind, LISTEN_INET, "IPv4 listener");
    is_long(c->listen_addrs[1].sa.ss_family, AF_INET6, "IPv6 listener");
    is_long(c->listen_addrs[2].kind, LISTEN_UNIX, "unix listener");
    is_str(c->listen_addrs[2].path, "/var/spool/postfix/rateguard/policy", "unix path");
    is_long(c->allowed_nets[1].prefix, 32, "IPv6 prefix");
    is_str(c->action_accept, "OK", "action_accept OK");
    is_long(c->quota.dflt, 5, "quota.default 5");
    is_str(c->quota.protocol_state, "END-OF-MESSAGE", "protocol_state upper-cased");
    is_long(c->reset_schedule, RESET_WEEKLY, "weekly schedule");
    is_long(c->workers.min, 2, "workers.min");
    is_long(c->syslog_facility, LOG_LOCAL3, "facility local3");
    is_long(c->log_level, LOG_DEBUG, "level debug");
    ok(c->webhook.enabled, "webhook enabled");
    config_free(c);
}

static void test_errors(void)
{
    refused("listen = {\"nonsense\"}\n",
            "test.conf:1: listen: expected IPv4:port, [IPv6]:port or unix:/path, got 'nonsense'",
            RG_EXIT_BAD_LISTEN);
    refused("\n\nlisten = {\"127.0.0.1:0\"}\n", "test.conf:3: listen: bad port in '127.0.0.1:0' (1-65535)",
            RG_EXIT_BAD_LISTEN);
    refused("listen = {\"[::1:10033\"}\n", "test.conf:1: listen: expected [IPv6]:port, got '[::1:10033'",
            RG_EXIT_BAD_LISTEN);
    refused("listen = {\"localhost:10033\"}\n",
            "test.conf:1: listen: 'localhost' is not a numeric IPv4 address in 'localhost:10033'",
            RG_EXIT_BAD_LISTEN);
    refused("listen = {\"unix:relative/sock\"}\n",
            "test.conf:1: listen: unix socket path must be absolute in 'unix:relative/sock'",
            RG_EXIT_BAD_LISTEN);
    refused("listen = {}\n", "test.conf: listen: at least one address is needed", RG_EXIT_BAD_LISTEN);
    refused("workers {\n  max = 0\n}\n", "test.conf:2: workers.max: 0 is out of range 1..4096",
            RG_EXIT_CONFIG);
    refused("quota { default = -1 }\n", "test.conf:1: quota.default: -1 is out of range 0..4294967295",
            RG_EXIT_CONFIG);
    refused("no_such_key = 1\n", "test.conf:1: no such option 'no_such_key'", RG_EXIT_CONFIG);
    refused("quota {\n  nonsense = 1\n}\n", "test.conf:2: no such option 'nonsense'", RG_EXIT_CONFIG);
    refused("allowed_clients = {\"10.0.0.0/33\"}\n",
            "test.conf:1: allowed_clients: bad prefix length in '10.0.0.0/33' (0-32)", RG_EXIT_CONFIG);
    refused("allowed_clients = {\"example.com\"}\n",
            "test.conf:1: allowed_clients: 'example.com' is not a numeric IPv4 or IPv6 address in 'example.com'",
            RG_EXIT_CONFIG);
    refused("action_blocked = \"SLOWDOWN please\"\n",
            "test.conf:1: action_blocked: 'SLOWDOWN please' does not start with a Postfix access action "
            "(DUNNO, OK, DEFER_IF_PERMIT, REJECT, HOLD, 4NN, 5NN, ...)",
            RG_EXIT_CONFIG);
    refused("action_blocked = \"REJECT a\nb\"\n", "test.conf:2: action_blocked: control characters are not allowed",
            RG_EXIT_CONFIG);
    refused("quota { protocol_state = \"QUIT\" }\n",
            "test.conf:1: quota.protocol_state: 'QUIT' is not a Postfix protocol state (DATA, END-OF-MESSAGE, RCPT, ...)",
            RG_EXIT_CONFIG);
    refused("quota { reset_schedule = yearly }\n",
            "test.conf:1: quota.reset_schedule: 'yearly' is not one of none, hourly, daily, weekly, monthly",
            RG_EXIT_CONFIG);
    refused("log { facility = kern }\n",
            "test.conf:1: log.facility: 'kern' is not a syslog facility (mail, daemon, user, local0..local7)",
            RG_EXIT_CONFIG);
    refused("pidfile = \"run/x.pid\"\n", "test.conf:1: pidfile: 'run/x.pid' is not an absolute path", RG_EXIT_CONFIG);
    refused("socket_mode = \"0999\"\n",
            "test.conf:1: socket_mode: '0999' is not an octal file mode such as \"0660\"", RG_EXIT_CONFIG);
    refused("workers {\n min = 10\n max = 5\n}\n",
            "test.conf:2: workers.min (10) is greater than workers.max (5)", RG_EXIT_CONFIG);
    refused("webhook {\n enabled = true\n}\n", "test.conf:2: webhook.enabled: webhook.url must be set",
            RG_EXIT_CONFIG);
    refused("quota { default = \"many\" }\n", "test.conf:1: invalid integer value for option 'default'",
            RG_EXIT_CONFIG);
}

static void test_missing_file(void)
{
    char err[1024];
    int code = -1;
    struct rg_config *c = config_load("/nonexistent/rateguard.conf", err, sizeof(err), &code);
    ok(c == NULL, "missing file refused");
    is_long(code, RG_EXIT_CONFIG, "missing file: exit code 5");
    is_str(err, "/nonexistent/rateguard.conf: cannot open configuration file: No such file or directory",
           "missing file: message");
}

static void test_print_value(void)
{
    char err[1024], *buf = NULL;
    size_t len = 0;
    int code;
    struct rg_config *c = load("quota { default = 42 }\nlisten = {\"127.0.0.1:1\", \"[::1]:2\"}\n",
                               err, sizeof(err), &code);
    FILE *out = open_memstream(&buf, &len);

    ok(config_print_value(c, "quota.default", out), "quota.default known");
    ok(config_print_value(c, "listen", out), "listen known");
    ok(config_print_value(c, "quota.count_blocked", out), "bool known");
    ok(!config_print_value(c, "quota.nope", out), "quota.nope unknown");
    ok(!config_print_value(c, "nope", out), "nope unknown");
    fclose(out);
    is_str(buf, "42\n127.0.0.1:1\n[::1]:2\ntrue\n", "printed values");
    free(buf);
    config_free(c);
}

/* Collects the names config_keep_restart_only reports, comma-separated. */
static void note_changed(const char *name, void *arg)
{
    char *names = arg;
    size_t len = strlen(names);
    snprintf(names + len, 256 - len, "%s%s", len ? "," : "", name);
}

/* Reload: the restart-only settings keep their running values (and their
 * parsed forms), the others take the new ones; each kept change is named. */
static void test_keep_restart_only(void)
{
    char err[1024], names[256] = "";
    int code;
    struct rg_config *running = load("pidfile = \"/run/a/a.pid\"\nlisten = {\"unix:/run/a/sock\"}\n"
                                     "quota { windows = {\"10/1m\"} }\n",
                                     err, sizeof(err), &code);
    struct rg_config *fresh = load("pidfile = \"/run/b/b.pid\"\nlisten = {\"unix:/run/b/sock\", \"127.0.0.1:1\"}\n"
                                   "quota { default = 7\nwindows = {\"20/1h\", \"30/1d\"} }\n"
                                   "cache { entries = 64 }\nsocket_mode = \"0600\"\n",
                                   err, sizeof(err), &code);

    if (!ok(running && fresh, "both configurations load")) {
        diag("%s", err);
        return;
    }
    is_long((long)config_keep_restart_only(fresh, running, note_changed, names), 5,
            "five restart-only settings changed");
    is_str(names, "pidfile,listen,socket_mode,quota.windows,cache.entries", "named in table order");
    is_str(fresh->pidfile, "/run/a/a.pid", "pidfile: the running one kept");
    is_long(fresh->cache.entries, 100000, "cache.entries: the running one kept");
    is_long(fresh->socket_mode, 0660, "socket_mode: its parsed form kept with it");
    is_long((long)fresh->quota.windows.count, 1, "quota.windows: the running list kept");
    is_long(fresh->window_specs[0].limit, 10, "  and its parsed windows");
    is_long((long)fresh->listen.count, 1, "listen: the running addresses kept");
    is_str(fresh->listen_addrs[0].path, "/run/a/sock", "  and their parsed form");
    is_long(fresh->quota.dflt, 7, "quota.default (applied by a reload): the new value");
    is_str(running->pidfile, "/run/b/b.pid", "the old configuration holds the new value, to be freed with it");
    is_long((long)config_keep_restart_only(fresh, fresh, NULL, NULL), 0, "nothing differs from itself");
    config_free(running);
    config_free(fresh);
}

int main(void)
{
    test_defaults();
    test_values();
    test_errors();
    test_missing_file();
    test_print_value();
    test_keep_restart_only();
    return done_testing();
}
