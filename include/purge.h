/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * purge.h - the retention purge of the `messages` table in bounded chunks,
 * shared by the writer (paced, between its rounds: writepurge.h) and
 * `rateguard cleanup` (to completion).
 *
 * A purge run has one cutoff, computed once when it begins: midnight
 * message_retention days ago by the database's clock and time zone
 * (CURDATE(), as the single DELETE it replaces). Each chunk is one
 * statement, DELETE ... WHERE created_at < cutoff ORDER BY created_at
 * LIMIT chunk_rows, and its own transaction (committed at once): no
 * transaction of a purge deletes more than chunk_rows rows. The predicate
 * is idempotent, so a run killed between chunks (or in one, rolled back)
 * leaves only rows that any later run deletes; two hosts purging at once
 * delete each row once (a conflict is the caller's to retry).
 */
#ifndef RG_PURGE_H
#define RG_PURGE_H

#include <mysql.h>
#include <stdbool.h>
#include <stddef.h>

#define PURGE_CUTOFF_SIZE 16    /* "YYYY-MM-DD" and its NUL, with room */

/* One purge run: caller-owned, no resources held. */
struct purge_run {
    char cutoff[PURGE_CUTOFF_SIZE]; /* rows created before its midnight go */
    long chunk_rows;                /* at most this many rows per transaction */
    unsigned long long rows;        /* deleted so far by this run */
    unsigned long long chunks;      /* chunks committed so far (an empty last one included) */
    bool done;                      /* a chunk deleted fewer than chunk_rows rows */
};

/* Begin a run: asks the database for the cutoff (and ends that read's
 * transaction). False with err set (the error's code in *errnum) when the
 * database fails. */
bool purge_begin(MYSQL *db, long retention_days, long chunk_rows, struct purge_run *run, unsigned *errnum,
                 char *err, size_t errsize);

/* One chunk, committed; *deleted its rows, added to the run's counts, and
 * done set when it deleted fewer than chunk_rows. On failure: rolled back,
 * the run unchanged, the error's code in *errnum (the caller tells a
 * conflict, tried again later, from an outage), err set. */
bool purge_chunk(MYSQL *db, struct purge_run *run, unsigned long long *deleted, unsigned *errnum, char *err,
                 size_t errsize);

#endif
