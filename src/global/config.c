/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * config.c - the parameter table and everything driven by it: building
 * libconfuse's option arrays, validating values as they are parsed (so an
 * error names file, line and key), copying them into struct rg_config,
 * deriving parsed forms, cross-checks, --get-config and --list-config.
 *
 * To add a parameter: add a field to struct rg_config, a row to params[],
 * and document it in rateguard.conf and rateguard.conf(5) with its default
 * (t/75-settings-documented.t checks both against --list-config).
 * The row's last column says whether a reload applies it (LIVE) or the
 * running daemon was built around it (RESTART: sockets, accounts, paths,
 * sizes of shared memory); config_keep_restart_only() reads that column.
 */
#include "config.h"
#include "db.h"
#include "geo.h"
#include "log.h"
#include "windows.h"
#include "rateguard.h"
#include "util.h"

#include <confuse.h>
#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdint.h>
#include <syslog.h>

enum param_type { P_INT, P_BOOL, P_STR, P_LIST };

typedef bool (*value_check)(const char *value, char *err, size_t errsize);

struct param {
    const char *section;        /* NULL: top level */
    const char *name;
    enum param_type type;
    const char *def;            /* default, as it would be written in the file */
    long min, max;              /* P_INT bounds */
    value_check check;          /* P_STR / P_LIST per-value check, may be NULL */
    size_t offset;              /* field in struct rg_config */
    int exit_code;              /* exit code when this value is invalid */
    bool restart;               /* read at start only: a reload keeps the running value */
    size_t derived, derived_size;   /* its parsed form (derived_size 0: none), kept with it */
};

static bool check_absolute_path(const char *v, char *err, size_t n);
static bool check_optional_path(const char *v, char *err, size_t n);
static bool check_account(const char *v, char *err, size_t n);
static bool check_optional_account(const char *v, char *err, size_t n);
static bool check_allowed_user(const char *v, char *err, size_t n);
static bool check_listen(const char *v, char *err, size_t n);
static bool check_cidr(const char *v, char *err, size_t n);
static bool check_window(const char *v, char *err, size_t n);
static bool check_mode(const char *v, char *err, size_t n);
static bool check_action(const char *v, char *err, size_t n);
static bool check_protocol_state(const char *v, char *err, size_t n);
static bool check_schedule(const char *v, char *err, size_t n);
static bool check_facility(const char *v, char *err, size_t n);
static bool check_level(const char *v, char *err, size_t n);
static bool check_no_controls(const char *v, char *err, size_t n);
static bool check_db_host(const char *v, char *err, size_t n);
static bool check_dsn(const char *v, char *err, size_t n);
static bool check_smtp_server(const char *v, char *err, size_t n);
static bool check_mailbox(const char *v, char *err, size_t n);
static bool check_optional_mailbox(const char *v, char *err, size_t n);
static bool check_signal_action(const char *v, char *err, size_t n);
static bool check_metrics_listen(const char *v, char *err, size_t n);
static int signal_action_index(const char *v);

#define F(field) offsetof(struct rg_config, field)
#define EC RG_EXIT_CONFIG
/* The last column (three fields): a reload applies the value; or the
 * running process was built around it, so a reload keeps the running
 * value, and with it the parsed form derived from it. */
#define LIVE false, 0, 0
#define RESTART true, 0, 0
#define RESTART_WITH(parsed) true, F(parsed), sizeof(((struct rg_config *)0)->parsed)

