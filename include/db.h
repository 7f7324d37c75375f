/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * db.h - opening a MariaDB/MySQL connection from the [database] section
 * and running plain statements. Only the writer, the preloader and the
 * operator commands (migrate, cleanup) talk to the database; workers
 * never do.
 */
#ifndef RG_DB_H
#define RG_DB_H

#include <mysql.h>
#include <stdbool.h>
#include <stddef.h>

struct rg_config;

/* Connect with the configured timeouts and utf8mb4: to database.hosts in
 * order, the first that answers (and, for a Galera node, is in the
 * primary component), or else to host/port/socket. Returns NULL and a
 * reason in err (never containing the password; the last host's when
 * none answered) on failure. The caller closes the handle with
 * mysql_close(). */
MYSQL *db_connect(const struct rg_config *cfg, char *err, size_t errsize);

/* Split one database.hosts entry ("host", "host:port", "[v6]:port");
 * port defaults to default_port. False when it is not one. */
bool db_split_host(const char *spec, long default_port, char *host, size_t size, unsigned *port);

/* Run one statement that returns no rows. On failure writes
 * "statement: server error" to err. */
bool db_exec(MYSQL *db, const char *sql, char *err, size_t errsize);

/* A prepared statement with string parameters (the server converts them
 * to the columns' types): never a value spliced into SQL text. */
bool db_exec_params(MYSQL *db, const char *sql, const char *const *params, size_t n, unsigned long long *affected,
                    char *err, size_t errsize);

/* The first row of a prepared SELECT, each of `columns` columns as text
 * into out[i] (width bytes each; NULL reads as ""). Returns 1 with a row,
 * 0 without, -1 on error (err set). */
int db_query_row_params(MYSQL *db, const char *sql, const char *const *params, size_t n, char **out,
                        size_t columns, size_t width, char *err, size_t errsize);

#endif
