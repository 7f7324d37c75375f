/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * db.c - MariaDB Connector/C connection set-up shared by every process
 * that talks to the database.
 */
#include "db.h"
#include "config.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "host", "host:port" or "[v6]:port" of database.hosts; port defaults to
 * database.port. False when the port is not a number. */
bool db_split_host(const char *spec, long default_port, char *host, size_t size, unsigned *port)
{
    const char *colon = strrchr(spec, ':');
    size_t len = strlen(spec);

    *port = (unsigned)default_port;
    if (spec[0] == '[') {                       /* [v6] or [v6]:port */
        const char *close = strchr(spec, ']');
        if (close == NULL)
            return false;
        len = (size_t)(close - spec - 1);
        spec++;
        colon = close[1] == ':' ? close + 1 : NULL;
        if (close[1] != '\0' && colon == NULL)
            return false;
    } else if (colon && strchr(spec, ':') != colon)
        colon = NULL;                           /* a bare IPv6 address */
    else if (colon)
        len = (size_t)(colon - spec);
    if (colon) {
        char *end;
        unsigned long p = strtoul(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || p == 0 || p > 65535)
            return false;
        *port = (unsigned)p;
    }
    if (len == 0 || len >= size)
        return false;
    memcpy(host, spec, len);
    host[len] = '\0';
    return true;
}

/* The value of a one-row SHOW (Variable_name, Value) into out; "" when
 * the server has no such name. False when the statement fails. */
static bool show_value(MYSQL *db, const char *sql, char *out, size_t size, char *why, size_t whysize)
{
    if (mysql_query(db, sql) != 0) {
        snprintf(why, whysize, "%s", mysql_error(db));
        return false;
    }
    MYSQL_RES *res = mysql_store_result(db);
    MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
    snprintf(out, size, "%s", row && row[1] ? row[1] : "");
    mysql_free_result(res);
    return true;
}

/* A Galera node outside the primary component answers connections but no
 * queries (wsrep_ready OFF): for rateguard that is an outage, not a
 * database. A server without wsrep_on (plain MariaDB, MySQL) is ready. */
static bool node_ready(MYSQL *db, char *why, size_t size)
{
    char on[16], ready[16];
    if (!show_value(db, "SHOW VARIABLES LIKE 'wsrep_on'", on, sizeof(on), why, size))
        return false;
    if (strcmp(on, "ON") != 0)
        return true;
    if (!show_value(db, "SHOW STATUS LIKE 'wsrep_ready'", ready, sizeof(ready), why, size))
        return false;
    if (strcmp(ready, "ON") == 0)
        return true;
    snprintf(why, size, "Galera node not ready (wsrep_ready %s: not in the primary component)",
             ready[0] ? ready : "missing");
    return false;
}

