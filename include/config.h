/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * config.h - rateguard.conf: the one place that knows every parameter's
 * name, type, default and bounds (the table in config.c), parsing with
 * libconfuse, validation with file:line messages, and --get-config.
 *
 * Ownership: config_load() returns a struct the caller frees with
 * config_free(). Nothing in it changes after loading; a reload builds a
 * new one and swaps it in only when it is valid.
 */
#ifndef RG_CONFIG_H
#define RG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "netaddr.h"
#include "sentry.h"
#include "signals.h"
#include "windows.h"

struct str_list {
    char **items;
    size_t count;
};

enum reset_schedule { RESET_NONE, RESET_HOURLY, RESET_DAILY, RESET_WEEKLY, RESET_MONTHLY };

struct rg_config {
    char *path;                 /* file it was read from */

    char *user, *group, *pidfile, *state_dir;
    struct str_list listen;
    char *socket_mode_text;
    char *socket_group;         /* "" = group */
    struct str_list allowed_clients;
    struct str_list allowed_users;  /* local accounts that may connect over TCP; "*" = anyone */
    char *action_accept, *action_blocked, *on_error;
    long message_retention;     /* days, 0 = keep forever */

    struct {
        long min, max, min_spare, max_spare, max_requests, idle_timeout, read_timeout, max_per_client,
             stress_read_timeout;
    } workers;
    struct {
        char *host, *socket, *user, *password, *name;
        long port, connect_timeout;
        bool tls, tls_verify_server;
        char *tls_ca, *tls_cert, *tls_key;
        struct str_list hosts;      /* tried in order; empty: host/port/socket */
    } database;
    struct {
        long dflt;
        char *protocol_state, *reset_schedule_text;
        bool count_blocked, dry_run;
        long warning_percent;       /* 0 = no warning */
        long max_recipients;        /* per message, 0 = no cap */
        struct str_list windows;    /* "LIMIT/LENGTH" sliding windows */
    } quota;
    struct {
        struct str_list users, domains, networks;
    } exempt;
    struct {
        struct str_list networks;   /* clients whose unauthenticated mail is counted */
        long quota, ipv4_prefix, ipv6_prefix;
    } unauth;
    struct {
        long entries, domains, refresh_interval, queue_size;
    } cache;
    struct {
        long chunk_rows;            /* rows per purge transaction at most */
        long pause;                 /* ms between two chunks of the writer's purge */
    } purge;
    struct {
        bool syslog, console;
        char *facility_text, *level_text, *file;
    } log;
    struct {
        bool enabled, use_jwt;
        char *url, *secret, *secret_file, *ca_file, *user_agent, *issuer;
        long timeout, retries;
    } webhook;
    struct {
        char *dsn, *dsn_file, *environment, *release, *ca_file;
        long timeout, rate_limit;
    } sentry;
    struct {
        bool enabled;
        long window, ipv4_prefix, ipv6_prefix, spread, countries, rate_multiple, rate_floor, min_history, probation;
        char *country_database, *reply;
        char *spread_action, *countries_action, *rate_action, *probation_action;
        struct str_list allow_networks, exempt_logins;
    } signals;
    struct {
#define METRICS_BLOCKED_SENDERS_MAX 100 /* the cap of metrics.blocked_senders */
        char *listen;                   /* "" : no /metrics */
        struct str_list allowed_clients;
        long blocked_senders;           /* series of the most blocked senders, 0: none */
    } metrics;
    struct {
        bool enabled, starttls;
        char *from, *subject, *smtp_server, *user, *password, *password_file, *ca_file;
        struct str_list to;
        long timeout;
    } report;

    /* Derived from the text values above while loading. */
    struct listen_addr *listen_addrs;   /* listen.count entries */
    struct cidr *allowed_nets;          /* allowed_clients.count entries */
    uid_t *allowed_uids;                /* allowed_users resolved (names this host lacks left out) */
    size_t allowed_uids_count;
    bool allowed_users_any;             /* allowed_users = { "*" }: no check */
    struct cidr *exempt_nets;           /* exempt.networks.count entries */
    struct cidr *unauth_nets;           /* unauth.networks.count entries */
    struct cidr *signal_allow_nets;     /* signals.allow_networks.count entries */
    struct signals_params signal_params; /* signals.window, rate_multiple, min_history, probation */
    unsigned char signal_actions[4];    /* enum watch_action of spread, countries, rate, probation */
    struct geo *geo;                    /* signals.country_database opened, NULL when none */
    struct listen_addr metrics_listen;  /* metrics.listen parsed; salen 0 when off */
    struct cidr *metrics_allowed_nets;  /* metrics.allowed_clients.count entries */
    struct window_spec window_specs[WINDOWS_MAX];   /* quota.windows.count entries */
    unsigned socket_mode;
    int syslog_facility;                /* LOG_MAIL, ... */
    int log_level;                      /* LOG_INFO, ... */
    enum reset_schedule reset_schedule;
    struct sentry_dsn sentry_dsn;       /* parsed sentry.dsn; key[0] == 0 when off */
    char smtp_host[256];                /* report.smtp_server split: host (no brackets) */
    long smtp_port;                     /* and port (default 25) */
};

/*
 * Load and validate a configuration file. On failure returns NULL, writes
 * "FILE:LINE: key: reason" (or "FILE: reason") to err and sets *exit_code
 * to RG_EXIT_CONFIG, or RG_EXIT_BAD_LISTEN for a bad listen address.
 */
struct rg_config *config_load(const char *path, char *err, size_t errsize, int *exit_code);

/* Load from a string (for tests and fuzzing); name is used in messages. */
struct rg_config *config_load_string(const char *text, const char *name,
                                     char *err, size_t errsize, int *exit_code);

void config_free(struct rg_config *cfg);

/*
 * Print the effective value of "name" or "section.name" to out: scalars on
 * one line, lists one item per line. Returns false for an unknown name.
 */
bool config_print_value(const struct rg_config *cfg, const char *name, FILE *out);

/*
 * Reload: fresh takes running's value of every setting marked restart-only
 * in the parameter table (the listeners, accounts, paths and sizes the
 * running daemon was built around), with its parsed form; running gets
 * fresh's values in exchange, so each still frees what it holds. For each
 * such setting whose value differed, changed (may be NULL) is called with
 * its name ("pidfile", "quota.windows"; valid during the call only).
 * Returns how many differed.
 */
size_t config_keep_restart_only(struct rg_config *fresh, struct rg_config *running,
                                void (*changed)(const char *name, void *arg), void *arg);

/*
 * Print every parameter with its built-in default, one "name<TAB>default"
 * line each in params[] order, the default spelled as in rateguard.conf
 * ("text", { "a", "b" }, {}, 42, true): what --list-config prints.
 */
void config_print_defaults(FILE *out);

/* The name this configuration's files carry ("rateguard-<hash of the
 * config file's path>"), so that two instances on one host never share a
 * queue, spool or state file. */
void config_instance_name(const struct rg_config *cfg, char *buf, size_t size);

/* state_dir/<instance name><suffix> */
void config_state_path(const struct rg_config *cfg, const char *suffix, char *buf, size_t size);

#endif