static const struct param params[] = {
    {NULL, "user", P_STR, "postfix", 0, 0, check_account, F(user), EC, RESTART},
    {NULL, "group", P_STR, "postfix", 0, 0, check_account, F(group), EC, RESTART},
    {NULL, "pidfile", P_STR, "/run/rateguard/rateguard.pid", 0, 0, check_absolute_path, F(pidfile), EC, RESTART},
    {NULL, "state_dir", P_STR, "/var/lib/rateguard", 0, 0, check_absolute_path, F(state_dir), EC, RESTART},
    {NULL, "listen", P_LIST, "{\"127.0.0.1:10033\"}", 0, 0, check_listen, F(listen), RG_EXIT_BAD_LISTEN, RESTART_WITH(listen_addrs)},
    {NULL, "socket_mode", P_STR, "0660", 0, 0, check_mode, F(socket_mode_text), EC, RESTART_WITH(socket_mode)},
    {NULL, "socket_group", P_STR, "", 0, 0, check_optional_account, F(socket_group), EC, RESTART},
    {NULL, "allowed_clients", P_LIST, "{\"127.0.0.0/8\", \"::1/128\"}", 0, 0, check_cidr, F(allowed_clients), EC, LIVE},
    {NULL, "allowed_users", P_LIST, "{\"root\", \"postfix\"}", 0, 0, check_allowed_user, F(allowed_users), EC, LIVE},
    {NULL, "action_accept", P_STR, "DUNNO", 0, 0, check_action, F(action_accept), EC, LIVE},
    {NULL, "action_blocked", P_STR, "DEFER_IF_PERMIT Rate limit reached, retry later.", 0, 0, check_action, F(action_blocked), EC, LIVE},
    {NULL, "on_error", P_STR, "DUNNO", 0, 0, check_action, F(on_error), EC, LIVE},
    {NULL, "message_retention", P_INT, "0", 0, 36500, NULL, F(message_retention), EC, LIVE},

    {"workers", "min", P_INT, "4", 1, 4096, NULL, F(workers.min), EC, LIVE},
    {"workers", "max", P_INT, "256", 1, 4096, NULL, F(workers.max), EC, RESTART},
    {"workers", "min_spare", P_INT, "2", 0, 4096, NULL, F(workers.min_spare), EC, LIVE},
    {"workers", "max_spare", P_INT, "16", 1, 4096, NULL, F(workers.max_spare), EC, LIVE},
    {"workers", "max_requests", P_INT, "1000", 0, 1000000000, NULL, F(workers.max_requests), EC, LIVE},
    {"workers", "idle_timeout", P_INT, "600", 1, 86400, NULL, F(workers.idle_timeout), EC, LIVE},
    {"workers", "read_timeout", P_INT, "10", 1, 3600, NULL, F(workers.read_timeout), EC, LIVE},
    {"workers", "max_per_client", P_INT, "0", 0, 4096, NULL, F(workers.max_per_client), EC, LIVE},
    {"workers", "stress_read_timeout", P_INT, "1", 1, 3600, NULL, F(workers.stress_read_timeout), EC, LIVE},

    {"database", "host", P_STR, "localhost", 0, 0, check_no_controls, F(database.host), EC, LIVE},
    {"database", "port", P_INT, "3306", 1, 65535, NULL, F(database.port), EC, LIVE},
    {"database", "socket", P_STR, "", 0, 0, check_optional_path, F(database.socket), EC, LIVE},
    {"database", "user", P_STR, "rateguard", 0, 0, check_no_controls, F(database.user), EC, LIVE},
    {"database", "password", P_STR, "", 0, 0, NULL, F(database.password), EC, LIVE},
    {"database", "name", P_STR, "rateguard", 0, 0, check_no_controls, F(database.name), EC, LIVE},
    {"database", "connect_timeout", P_INT, "5", 1, 300, NULL, F(database.connect_timeout), EC, LIVE},
    {"database", "hosts", P_LIST, "{}", 0, 0, check_db_host, F(database.hosts), EC, LIVE},
    {"database", "tls", P_BOOL, "false", 0, 0, NULL, F(database.tls), EC, LIVE},
    {"database", "tls_ca", P_STR, "", 0, 0, check_optional_path, F(database.tls_ca), EC, LIVE},
    {"database", "tls_cert", P_STR, "", 0, 0, check_optional_path, F(database.tls_cert), EC, LIVE},
    {"database", "tls_key", P_STR, "", 0, 0, check_optional_path, F(database.tls_key), EC, LIVE},
    {"database", "tls_verify_server", P_BOOL, "true", 0, 0, NULL, F(database.tls_verify_server), EC, LIVE},

    {"quota", "default", P_INT, "1000", 0, 4294967295L, NULL, F(quota.dflt), EC, LIVE},
    {"quota", "protocol_state", P_STR, "DATA", 0, 0, check_protocol_state, F(quota.protocol_state), EC, LIVE},
    {"quota", "count_blocked", P_BOOL, "true", 0, 0, NULL, F(quota.count_blocked), EC, LIVE},
    {"quota", "reset_schedule", P_STR, "none", 0, 0, check_schedule, F(quota.reset_schedule_text), EC, LIVE},
    {"quota", "dry_run", P_BOOL, "false", 0, 0, NULL, F(quota.dry_run), EC, LIVE},
    {"quota", "warning_percent", P_INT, "0", 0, 100, NULL, F(quota.warning_percent), EC, LIVE},
    {"quota", "windows", P_LIST, "{}", 0, 0, check_window, F(quota.windows), EC, RESTART_WITH(window_specs)},
    {"quota", "max_recipients", P_INT, "0", 0, 4294967295L, NULL, F(quota.max_recipients), EC, LIVE},

    {"unauthenticated", "networks", P_LIST, "{}", 0, 0, check_cidr, F(unauth.networks), EC, LIVE},
    {"unauthenticated", "quota", P_INT, "100", 0, 4294967295L, NULL, F(unauth.quota), EC, LIVE},
    {"unauthenticated", "ipv4_prefix", P_INT, "32", 0, 32, NULL, F(unauth.ipv4_prefix), EC, LIVE},
    {"unauthenticated", "ipv6_prefix", P_INT, "64", 0, 128, NULL, F(unauth.ipv6_prefix), EC, LIVE},

    {"exempt", "users", P_LIST, "{}", 0, 0, check_no_controls, F(exempt.users), EC, LIVE},
    {"exempt", "domains", P_LIST, "{}", 0, 0, check_no_controls, F(exempt.domains), EC, LIVE},
    {"exempt", "networks", P_LIST, "{}", 0, 0, check_cidr, F(exempt.networks), EC, LIVE},

    {"signals", "enabled", P_BOOL, "true", 0, 0, NULL, F(signals.enabled), EC, RESTART},
    {"signals", "window", P_INT, "3600", SIGNALS_WINDOW_MIN_S, SIGNALS_WINDOW_MAX_S, NULL, F(signals.window), EC, LIVE},
    {"signals", "ipv4_prefix", P_INT, "24", 1, 32, NULL, F(signals.ipv4_prefix), EC, LIVE},
    {"signals", "ipv6_prefix", P_INT, "64", 1, 128, NULL, F(signals.ipv6_prefix), EC, LIVE},
    {"signals", "spread", P_INT, "12", 0, SIGNALS_NETS, NULL, F(signals.spread), EC, LIVE},
    {"signals", "spread_action", P_STR, "HOLD", 0, 0, check_signal_action, F(signals.spread_action), EC, LIVE},
    {"signals", "countries", P_INT, "4", 0, SIGNALS_COUNTRIES, NULL, F(signals.countries), EC, LIVE},
    {"signals", "countries_action", P_STR, "HOLD", 0, 0, check_signal_action, F(signals.countries_action), EC, LIVE},
    {"signals", "country_database", P_STR, "", 0, 0, check_optional_path, F(signals.country_database), EC, LIVE},
    {"signals", "rate_multiple", P_INT, "5", 0, 1000, NULL, F(signals.rate_multiple), EC, LIVE},
    {"signals", "rate_floor", P_INT, "10", 0, 4294967295L, NULL, F(signals.rate_floor), EC, LIVE},
    {"signals", "min_history", P_INT, "8", 1, 65535, NULL, F(signals.min_history), EC, LIVE},
    {"signals", "probation", P_INT, "100", 0, 4294967295L, NULL, F(signals.probation), EC, LIVE},
    {"signals", "rate_action", P_STR, "HOLD", 0, 0, check_signal_action, F(signals.rate_action), EC, LIVE},
    {"signals", "probation_action", P_STR, "HOLD", 0, 0, check_signal_action, F(signals.probation_action), EC, LIVE},
    {"signals", "allow_networks", P_LIST, "{}", 0, 0, check_cidr, F(signals.allow_networks), EC, LIVE},
    {"signals", "exempt_logins", P_LIST, "{}", 0, 0, check_no_controls, F(signals.exempt_logins), EC, LIVE},
    {"metrics", "listen", P_STR, "127.0.0.1:10034", 0, 0, check_metrics_listen, F(metrics.listen), EC, RESTART_WITH(metrics_listen)},
    {"metrics", "allowed_clients", P_LIST, "{\"127.0.0.0/8\", \"::1/128\"}", 0, 0, check_cidr, F(metrics.allowed_clients), EC, LIVE},
    {"metrics", "blocked_senders", P_INT, "0", 0, METRICS_BLOCKED_SENDERS_MAX, NULL, F(metrics.blocked_senders), EC, LIVE},
    {"signals", "reply", P_STR, "Held for review: this login looks hijacked", 0, 0, check_no_controls, F(signals.reply), EC, LIVE},

    {"cache", "entries", P_INT, "100000", 16, 100000000, NULL, F(cache.entries), EC, RESTART},
    {"cache", "domains", P_INT, "4096", 1, 1000000, NULL, F(cache.domains), EC, RESTART},
    {"cache", "refresh_interval", P_INT, "10", 1, 3600, NULL, F(cache.refresh_interval), EC, LIVE},
    {"cache", "queue_size", P_INT, "64", 1, 4096, NULL, F(cache.queue_size), EC, RESTART},

    {"purge", "chunk_rows", P_INT, "1000", 1, 1000000, NULL, F(purge.chunk_rows), EC, LIVE},
    {"purge", "pause", P_INT, "20", 0, 60000, NULL, F(purge.pause), EC, LIVE},

    {"log", "syslog", P_BOOL, "true", 0, 0, NULL, F(log.syslog), EC, LIVE},
    {"log", "facility", P_STR, "mail", 0, 0, check_facility, F(log.facility_text), EC, LIVE},
    {"log", "level", P_STR, "info", 0, 0, check_level, F(log.level_text), EC, LIVE},
    {"log", "file", P_STR, "", 0, 0, check_optional_path, F(log.file), EC, LIVE},
    {"log", "console", P_BOOL, "false", 0, 0, NULL, F(log.console), EC, LIVE},

    {"webhook", "enabled", P_BOOL, "false", 0, 0, NULL, F(webhook.enabled), EC, LIVE},
    {"webhook", "url", P_STR, "", 0, 0, check_no_controls, F(webhook.url), EC, LIVE},
    {"webhook", "secret", P_STR, "", 0, 0, NULL, F(webhook.secret), EC, LIVE},
    {"webhook", "secret_file", P_STR, "", 0, 0, check_optional_path, F(webhook.secret_file), EC, LIVE},
    {"webhook", "use_jwt", P_BOOL, "false", 0, 0, NULL, F(webhook.use_jwt), EC, LIVE},
    {"webhook", "timeout", P_INT, "5", 1, 300, NULL, F(webhook.timeout), EC, LIVE},
    {"webhook", "retries", P_INT, "5", 0, 100, NULL, F(webhook.retries), EC, LIVE},
    {"webhook", "ca_file", P_STR, "", 0, 0, check_optional_path, F(webhook.ca_file), EC, LIVE},
    {"webhook", "user_agent", P_STR, "rateguard/" RATEGUARD_VERSION, 0, 0, check_no_controls, F(webhook.user_agent), EC, LIVE},
    {"webhook", "issuer", P_STR, "rateguard", 0, 0, check_no_controls, F(webhook.issuer), EC, LIVE},

    {"sentry", "dsn", P_STR, "", 0, 0, check_dsn, F(sentry.dsn), EC, LIVE},
    {"sentry", "dsn_file", P_STR, "", 0, 0, check_optional_path, F(sentry.dsn_file), EC, LIVE},
    {"sentry", "environment", P_STR, "production", 0, 0, check_no_controls, F(sentry.environment), EC, LIVE},
    {"sentry", "release", P_STR, "rateguard@" RATEGUARD_VERSION, 0, 0, check_no_controls, F(sentry.release), EC, LIVE},
    {"sentry", "timeout", P_INT, "5", 1, 60, NULL, F(sentry.timeout), EC, LIVE},
    {"sentry", "rate_limit", P_INT, "60", 1, 86400, NULL, F(sentry.rate_limit), EC, LIVE},
    {"sentry", "ca_file", P_STR, "", 0, 0, check_optional_path, F(sentry.ca_file), EC, LIVE},

    {"report", "enabled", P_BOOL, "false", 0, 0, NULL, F(report.enabled), EC, LIVE},
    {"report", "from", P_STR, "", 0, 0, check_optional_mailbox, F(report.from), EC, LIVE},
    {"report", "to", P_LIST, "{}", 0, 0, check_mailbox, F(report.to), EC, LIVE},
    {"report", "subject", P_STR, "rateguard report", 0, 0, check_no_controls, F(report.subject), EC, LIVE},
    {"report", "smtp_server", P_STR, "localhost:25", 0, 0, check_smtp_server, F(report.smtp_server), EC, LIVE},
    {"report", "starttls", P_BOOL, "false", 0, 0, NULL, F(report.starttls), EC, LIVE},
    {"report", "user", P_STR, "", 0, 0, check_no_controls, F(report.user), EC, LIVE},
    {"report", "password", P_STR, "", 0, 0, NULL, F(report.password), EC, LIVE},
    {"report", "password_file", P_STR, "", 0, 0, check_optional_path, F(report.password_file), EC, LIVE},
    {"report", "ca_file", P_STR, "", 0, 0, check_optional_path, F(report.ca_file), EC, LIVE},
    {"report", "timeout", P_INT, "30", 1, 600, NULL, F(report.timeout), EC, LIVE},
};

