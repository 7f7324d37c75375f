/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * migrate.c - applies the embedded sql/ migrations and records them in
 * `rateguard_schema`. MariaDB commits DDL implicitly, so a migration
 * cannot be one transaction; instead every statement is written to be
 * idempotent (IF NOT EXISTS ...) and a migration is recorded only after
 * all its statements succeeded, so a run interrupted halfway is finished
 * by the next one.
 */
#include "migrate.h"
#include "db.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char schema_table[] =
    "CREATE TABLE IF NOT EXISTS `rateguard_schema` ("
    " `version` int unsigned NOT NULL PRIMARY KEY,"
    " `name` varchar(255) NOT NULL,"
    " `applied_at` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP)";

bool migrate_current_version(MYSQL *db, unsigned *version, char *err, size_t errsize)
{
    const char *sql = "SELECT COALESCE(MAX(`version`), 0) FROM `rateguard_schema`";
    MYSQL_RES *res;
    MYSQL_ROW row;

    if (mysql_real_query(db, sql, strlen(sql)) != 0 || (res = mysql_store_result(db)) == NULL) {
        snprintf(err, errsize, "%s: %s", sql, mysql_error(db));
        return false;
    }
    row = mysql_fetch_row(res);
    *version = row && row[0] ? (unsigned)strtoul(row[0], NULL, 10) : 0;
    mysql_free_result(res);
    return true;
}

static bool is_applied(MYSQL *db, unsigned version, bool *applied, char *err, size_t errsize)
{
    char sql[128];
    MYSQL_RES *res;

    snprintf(sql, sizeof(sql), "SELECT 1 FROM `rateguard_schema` WHERE `version` = %u", version);
    if (mysql_real_query(db, sql, strlen(sql)) != 0 || (res = mysql_store_result(db)) == NULL) {
        snprintf(err, errsize, "%s: %s", sql, mysql_error(db));
        return false;
    }
    *applied = mysql_num_rows(res) > 0;
    mysql_free_result(res);
    return true;
}

/* Run the statements of one migration: split at ';' ending a line, skip
 * comment lines. */
static bool run_statements(MYSQL *db, const struct migration *m, char *err, size_t errsize)
{
    char *text = xstrdup(m->sql);
    char *stmt = xmalloc(strlen(m->sql) + 1);
    size_t len = 0;
    bool ok = true;

    for (char *line = strtok(text, "\n"); line && ok; line = strtok(NULL, "\n")) {
        const char *s = line + strspn(line, " \t");
        if (strncmp(s, "--", 2) == 0 || *s == '\0')
            continue;
        size_t n = strlen(line);
        memcpy(stmt + len, line, n);
        len += n;
        stmt[len++] = '\n';
        while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
            n--;
        if (n > 0 && line[n - 1] == ';') {
            stmt[len] = '\0';
            char why[1024];
            if (!db_exec(db, stmt, why, sizeof(why))) {
                snprintf(err, errsize, "migration %s: %s", m->name, why);
                ok = false;
            }
            len = 0;
        }
    }
    if (ok && len > 0 && strspn(stmt, " \t\n") < len) {
        snprintf(err, errsize, "migration %s: last statement does not end with ';'", m->name);
        ok = false;
    }
    free(stmt);
    free(text);
    return ok;
}

bool migrate_apply(MYSQL *db, unsigned *applied_count, char *err, size_t errsize)
{
    char why[1024];
    bool ok = true;

    *applied_count = 0;
    if (!db_exec(db, schema_table, err, errsize))
        return false;
    /* Two `migrate` runs at once (two hosts, one database) take turns. */
    if (!db_exec(db, "DO GET_LOCK('rateguard_migrate', 60)", err, errsize))
        return false;

    for (unsigned i = 0; i < migrations_count && ok; i++) {
        const struct migration *m = &migrations[i];
        bool done;
        if (!is_applied(db, m->version, &done, err, errsize)) {
            ok = false;
            break;
        }
        if (done)
            continue;
        if (!run_statements(db, m, err, errsize)) {
            ok = false;
            break;
        }
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO `rateguard_schema` (`version`, `name`) VALUES (%u, '%s')",
                 m->version, m->name);
        if (!db_exec(db, sql, err, errsize)) {
            ok = false;
            break;
        }
        log_info("migrate: applied %s", m->name);
        (*applied_count)++;
    }
    if (!db_exec(db, "DO RELEASE_LOCK('rateguard_migrate')", why, sizeof(why)) && ok) {
        snprintf(err, errsize, "%s", why);
        ok = false;
    }
    return ok;
}
