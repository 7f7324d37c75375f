/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * purge.c - the retention purge of `messages` in bounded chunks (purge.h):
 * owns the two statements, the cutoff query and the chunk's DELETE.
 *
 * Why ORDER BY created_at and not ORDER BY id or primary key ranges: the
 * chunk then walks the messages_created_at_index range below the cutoff
 * and stops at its end, so it locks (REPEATABLE READ's next-key locks)
 * only old entries and the gap at the cutoff, never the young rows nor the
 * end of the table where every host inserts. ORDER BY id would walk the
 * primary key: its last chunk, with fewer old rows left than the limit,
 * reads (and locks) every young row to the end of the table, and holds
 * the gap the writers insert into. Ranges of id need the same walk to
 * find where the old rows end, and ids need not follow created_at (a row
 * written late after an outage carries its own older time).
 */
#include "purge.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* The code and text of the failed call, the transaction rolled back. */
static bool fail(MYSQL *db, const char *what, unsigned *errnum, char *err, size_t errsize)
{
    *errnum = mysql_errno(db);
    snprintf(err, errsize, "%s: %s", what, mysql_error(db));
    mysql_rollback(db);
    return false;
}

/* "YYYY-MM-DD" and nothing else: the only text put into a statement. */
static bool plain_date(const char *s)
{
    for (int i = 0; i < 10; i++)
        if (i == 4 || i == 7 ? s[i] != '-' : !isdigit((unsigned char)s[i]))
            return false;
    return s[10] == '\0';
}

bool purge_begin(MYSQL *db, long retention_days, long chunk_rows, struct purge_run *run, unsigned *errnum,
                 char *err, size_t errsize)
{
    char sql[128];

    memset(run, 0, sizeof(*run));
    run->chunk_rows = chunk_rows;
    /* The database's clock and time zone, as the DELETE this replaces had
     * it (CURDATE() - INTERVAL N DAY); once per run, so that a run that
     * goes on past midnight keeps its cutoff and ends. */
    snprintf(sql, sizeof(sql), "SELECT CURDATE() - INTERVAL %ld DAY", retention_days);
    if (mysql_real_query(db, sql, strlen(sql)) != 0)
        return fail(db, "purge cutoff", errnum, err, errsize);
    MYSQL_RES *res = mysql_store_result(db);
    MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
    bool ok = row != NULL && row[0] != NULL && plain_date(row[0]);
    if (ok)
        snprintf(run->cutoff, sizeof(run->cutoff), "%s", row[0]);
    mysql_free_result(res);
    mysql_commit(db);       /* end the read's transaction */
    if (!ok) {
        *errnum = 0;
        snprintf(err, errsize, "purge cutoff: the database gave no date for CURDATE() - INTERVAL %ld DAY",
                 retention_days);
        return false;
    }
    return true;
}

bool purge_chunk(MYSQL *db, struct purge_run *run, unsigned long long *deleted, unsigned *errnum, char *err,
                 size_t errsize)
{
    char sql[200];

    snprintf(sql, sizeof(sql),
             "DELETE FROM `messages` WHERE `created_at` < '%s' ORDER BY `created_at` LIMIT %ld", run->cutoff,
             run->chunk_rows);
    if (mysql_real_query(db, sql, strlen(sql)) != 0)
        return fail(db, "purge of old messages", errnum, err, errsize);
    my_ulonglong n = mysql_affected_rows(db);
    if (mysql_commit(db) != 0)
        return fail(db, "purge of old messages: commit", errnum, err, errsize);
    *deleted = (unsigned long long)n;
    run->rows += *deleted;
    run->chunks++;
    run->done = *deleted < (unsigned long long)run->chunk_rows;
    return true;
}