#define N_PARAMS (sizeof(params) / sizeof(params[0]))

/* State of one parse: the first error, and the line each key was set on so
 * that cross-checks done after parsing can still point at a line. */
static struct parse_state {
    const char *name;
    char *err;
    size_t errsize;
    int exit_code;
    int line[N_PARAMS];
} *parse;

static void qualified_name(const struct param *p, char *buf, size_t size)
{
    if (p->section)
        snprintf(buf, size, "%s.%s", p->section, p->name);
    else
        snprintf(buf, size, "%s", p->name);
}

static const struct param *param_find(const char *section, const char *name)
{
    for (size_t i = 0; i < N_PARAMS; i++) {
        const struct param *p = &params[i];
        bool same_section = section == NULL ? p->section == NULL
                                            : p->section && strcmp(section, p->section) == 0;
        if (same_section && strcmp(p->name, name) == 0)
            return p;
    }
    return NULL;
}

static const struct param *param_find_qualified(const char *qname)
{
    const char *dot = strchr(qname, '.');
    char section[32];

    if (dot == NULL)
        return param_find(NULL, qname);
    if ((size_t)(dot - qname) >= sizeof(section))
        return NULL;
    memcpy(section, qname, (size_t)(dot - qname));
    section[dot - qname] = '\0';
    return param_find(section, dot + 1);
}