static MYSQL *connect_one(const struct rg_config *cfg, const char *host, unsigned port, const char *socket,
                          char *err, size_t errsize)
{
    MYSQL *db = mysql_init(NULL);
    unsigned int timeout = (unsigned int)cfg->database.connect_timeout;
    char why[512];

    if (db == NULL) {
        snprintf(err, errsize, "mysql_init: out of memory");
        return NULL;
    }
    mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    /* Reads and writes get a bound too, so a hung server cannot hang us. */
    unsigned int io_timeout = timeout * 6;
    mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
    mysql_options(db, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
    mysql_options(db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (cfg->database.tls) {
        /* Encrypted or not at all; the server's certificate checked against
         * tls_ca (or the system's CAs) and its name unless told otherwise. */
        my_bool enforce = 1, verify = cfg->database.tls_verify_server ? 1 : 0;
        mysql_optionsv(db, MYSQL_OPT_SSL_ENFORCE, &enforce);
        mysql_optionsv(db, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
        if (cfg->database.tls_ca[0])
            mysql_optionsv(db, MYSQL_OPT_SSL_CA, cfg->database.tls_ca);
        if (cfg->database.tls_cert[0]) {
            mysql_optionsv(db, MYSQL_OPT_SSL_CERT, cfg->database.tls_cert);
            mysql_optionsv(db, MYSQL_OPT_SSL_KEY, cfg->database.tls_key);
        }
    }
    const char *where = socket ? socket : host;
    if (mysql_real_connect(db, socket ? "localhost" : host, cfg->database.user, cfg->database.password,
                           cfg->database.name, port, socket, 0) == NULL) {
        snprintf(err, errsize, "connect to database '%s' as '%s' at %s%s: %s", cfg->database.name,
                 cfg->database.user, where, cfg->database.tls ? " (TLS)" : "", mysql_error(db));
        mysql_close(db);
        return NULL;
    }
    if (!node_ready(db, why, sizeof(why))) {
        snprintf(err, errsize, "database '%s' at %s: %s", cfg->database.name, where, why);
        mysql_close(db);
        return NULL;
    }
    return db;
}

MYSQL *db_connect(const struct rg_config *cfg, char *err, size_t errsize)
{
    if (cfg->database.hosts.count == 0)
        return connect_one(cfg, cfg->database.host, (unsigned)cfg->database.port,
                           cfg->database.socket[0] ? cfg->database.socket : NULL, err, errsize);
    /* database.hosts: the first that answers and is ready, in order. */
    char first_err[512] = "";
    for (size_t i = 0; i < cfg->database.hosts.count; i++) {
        char host[256];
        unsigned port;
        if (!db_split_host(cfg->database.hosts.items[i], cfg->database.port, host, sizeof(host), &port))
            continue;       /* refused by the configuration check already */
        MYSQL *db = connect_one(cfg, host, port, NULL, err, errsize);
        if (db != NULL) {
            if (i > 0)
                log_notice("database: %s; connected to %s instead", first_err, cfg->database.hosts.items[i]);
            return db;
        }
        if (i == 0)
            snprintf(first_err, sizeof(first_err), "%s", err);
    }
    return NULL;
}

bool db_exec(MYSQL *db, const char *sql, char *err, size_t errsize)
{
    if (mysql_real_query(db, sql, strlen(sql)) != 0) {
        snprintf(err, errsize, "%.200s: %s", sql, mysql_error(db));
        return false;
    }
    /* A statement may still hand back a result set; drain it. */
    MYSQL_RES *res = mysql_store_result(db);
    if (res)
        mysql_free_result(res);
    return true;
}

/* Bind the strings as parameters and execute; the statement is returned
 * for the caller to read (if it has a result) and close. */
static MYSQL_STMT *run_with_params(MYSQL *db, const char *sql, const char *const *params, size_t n, char *err,
                                   size_t errsize)
{
    MYSQL_STMT *st = mysql_stmt_init(db);
    MYSQL_BIND b[8];
    unsigned long lens[8];

    if (st == NULL || n > 8) {
        snprintf(err, errsize, "%s", st ? "too many parameters" : mysql_error(db));
        if (st)
            mysql_stmt_close(st);
        return NULL;
    }
    memset(b, 0, sizeof(b));
    for (size_t i = 0; i < n; i++) {
        lens[i] = (unsigned long)strlen(params[i]);
        b[i].buffer_type = MYSQL_TYPE_STRING;
        b[i].buffer = (void *)params[i];
        b[i].buffer_length = lens[i];
        b[i].length = &lens[i];
    }
    if (mysql_stmt_prepare(st, sql, strlen(sql)) != 0 || mysql_stmt_bind_param(st, b) != 0 ||
        mysql_stmt_execute(st) != 0) {
        snprintf(err, errsize, "%.200s: %s", sql, mysql_stmt_error(st));
        mysql_stmt_close(st);
        return NULL;
    }
    return st;
}

bool db_exec_params(MYSQL *db, const char *sql, const char *const *params, size_t n, unsigned long long *affected,
                    char *err, size_t errsize)
{
    MYSQL_STMT *st = run_with_params(db, sql, params, n, err, errsize);
    if (st == NULL)
        return false;
    if (affected)
        *affected = (unsigned long long)mysql_stmt_affected_rows(st);
    mysql_stmt_close(st);
    return true;
}

int db_query_row_params(MYSQL *db, const char *sql, const char *const *params, size_t n, char **out,
                        size_t columns, size_t width, char *err, size_t errsize)
{
    MYSQL_STMT *st = run_with_params(db, sql, params, n, err, errsize);
    if (st == NULL)
        return -1;
    MYSQL_BIND *res = calloc(columns, sizeof(MYSQL_BIND));
    unsigned long *lens = calloc(columns, sizeof(unsigned long));
    my_bool *nulls = calloc(columns, sizeof(my_bool));
    int found = -1;
    if (res && lens && nulls) {
        for (size_t i = 0; i < columns; i++) {
            res[i].buffer_type = MYSQL_TYPE_STRING;
            res[i].buffer = out[i];
            res[i].buffer_length = width;
            res[i].length = &lens[i];
            res[i].is_null = &nulls[i];
        }
        int rc = mysql_stmt_bind_result(st, res) == 0 ? mysql_stmt_fetch(st) : 1;
        if (rc == 0 || rc == MYSQL_DATA_TRUNCATED) {
            for (size_t i = 0; i < columns; i++)
                out[i][nulls[i] ? 0 : lens[i] < width ? lens[i] : width - 1] = '\0';
            found = 1;
        } else if (rc == MYSQL_NO_DATA) {
            found = 0;
        } else {
            snprintf(err, errsize, "%.200s: %s", sql, mysql_stmt_error(st));
        }
    } else {
        snprintf(err, errsize, "out of memory");
    }
    free(res);
    free(lens);
    free(nulls);
    mysql_stmt_close(st);
    return found;
}
