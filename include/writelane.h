/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * writelane.h - the writer's database connections, one per lane, and what
 * each writes of a round in its own transaction. struct lanes owns the
 * connections, their prepared statements and each lane's batch
 * (writebatch.h); the round (writeround.c) fills the batches and reads
 * each lane's outcome. It calls nothing above it.
 */
#ifndef RG_WRITELANE_H
#define RG_WRITELANE_H

#include "cachesync.h"
#include "writebatch.h"
#include "wqueue.h"

#include <mysql.h>
#include <stdbool.h>
#include <stdint.h>

struct rg_config;
struct shm;

/* The bulk statements, by shape. Parsing a statement of a thousand rows
 * costs the server as much as a fifth of running it, so the shapes in use
 * stay prepared, least recently used out first: the statements that read
 * or create rows are padded to a power of two of rows, and the messages
 * rows (which cannot be padded) go in statements of powers of two, the
 * largest first: a few round trips cost less than parsing a new size. */
enum bulk_kind {
    BULK_CREATE, BULK_SELECT_LOCK_ID, BULK_SELECT_LOCK, BULK_SELECT_NEW, BULK_UPSERT, BULK_MESSAGES, BULK_KINDS
};

#define BULK_CACHE 40

struct bulk_stmt {
    MYSQL_STMT *st;             /* NULL: free entry */
    enum bulk_kind kind;
    size_t rows;
    uint64_t last_used;
};

struct lanes;

/* One database connection and the records of a round it writes: the
 * senders of its share (writer_lane), or all of them when lane 0 does the
 * round alone; it then carries the other lanes' progress rows too. */
struct lane {
    struct lanes *set;
    MYSQL *db;
    MYSQL_STMT *save_progress;
    struct bulk_stmt bulk[BULK_CACHE];
    uint64_t bulk_clock;
    struct write_batch batch;       /* the round's records of this lane */
    bool saves[WRITER_LANES];       /* progress rows this lane writes in this round */
    /* The outcome of its part of a round (a lane may run in its own thread). */
    bool ok;
    unsigned int bulk_errno;        /* server error of the last failed bulk statement */
    char err[1024];
};

struct lanes {
    const struct rg_config *cfg;    /* borrowed */
    struct shm *shm;                /* borrowed: the statement counters */
    struct lane lane[WRITER_LANES];
    MYSQL_STMT *upsert, *insert_message;    /* one record at a time, on lane 0 */
    char progress_name[WRITER_LANES][256];
    const struct progress *last;    /* during lanes_run: the values of the progress rows saved */
};

/* Batches allocated, nothing connected; name is "host/instance", the
 * progress rows' name. lanes_free disconnects and frees. */
void lanes_init(struct lanes *ls, const struct rg_config *cfg, struct shm *shm, const char *name);
void lanes_free(struct lanes *ls);

/* Every lane's connection, with its session settings; false with err
 * (nothing left connected). */
bool lanes_connect(struct lanes *ls, char *err, size_t errsize);
void lanes_disconnect(struct lanes *ls);

/* Lane 0's connection (housekeeping, the progress rows), NULL when not
 * connected. Borrowed. */
static inline MYSQL *lanes_db(const struct lanes *ls)
{
    return ls->lane[0].db;
}

/* The statements a round needs, prepared once per connection, and every
 * lane's progress row saved as `committed` (created if missing).
 * Separate from connecting: a refresh or a reset needs only the
 * connection, and must not wait for a table the writes need. */
bool lanes_prepare(struct lanes *ls, const struct progress committed[WRITER_LANES], char *err, size_t errsize);

/* Careful mode: one record on lane 0, in its open transaction; on failure
 * *code is the server's error (refused or not: lanes_refused_error). */
bool lanes_write_record(struct lanes *ls, const struct msg_record *r, unsigned int *code, char *err,
                        size_t errsize);

/* Lane 0's transaction rolled back. */
void lanes_rollback(struct lanes *ls);

/* Rows for the new senders of every lane's batch, in a transaction of its
 * own on lane 0 before the lanes run side by side; on failure lane 0's
 * bulk_errno says why. */
bool lanes_create_rows(struct lanes *ls, char *err, size_t errsize);

/* The lanes with records write them and the progress rows their saves[]
 * name (values from last), each in its own transaction: side by side when
 * `parallel`, else one after the other; `careful`: lane 0's records are
 * written already (lanes_write_record). Each lane's ok, bulk_errno and err
 * tell its outcome. */
void lanes_run(struct lanes *ls, const struct progress last[WRITER_LANES], bool careful, bool parallel);

/* Errors that say "this record's values can never be stored", and a
 * conflict with another transaction (a deadlock: retry at once). */
bool lanes_refused_error(unsigned int code);
bool lanes_conflict_error(unsigned int code);

/* The server's error code of the last failed prepare (per thread). */
extern __thread unsigned int lanes_prepare_errno;

#endif