/* Record the first error only: later ones are usually consequences. */
static void record_error(int line, int exit_code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void record_error(int line, int exit_code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (parse->err[0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(parse->err, parse->errsize, "%s:%d: %s", parse->name, line, msg);
    else
        snprintf(parse->err, parse->errsize, "%s: %s", parse->name, msg);
    parse->exit_code = exit_code;
}

/* libconfuse's own errors: syntax, unknown keys, wrong types. */
static void confuse_error(cfg_t *cfg, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    record_error(cfg ? cfg->line : 0, RG_EXIT_CONFIG, "%s", msg);
}

/* Called by libconfuse for every value read from the file. */
static int validate_param(cfg_t *cfg, cfg_opt_t *opt)
{
    const char *section = strcmp(cfg_name(cfg), "root") == 0 ? NULL : cfg_name(cfg);
    const struct param *p = param_find(section, cfg_opt_name(opt));
    char qname[64], why[256];

    if (p == NULL)
        return 0;
    qualified_name(p, qname, sizeof(qname));
    parse->line[p - params] = cfg->line;

    for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
        if (p->type == P_INT) {
            long v = cfg_opt_getnint(opt, i);
            if (v < p->min || v > p->max) {
                record_error(cfg->line, p->exit_code, "%s: %ld is out of range %ld..%ld",
                             qname, v, p->min, p->max);
                return -1;
            }
        } else if ((p->type == P_STR || p->type == P_LIST) && p->check) {
            const char *v = cfg_opt_getnstr(opt, i);
            if (!p->check(v ? v : "", why, sizeof(why))) {
                record_error(cfg->line, p->exit_code, "%s: %s", qname, why);
                return -1;
            }
        }
    }
    return 0;
}

static cfg_opt_t make_option(const struct param *p)
{
    switch (p->type) {
    case P_INT: {
        cfg_opt_t o = CFG_INT(p->name, strtol(p->def, NULL, 10), CFGF_NONE);
        return o;
    }
    case P_BOOL: {
        cfg_opt_t o = CFG_BOOL(p->name, strcmp(p->def, "true") == 0 ? cfg_true : cfg_false, CFGF_NONE);
        return o;
    }
    case P_STR: {
        cfg_opt_t o = CFG_STR(p->name, p->def, CFGF_NONE);
        return o;
    }
    case P_LIST:
    default: {
        cfg_opt_t o = CFG_STR_LIST(p->name, (char *)p->def, CFGF_NONE);
        return o;
    }
    }
}

/* Build libconfuse's option tree from params[]: top-level options, then one
 * CFG_SEC per section. The arrays live until cfg_free. */
#define MAX_SECTIONS 16

struct option_tree {
    cfg_opt_t *top;
    cfg_opt_t *sections[MAX_SECTIONS];
    size_t n_sections;
};

static void option_tree_build(struct option_tree *t)
{
    const char *names[MAX_SECTIONS];
    size_t n_top = 0;

    memset(t, 0, sizeof(*t));
    t->top = xcalloc(N_PARAMS + MAX_SECTIONS + 1, sizeof(cfg_opt_t));
    for (size_t i = 0; i < N_PARAMS; i++) {
        const struct param *p = &params[i];
        if (p->section == NULL) {
            t->top[n_top++] = make_option(p);
            continue;
        }
        size_t s;
        for (s = 0; s < t->n_sections && strcmp(names[s], p->section) != 0; s++)
            ;
        if (s == t->n_sections) {
            if (s == MAX_SECTIONS)
                log_panic("config: more than %d sections in params[]", MAX_SECTIONS);
            names[s] = p->section;
            t->sections[s] = xcalloc(N_PARAMS + 1, sizeof(cfg_opt_t));
            t->n_sections++;
        }
        cfg_opt_t *sub = t->sections[s];
        size_t k = 0;
        while (sub[k].name)
            k++;
        sub[k] = make_option(p);
        cfg_opt_t end = CFG_END();
        sub[k + 1] = end;
    }
    for (size_t s = 0; s < t->n_sections; s++) {
        cfg_opt_t sec = CFG_SEC(names[s], t->sections[s], CFGF_NONE);
        t->top[n_top++] = sec;
    }
    cfg_opt_t end = CFG_END();
    t->top[n_top] = end;
}

static void option_tree_free(struct option_tree *t)
{
    for (size_t s = 0; s < t->n_sections; s++)
        free(t->sections[s]);
    free(t->top);
}

static void install_validators(cfg_t *cfg)
{
    for (size_t i = 0; i < N_PARAMS; i++) {
        char path[64];
        if (params[i].section)
            snprintf(path, sizeof(path), "%s|%s", params[i].section, params[i].name);
        else
            snprintf(path, sizeof(path), "%s", params[i].name);
        cfg_set_validate_func(cfg, path, validate_param);
    }
}

/* Copy every value from the parsed tree into the plain struct. */
static void copy_values(cfg_t *root, struct rg_config *out)
{
    for (size_t i = 0; i < N_PARAMS; i++) {
        const struct param *p = &params[i];
        cfg_t *sec = p->section ? cfg_getsec(root, p->section) : root;
        char *field = (char *)out + p->offset;

        switch (p->type) {
        case P_INT:
            *(long *)field = cfg_getint(sec, p->name);
            break;
        case P_BOOL:
            *(bool *)field = cfg_getbool(sec, p->name) == cfg_true;
            break;
        case P_STR: {
            const char *v = cfg_getstr(sec, p->name);
            *(char **)field = xstrdup(v ? v : "");
            break;
        }
        case P_LIST: {
            struct str_list *list = (struct str_list *)field;
            list->count = cfg_size(sec, p->name);
            list->items = xcalloc(list->count + 1, sizeof(char *));
            for (size_t k = 0; k < list->count; k++)
                list->items[k] = xstrdup(cfg_getnstr(sec, p->name, (unsigned)k));
            break;
        }
        }
    }
}

static int line_of(const char *qname)
{
    const struct param *p = param_find_qualified(qname);
    return p ? parse->line[p - params] : 0;
}

static const struct { const char *name; int value; } facilities[] = {
    {"mail", LOG_MAIL}, {"daemon", LOG_DAEMON}, {"user", LOG_USER},
    {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
    {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
    {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
};

static const struct { const char *name; int value; } levels[] = {
    {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"notice", LOG_NOTICE},
    {"warning", LOG_WARNING}, {"error", LOG_ERR},
};

static const char *const schedules[] = {"none", "hourly", "daily", "weekly", "monthly"};

static const char *const protocol_states[] = {
    "CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN",
};

#define LOOKUP(table, key, field_out)                                        \
    do {                                                                     \
        for (size_t i_ = 0; i_ < sizeof(table) / sizeof(table[0]); i_++)     \
            if (strcasecmp(table[i_].name, key) == 0)                        \
                field_out = table[i_].value;                                 \
    } while (0)

/* A secret kept out of the main file (webhook.secret_file,
 * sentry.dsn_file, report.password_file): its first line, read now (at
 * start the daemon is still root; for a reload the file must be readable
 * by the daemon's user or group). *value is replaced. */
static bool read_secret_file(const char *path, char **value, char *why, size_t size)
{
    char line[1024];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(why, size, "cannot read %s: %s", path, strerror(errno));
        return false;
    }
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    line[got ? strcspn(line, "\r\n") : 0] = '\0';
    if (line[0] == '\0') {
        snprintf(why, size, "%s is empty", path);
        return false;
    }
    free(*value);
    *value = xstrdup(line);
    memset(line, 0, sizeof(line));
    return true;
}

/* One of the pairs "X" / "X_file": at most one set; the file read. */
static bool secret_pair(const char *name, const char *file_name, char **value, const char *path)
{
    char why[512];
    if ((*value)[0] != '\0' && path[0] != '\0') {
        record_error(line_of(file_name), EC, "%s: set either %s or %s, not both", file_name, name, file_name);
        return false;
    }
    if (path[0] != '\0' && !read_secret_file(path, value, why, sizeof(why))) {
        record_error(line_of(file_name), EC, "%s: %s", file_name, why);
        return false;
    }
    return true;
}

/* sentry and report: values checked one by one while parsing; here the
 * relations, the files and the parsed forms. */
static bool derive_sentry_and_report(struct rg_config *c)
{
    char why[256];

    if (!secret_pair("sentry.dsn", "sentry.dsn_file", &c->sentry.dsn, c->sentry.dsn_file))
        return false;
    if (c->sentry.dsn[0] != '\0' && !sentry_dsn_parse(c->sentry.dsn, &c->sentry_dsn, why, sizeof(why))) {
        /* only a DSN read from dsn_file gets here: the key was checked already */
        record_error(line_of("sentry.dsn_file"), EC, "sentry.dsn_file: the DSN in %s: %s", c->sentry.dsn_file, why);
        return false;
    }
    if (!secret_pair("report.password", "report.password_file", &c->report.password, c->report.password_file))
        return false;
    /* report.smtp_server was checked: HOST[:PORT] or [IPV6][:PORT] */
    const char *srv = c->report.smtp_server, *host = srv, *end, *port;
    if (srv[0] == '[') {
        host = srv + 1;
        end = strchr(host, ']');
        port = end && end[1] == ':' ? end + 2 : NULL;
    } else {
        end = strchr(srv, ':');
        port = end ? end + 1 : NULL;
    }
    size_t hlen = end ? (size_t)(end - host) : strlen(host);
    if (hlen >= sizeof(c->smtp_host))
        hlen = sizeof(c->smtp_host) - 1;
    memcpy(c->smtp_host, host, hlen);
    c->smtp_host[hlen] = '\0';
    c->smtp_port = port ? strtol(port, NULL, 10) : 25;
    if (c->report.enabled && c->report.to.count == 0) {
        record_error(line_of("report.enabled"), EC, "report.enabled: report.to must list at least one address");
        return false;
    }
    if ((c->report.user[0] != '\0') != (c->report.password[0] != '\0')) {
        record_error(line_of("report.user"), EC,
                     "report.user: set both report.user and report.password (or report.password_file), or neither");
        return false;
    }
    if (c->report.user[0] != '\0' && !c->report.starttls && !netaddr_host_is_loopback(c->smtp_host)) {
        record_error(line_of("report.user"), EC,
                     "report.user: credentials to %s would travel in clear text: set report.starttls = true",
                     c->smtp_host);
        return false;
    }
    return true;
}

/* A list of CIDR networks in its parsed form (*out: count + 1 entries). */
static bool parse_networks(const struct str_list *list, const char *name, struct cidr **out)
{
    char why[256];
    *out = xcalloc(list->count + 1, sizeof(**out));
    for (size_t i = 0; i < list->count; i++)
        if (!cidr_parse(list->items[i], &(*out)[i], why, sizeof(why))) {
            record_error(line_of(name), RG_EXIT_CONFIG, "%s: %s", name, why);
            return false;
        }
    return true;
}

/* allowed_users as uids, read now (at start and at each reload) so that a
 * typo stops the load instead of refusing Postfix later. A name of the
 * default list that this host lacks (no postfix user on a build host) is
 * left out; a name written in the file must exist. */
static bool resolve_allowed_users(struct rg_config *c)
{
    bool from_file = line_of("allowed_users") > 0;
    c->allowed_uids = xcalloc(c->allowed_users.count + 1, sizeof(*c->allowed_uids));
    for (size_t i = 0; i < c->allowed_users.count; i++) {
        const char *name = c->allowed_users.items[i];
        if (strcmp(name, "*") == 0) {
            c->allowed_users_any = true;
            continue;
        }
        struct passwd *pw = getpwnam(name);
        if (pw == NULL && from_file) {
            record_error(line_of("allowed_users"), EC, "allowed_users: user '%s' does not exist", name);
            return false;
        }
        if (pw)
            c->allowed_uids[c->allowed_uids_count++] = pw->pw_uid;
    }
    if (c->allowed_users_any && c->allowed_users.count > 1) {
        record_error(line_of("allowed_users"), EC, "allowed_users: \"*\" (anyone) goes alone, not with names");
        return false;
    }
    return true;
}

/* The signals of a hijacked account (watch.h): the core's parameters, the
 * actions, the allowlist, and the country database opened (and checked)
 * here, so that a bad one is refused by -t and by a reload. */
static bool derive_signals(struct rg_config *c)
{
    const char *const actions[4] = {c->signals.spread_action, c->signals.countries_action, c->signals.rate_action,
                                    c->signals.probation_action};
    char why[512];

    c->signal_params = (struct signals_params){
        .window_s = (uint32_t)c->signals.window, .alpha_q16 = SIGNALS_PARAMS_DEFAULT.alpha_q16,
        .min_history = (uint32_t)c->signals.min_history, .multiple_pct = (uint32_t)c->signals.rate_multiple * 100,
        .probation = (uint32_t)c->signals.probation, .jump_floor = (uint32_t)c->signals.rate_floor};
    for (int i = 0; i < 4; i++)
        c->signal_actions[i] = (unsigned char)signal_action_index(actions[i]);
    if (!parse_networks(&c->signals.allow_networks, "signals.allow_networks", &c->signal_allow_nets))
        return false;
    if (c->signals.country_database[0] && (c->geo = geo_open(c->signals.country_database, why, sizeof(why))) == NULL) {
        record_error(line_of("signals.country_database"), EC, "signals.country_database: %s", why);
        return false;
    }
    return true;
}

/* Derive parsed forms (already validated value by value) and check the
 * relations between values. Returns false after recording an error. */
static bool derive_and_cross_check(struct rg_config *c)
{
    char why[256];

    c->listen_addrs = xcalloc(c->listen.count + 1, sizeof(*c->listen_addrs));
    for (size_t i = 0; i < c->listen.count; i++)
        if (!listen_addr_parse(c->listen.items[i], &c->listen_addrs[i], why, sizeof(why))) {
            record_error(line_of("listen"), RG_EXIT_BAD_LISTEN, "listen: %s", why);
            return false;
        }
    if (!parse_networks(&c->allowed_clients, "allowed_clients", &c->allowed_nets) || !resolve_allowed_users(c))
        return false;
    if (c->quota.windows.count > WINDOWS_MAX) {
        record_error(line_of("quota.windows"), RG_EXIT_CONFIG, "quota.windows: at most %d windows", WINDOWS_MAX);
        return false;
    }
    for (size_t i = 0; i < c->quota.windows.count; i++)
        window_parse(c->quota.windows.items[i], &c->window_specs[i], why, sizeof(why));
    if (!parse_networks(&c->unauth.networks, "unauthenticated.networks", &c->unauth_nets) ||
        !parse_networks(&c->exempt.networks, "exempt.networks", &c->exempt_nets))
        return false;
    if (!derive_signals(c))
        return false;
    if (c->metrics.listen[0])
        listen_addr_parse(c->metrics.listen, &c->metrics_listen, why, sizeof(why));
    if (!parse_networks(&c->metrics.allowed_clients, "metrics.allowed_clients", &c->metrics_allowed_nets))
        return false;
    c->socket_mode = (unsigned)strtoul(c->socket_mode_text, NULL, 8);
    LOOKUP(facilities, c->log.facility_text, c->syslog_facility);
    LOOKUP(levels, c->log.level_text, c->log_level);
    for (size_t i = 0; i < sizeof(schedules) / sizeof(schedules[0]); i++)
        if (strcasecmp(schedules[i], c->quota.reset_schedule_text) == 0)
            c->reset_schedule = (enum reset_schedule)i;
    for (char *s = c->quota.protocol_state; *s; s++)
        *s = (char)toupper((unsigned char)*s);

    if (c->listen.count == 0) {
        record_error(line_of("listen"), RG_EXIT_BAD_LISTEN, "listen: at least one address is needed");
        return false;
    }
    if (!c->database.tls_cert[0] != !c->database.tls_key[0]) {
        record_error(line_of(c->database.tls_cert[0] ? "database.tls_cert" : "database.tls_key"), EC,
                     "database.tls_cert and database.tls_key go together (a client certificate and its key)");
        return false;
    }
    if ((c->database.tls_ca[0] || c->database.tls_cert[0]) && !c->database.tls) {
        record_error(line_of(c->database.tls_ca[0] ? "database.tls_ca" : "database.tls_cert"), EC,
                     "database.tls_ca and tls_cert need database.tls = true");
        return false;
    }
    if (c->workers.min > c->workers.max) {
        record_error(line_of("workers.min"), EC, "workers.min (%ld) is greater than workers.max (%ld)",
                     c->workers.min, c->workers.max);
        return false;
    }
    if (c->workers.min_spare > c->workers.max_spare) {
        record_error(line_of("workers.min_spare"), EC,
                     "workers.min_spare (%ld) is greater than workers.max_spare (%ld)",
                     c->workers.min_spare, c->workers.max_spare);
        return false;
    }
    if (c->webhook.enabled && c->webhook.url[0] == '\0') {
        record_error(line_of("webhook.enabled"), EC, "webhook.enabled: webhook.url must be set");
        return false;
    }
    if (!secret_pair("webhook.secret", "webhook.secret_file", &c->webhook.secret, c->webhook.secret_file))
        return false;
    if (c->webhook.enabled && c->webhook.secret[0] == '\0') {
        record_error(line_of("webhook.enabled"), EC,
                     "webhook.enabled: webhook.secret or webhook.secret_file must be set");
        return false;
    }
    return derive_sentry_and_report(c);
}

static struct rg_config *load(const char *path, const char *text, const char *name,
                              char *err, size_t errsize, int *exit_code)
{
    struct parse_state state = {.name = name, .err = err, .errsize = errsize, .exit_code = EC};
    struct option_tree tree;
    struct rg_config *out = NULL;
    int rc;

    err[0] = '\0';
    parse = &state;
    option_tree_build(&tree);
    cfg_t *cfg = cfg_init(tree.top, CFGF_NONE);
    cfg_set_error_function(cfg, confuse_error);
    install_validators(cfg);

    rc = path ? cfg_parse(cfg, path) : cfg_parse_buf(cfg, text);
    if (rc == CFG_FILE_ERROR)
        record_error(0, EC, "cannot read configuration: %s", strerror(errno ? errno : ENOENT));
    else if (rc != CFG_SUCCESS)
        record_error(0, EC, "invalid configuration");
    else {
        out = xcalloc(1, sizeof(*out));
        out->path = xstrdup(name);
        copy_values(cfg, out);
        if (!derive_and_cross_check(out)) {
            config_free(out);
            out = NULL;
        }
    }
    cfg_free(cfg);
    option_tree_free(&tree);
    *exit_code = out ? RG_EXIT_OK : state.exit_code;
    parse = NULL;
    return out;
}

struct rg_config *config_load(const char *path, char *err, size_t errsize, int *exit_code)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errsize, "%s: cannot open configuration file: %s", path, strerror(errno));
        *exit_code = RG_EXIT_CONFIG;
        return NULL;
    }
    fclose(f);
    return load(path, NULL, path, err, errsize, exit_code);
}

struct rg_config *config_load_string(const char *text, const char *name,
                                     char *err, size_t errsize, int *exit_code)
{
    return load(NULL, text, name, err, errsize, exit_code);
}

void config_free(struct rg_config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < N_PARAMS; i++) {
        char *field = (char *)c + params[i].offset;
        if (params[i].type == P_STR)
            free(*(char **)field);
        else if (params[i].type == P_LIST) {
            struct str_list *list = (struct str_list *)field;
            for (size_t k = 0; k < list->count; k++)
                free(list->items[k]);
            free(list->items);
        }
    }
    free(c->listen_addrs);
    free(c->allowed_nets);
    free(c->allowed_uids);
    free(c->exempt_nets);
    free(c->unauth_nets);
    free(c->signal_allow_nets);
    free(c->metrics_allowed_nets);
    geo_close(c->geo);
    free(c->path);
    free(c);
}

bool config_print_value(const struct rg_config *c, const char *qname, FILE *out)
{
    const struct param *p = param_find_qualified(qname);
    if (p == NULL)
        return false;

    const char *field = (const char *)c + p->offset;
    switch (p->type) {
    case P_INT:
        fprintf(out, "%ld\n", *(const long *)field);
        break;
    case P_BOOL:
        fprintf(out, "%s\n", *(const bool *)field ? "true" : "false");
        break;
    case P_STR:
        fprintf(out, "%s\n", *(char *const *)field);
        break;
    case P_LIST: {
        const struct str_list *list = (const struct str_list *)field;
        for (size_t k = 0; k < list->count; k++)
            fprintf(out, "%s\n", list->items[k]);
        break;
    }
    }
    return true;
}

/* Equal values of one parameter in two configurations. */
static bool same_value(const struct param *p, const struct rg_config *a, const struct rg_config *b)
{
    const char *fa = (const char *)a + p->offset, *fb = (const char *)b + p->offset;

    switch (p->type) {
    case P_INT:
        return *(const long *)fa == *(const long *)fb;
    case P_BOOL:
        return *(const bool *)fa == *(const bool *)fb;
    case P_STR:
        return strcmp(*(char *const *)fa, *(char *const *)fb) == 0;
    case P_LIST: {
        const struct str_list *la = (const struct str_list *)fa, *lb = (const struct str_list *)fb;
        if (la->count != lb->count)
            return false;
        for (size_t k = 0; k < la->count; k++)
            if (strcmp(la->items[k], lb->items[k]) != 0)
                return false;
        return true;
    }
    }
    return false;
}

/* Exchange size bytes at offset between two configurations: each keeps
 * owning (and config_free frees) what it then holds. */
static void swap_field(struct rg_config *a, struct rg_config *b, size_t offset, size_t size)
{
    unsigned char *x = (unsigned char *)a + offset, *y = (unsigned char *)b + offset;
    for (size_t i = 0; i < size; i++) {
        unsigned char t = x[i];
        x[i] = y[i];
        y[i] = t;
    }
}

static size_t type_size(enum param_type t)
{
    switch (t) {
    case P_INT:
        return sizeof(long);
    case P_BOOL:
        return sizeof(bool);
    case P_STR:
        return sizeof(char *);
    case P_LIST:
        break;
    }
    return sizeof(struct str_list);
}

size_t config_keep_restart_only(struct rg_config *fresh, struct rg_config *running,
                                void (*changed)(const char *name, void *arg), void *arg)
{
    size_t n = 0;
    char qname[64];

    for (size_t i = 0; i < N_PARAMS; i++) {
        const struct param *p = &params[i];
        if (!p->restart || same_value(p, fresh, running))
            continue;
        swap_field(fresh, running, p->offset, type_size(p->type));
        if (p->derived_size)
            swap_field(fresh, running, p->derived, p->derived_size);
        qualified_name(p, qname, sizeof(qname));
        if (changed)
            changed(qname, arg);
        n++;
    }
    return n;
}

void config_print_defaults(FILE *out)
{
    char name[128];
    for (size_t i = 0; i < N_PARAMS; i++) {
        const struct param *p = &params[i];
        qualified_name(p, name, sizeof(name));
        switch (p->type) {
        case P_INT:
        case P_BOOL:
            fprintf(out, "%s\t%s\n", name, p->def);
            break;
        case P_STR:
            /* No default holds a quote or a backslash to escape. */
            fprintf(out, "%s\t\"%s\"\n", name, p->def);
            break;
        case P_LIST:
            /* The table's {"a", "b"} as the file spells it: { "a", "b" } */
            if (strcmp(p->def, "{}") == 0)
                fprintf(out, "%s\t{}\n", name);
            else
                fprintf(out, "%s\t{ %.*s }\n", name, (int)strlen(p->def) - 2, p->def + 1);
            break;
        }
    }
}

void config_instance_name(const struct rg_config *cfg, char *buf, size_t size)
{
    snprintf(buf, size, "rateguard-%016llx", (unsigned long long)fnv1a64(cfg->path, strlen(cfg->path)));
}

void config_state_path(const struct rg_config *cfg, const char *suffix, char *buf, size_t size)
{
    char name[64];
    config_instance_name(cfg, name, sizeof(name));
    snprintf(buf, size, "%s/%s%s", cfg->state_dir, name, suffix);
}

/* ---- value checks (pure; err receives the reason) ---- */

static bool check_db_host(const char *v, char *err, size_t n)
{
    char host[256];
    unsigned port;
    if (!check_no_controls(v, err, n))
        return false;
    if (!db_split_host(v, 3306, host, sizeof(host), &port)) {
        snprintf(err, n, "'%s' is not a host, host:port or [IPv6]:port", v);
        return false;
    }
    return true;
}

static bool check_no_controls(const char *v, char *err, size_t n)
{
    for (const unsigned char *s = (const unsigned char *)v; *s; s++)
        if (*s < 0x20 || *s == 0x7f) {
            snprintf(err, n, "control characters are not allowed");
            return false;
        }
    return true;
}

static bool check_absolute_path(const char *v, char *err, size_t n)
{
    if (v[0] != '/') {
        snprintf(err, n, "'%s' is not an absolute path", v);
        return false;
    }
    return check_no_controls(v, err, n);
}

static bool check_optional_path(const char *v, char *err, size_t n)
{
    return v[0] == '\0' || check_absolute_path(v, err, n);
}

static bool check_account(const char *v, char *err, size_t n)
{
    if (v[0] == '\0' || strlen(v) > 32 || strpbrk(v, " :/\t") != NULL) {
        snprintf(err, n, "'%s' is not a user or group name", v);
        return false;
    }
    return check_no_controls(v, err, n);
}

static bool check_optional_account(const char *v, char *err, size_t n)
{
    return v[0] == '\0' || check_account(v, err, n);
}

static bool check_allowed_user(const char *v, char *err, size_t n)
{
    return strcmp(v, "*") == 0 || check_account(v, err, n);
}

static bool check_listen(const char *v, char *err, size_t n)
{
    struct listen_addr la;
    return listen_addr_parse(v, &la, err, n);
}

/* An address and port for /metrics, or "" for none; not a unix socket
 * (Prometheus scrapes over TCP). */
static bool check_metrics_listen(const char *v, char *err, size_t n)
{
    struct listen_addr la;
    if (v[0] == '\0')
        return true;
    if (!listen_addr_parse(v, &la, err, n))
        return false;
    if (la.kind != LISTEN_INET) {
        snprintf(err, n, "'%s': /metrics is served over TCP (an address and port, or \"\" for none)", v);
        return false;
    }
    return true;
}

static bool check_window(const char *v, char *err, size_t n)
{
    struct window_spec w;
    return window_parse(v, &w, err, n);
}

static bool check_cidr(const char *v, char *err, size_t n)
{
    struct cidr net;
    return cidr_parse(v, &net, err, n);
}

static bool check_mode(const char *v, char *err, size_t n)
{
    size_t len = strlen(v);
    if (len < 3 || len > 4 || strspn(v, "01234567") != len) {
        snprintf(err, n, "'%s' is not an octal file mode such as \"0660\"", v);
        return false;
    }
    return true;
}

/* The actions Postfix's access(5) accepts from a policy server. */
static bool check_action(const char *v, char *err, size_t n)
{
    static const char *const known[] = {
        "OK", "DUNNO", "REJECT", "DEFER", "DEFER_IF_PERMIT", "DEFER_IF_REJECT",
        "HOLD", "DISCARD", "WARN", "INFO", "FILTER", "PREPEND", "REDIRECT", "BCC",
    };
    size_t word = strcspn(v, " \t");

    if (!check_no_controls(v, err, n))
        return false;
    if (word == 3 && (v[0] == '4' || v[0] == '5') && isdigit((unsigned char)v[1]) &&
        isdigit((unsigned char)v[2]))
        return true;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i]) == word && strncasecmp(v, known[i], word) == 0)
            return true;
    snprintf(err, n, "'%s' does not start with a Postfix access action (DUNNO, OK, "
             "DEFER_IF_PERMIT, REJECT, HOLD, 4NN, 5NN, ...)", v);
    return false;
}

/* The actions of a signal, weakest first (enum watch_action's order). */
static const char *const signal_actions[] = {"log", "HOLD", "DEFER_IF_PERMIT", "REJECT", "lock"};

static int signal_action_index(const char *v)
{
    for (size_t i = 0; i < sizeof(signal_actions) / sizeof(signal_actions[0]); i++)
        if (strcasecmp(v, signal_actions[i]) == 0)
            return (int)i;
    return -1;
}

static bool check_signal_action(const char *v, char *err, size_t n)
{
    if (signal_action_index(v) >= 0)
        return true;
    snprintf(err, n, "'%s' is not a signal's action (log, HOLD, DEFER_IF_PERMIT, REJECT or lock)", v);
    return false;
}

static bool check_protocol_state(const char *v, char *err, size_t n)
{
    for (size_t i = 0; i < sizeof(protocol_states) / sizeof(protocol_states[0]); i++)
        if (strcasecmp(v, protocol_states[i]) == 0)
            return true;
    snprintf(err, n, "'%s' is not a Postfix protocol state (DATA, END-OF-MESSAGE, RCPT, ...)", v);
    return false;
}

static bool check_schedule(const char *v, char *err, size_t n)
{
    for (size_t i = 0; i < sizeof(schedules) / sizeof(schedules[0]); i++)
        if (strcasecmp(v, schedules[i]) == 0)
            return true;
    snprintf(err, n, "'%s' is not one of none, hourly, daily, weekly, monthly", v);
    return false;
}

static bool check_facility(const char *v, char *err, size_t n)
{
    for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++)
        if (strcasecmp(v, facilities[i].name) == 0)
            return true;
    snprintf(err, n, "'%s' is not a syslog facility (mail, daemon, user, local0..local7)", v);
    return false;
}

static bool check_level(const char *v, char *err, size_t n)
{
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        if (strcasecmp(v, levels[i].name) == 0)
            return true;
    snprintf(err, n, "'%s' is not a log level (debug, info, notice, warning, error)", v);
    return false;
}

/* A DSN as written in the file. The reason never quotes the value: it
 * holds the key. */
static bool check_dsn(const char *v, char *err, size_t n)
{
    struct sentry_dsn d;
    char why[200];
    if (v[0] == '\0')
        return true;
    if (!sentry_dsn_parse(v, &d, why, sizeof(why))) {
        snprintf(err, n, "not a usable Sentry DSN: %s", why);
        return false;
    }
    return true;
}

/* host, host:port, [IPv6] or [IPv6]:port */
static bool check_smtp_server(const char *v, char *err, size_t n)
{
    const char *port = NULL;
    size_t hlen;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (close == NULL || close == v + 1 || (close[1] != '\0' && close[1] != ':'))
            goto bad;
        hlen = (size_t)(close - v - 1);
        if (strspn(v + 1, "0123456789abcdefABCDEF:.") < hlen)
            goto bad;
        port = close[1] == ':' ? close + 2 : NULL;
    } else {
        const char *colon = strchr(v, ':');
        hlen = colon ? (size_t)(colon - v) : strlen(v);
        if (hlen == 0)
            goto bad;
        for (size_t i = 0; i < hlen; i++)
            if (!isalnum((unsigned char)v[i]) && v[i] != '-' && v[i] != '.' && v[i] != '_')
                goto bad;
        port = colon ? colon + 1 : NULL;
    }
    if (hlen >= 256)
        goto bad;
    if (port) {
        unsigned long p;
        if (!parse_ulong(port, 65535, &p) || p == 0)
            goto bad;
    }
    return true;
bad:
    snprintf(err, n, "'%s' is not HOST, HOST:PORT or [IPV6]:PORT", v);
    return false;
}

/* A bare address local@domain: what goes into MAIL FROM / RCPT TO and the
 * headers, so no spaces, brackets, commas or controls. */
static bool check_mailbox(const char *v, char *err, size_t n)
{
    const char *at = strrchr(v, '@');
    if (at == NULL || at == v || at[1] == '\0' || strpbrk(v, " \t<>(),;:\"\\[]") != NULL ||
        !check_no_controls(v, err, n) || strlen(v) > 254) {
        snprintf(err, n, "'%s' is not a mail address (local@domain)", v);
        return false;
    }
    return true;
}

static bool check_optional_mailbox(const char *v, char *err, size_t n)
{
    return v[0] == '\0' || check_mailbox(v, err, n);
}
