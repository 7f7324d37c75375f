/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * writelane.c - a lane's transaction: the writer's database connections
 * (one per lane, struct lanes owns them), their session settings and
 * prepared statements, and the statements of a round. Normally a lane's share goes in a few bulk
 * statements: read and lock its senders' rows, one upsert of every
 * sender's increments, the `messages` rows; then its progress rows and
 * COMMIT. In careful mode (after a refusal) lane 0 writes record by record,
 * to find the refused one. All statements with values are prepared.
 */
#include "writelane.h"
#include "config.h"
#include "db.h"
#include "quota.h"
#include "shm.h"
#include "util.h"

#include <errmsg.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Counters saturate in the database as in the cache (quota_sat_add), at
 * the largest value of their INT UNSIGNED columns: the sum is computed in
 * 64 bits, so it never fails as out of range. */
#define SQL_COUNTER_MAX "4294967295"

static const char sql_upsert[] =
    "INSERT INTO `ratelimits` (`sender`, `quota`, `quota_reset`, `msg_counter`, `rcpt_counter`, "
    "`msg_total`, `rcpt_total`, `notified`) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON DUPLICATE KEY UPDATE "
    "`notified` = IF(`reset_at` IS NULL OR `reset_at` <= FROM_UNIXTIME(?), (`notified` & ~?) | ?, `notified`), "
    "`msg_counter` = LEAST(`msg_counter` + IF(`reset_at` IS NULL OR `reset_at` <= FROM_UNIXTIME(?), VALUES(`msg_counter`), 0), " SQL_COUNTER_MAX "), "
    "`rcpt_counter` = LEAST(`rcpt_counter` + IF(`reset_at` IS NULL OR `reset_at` <= FROM_UNIXTIME(?), VALUES(`rcpt_counter`), 0), " SQL_COUNTER_MAX "), "
    "`msg_total` = LEAST(`msg_total` + VALUES(`msg_total`), " SQL_COUNTER_MAX "), "
    "`rcpt_total` = LEAST(`rcpt_total` + VALUES(`rcpt_total`), " SQL_COUNTER_MAX "), `id` = LAST_INSERT_ID(`id`)";

static const char sql_insert_message[] =
    "INSERT INTO `messages` (`ratelimit_id`, `msgid`, `sender`, `rcpt_count`, `blocked`, "
    "`from_addr`, `to_addr`, `client_address`, `client_name`, `created_at`) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, FROM_UNIXTIME(?))";

static const char sql_save_progress[] =
    "INSERT INTO `rateguard_progress` (`writer`, `epoch`, `last_seq`) VALUES (?, ?, ?) "
    "ON DUPLICATE KEY UPDATE `epoch` = VALUES(`epoch`), `last_seq` = VALUES(`last_seq`)";

static void bind_str(MYSQL_BIND *b, const char *s, unsigned long *len)
{
    *len = (unsigned long)strlen(s);
    b->buffer_type = MYSQL_TYPE_STRING;
    b->buffer = (void *)s;
    b->buffer_length = *len;
    b->length = len;
}

static void bind_u32(MYSQL_BIND *b, uint32_t *v)
{
    b->buffer_type = MYSQL_TYPE_LONG;
    b->buffer = v;
    b->is_unsigned = 1;
}

static void bind_u64(MYSQL_BIND *b, uint64_t *v)
{
    b->buffer_type = MYSQL_TYPE_LONGLONG;
    b->buffer = v;
    b->is_unsigned = 1;
}

static void bind_double(MYSQL_BIND *b, double *v)
{
    b->buffer_type = MYSQL_TYPE_DOUBLE;
    b->buffer = v;
}

void lanes_init(struct lanes *ls, const struct rg_config *cfg, struct shm *shm, const char *name)
{
    memset(ls, 0, sizeof(*ls));
    ls->cfg = cfg;
    ls->shm = shm;
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        ls->lane[k].set = ls;
        batch_init(&ls->lane[k].batch);
        progress_row_name(name, k, ls->progress_name[k], sizeof(ls->progress_name[k]));
    }
}

void lanes_free(struct lanes *ls)
{
    lanes_disconnect(ls);
    for (unsigned k = 0; k < WRITER_LANES; k++)
        batch_free(&ls->lane[k].batch);
}

void lanes_disconnect(struct lanes *ls)
{
    MYSQL_STMT **stmts[] = {&ls->upsert, &ls->insert_message};
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
        if (*stmts[i]) {
            mysql_stmt_close(*stmts[i]);
            *stmts[i] = NULL;
        }
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        struct lane *l = &ls->lane[k];
        if (l->save_progress)
            mysql_stmt_close(l->save_progress);
        l->save_progress = NULL;
        for (size_t i = 0; i < BULK_CACHE; i++)
            if (l->bulk[i].st) {
                mysql_stmt_close(l->bulk[i].st);
                l->bulk[i].st = NULL;
            }
        if (l->db)
            mysql_close(l->db);
        l->db = NULL;
    }
}

/* The server's error code of the last failed prepare(): closing the
 * statement clears it from the connection. */
__thread unsigned int lanes_prepare_errno;

static MYSQL_STMT *prepare(MYSQL *db, const char *sql, char *err, size_t errsize)
{
    MYSQL_STMT *st = mysql_stmt_init(db);
    if (st == NULL || mysql_stmt_prepare(st, sql, strlen(sql)) != 0) {
        snprintf(err, errsize, "prepare: %s", st ? mysql_stmt_error(st) : mysql_error(db));
        lanes_prepare_errno = st ? mysql_stmt_errno(st) : mysql_errno(db);
        if (st)
            mysql_stmt_close(st);
        return NULL;
    }
    return st;
}

/* The sessions: transactions, no foreign key checks (messages.ratelimit_id
 * always names a row this transaction has locked, by SELECT ... FOR UPDATE
 * or its own upsert, so the server's check - a lookup and a lock per
 * message - proves nothing), and READ COMMITTED: no gap locks, or the
 * lanes' locking reads of senders not in the table yet would lock each
 * other's inserts. */
bool lanes_connect(struct lanes *ls, char *err, size_t errsize)
{
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        struct lane *l = &ls->lane[k];
        if ((l->db = db_connect(ls->cfg, err, errsize)) == NULL)
            goto fail;
        mysql_autocommit(l->db, 0);
        if (mysql_query(l->db, "SET SESSION foreign_key_checks = 0") != 0 ||
            mysql_query(l->db, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED") != 0) {
            snprintf(err, errsize, "%s", mysql_error(l->db));
            goto fail;
        }
    }
    return true;
fail:
    lanes_disconnect(ls);
    return false;
}

/* The errors that say "this record's values can never be stored"; every
 * other error (connection, permissions, locks, a full disk, a cluster not
 * ready, a missing table) is the database's state: wait and try again. */
bool lanes_refused_error(unsigned int code)
{
    return code == ER_DATA_TOO_LONG || code == ER_TRUNCATED_WRONG_VALUE_FOR_FIELD ||
           code == ER_WARN_DATA_OUT_OF_RANGE || code == ER_DATA_OUT_OF_RANGE || code == ER_BAD_NULL_ERROR ||
           code == ER_TRUNCATED_WRONG_VALUE || code == ER_NO_REFERENCED_ROW_2;
}

/* A conflict with another transaction: InnoDB's deadlock, or on Galera a
 * certification failure or brute-force abort (another node committed the
 * same rows first; also reported as a deadlock). Not an outage: the round
 * is retried at once, and counted. (A lock wait timeout is no conflict:
 * someone holds the rows for long, an operator's to see in the log.) */
bool lanes_conflict_error(unsigned int code)
{
    return code == ER_LOCK_DEADLOCK;
}

/* A statement of this kind done, and the time since t0 (the metrics). */
static void count_statement(struct lanes *ls, enum db_kind kind, int64_t t0)
{
    STAT_ADD(ls->shm, db_statements[kind], 1);
    STAT_ADD(ls->shm, db_statement_us[kind], (uint64_t)(clock_monotonic_us() - t0));
}

void lanes_rollback(struct lanes *ls)
{
    mysql_rollback(ls->lane[0].db);
}

bool lanes_write_record(struct lanes *ls, const struct msg_record *r, unsigned int *code, char *err,
                        size_t errsize)
{
    int64_t t0 = clock_monotonic_us();
    MYSQL_BIND b[13];
    unsigned long len[13];
    uint32_t quota = r->quota_default, msg = r->msg_delta, rcpt = r->rcpt_delta;
    uint32_t rcpt_count = r->rcpt_count, blocked = r->blocked;
    uint32_t set = r->notified_set, clear = r->notified_clear;
    double created = (double)r->created_us / 1e6;
    uint64_t id;

    memset(b, 0, sizeof(b));
    bind_str(&b[0], r->sender, &len[0]);
    bind_u32(&b[1], &quota);
    bind_u32(&b[2], &quota);
    bind_u32(&b[3], &msg);
    bind_u32(&b[4], &rcpt);
    bind_u32(&b[5], &msg);
    bind_u32(&b[6], &rcpt);
    bind_u32(&b[7], &set);
    bind_double(&b[8], &created);
    bind_u32(&b[9], &clear);
    bind_u32(&b[10], &set);
    bind_double(&b[11], &created);
    bind_double(&b[12], &created);
    if (mysql_stmt_bind_param(ls->upsert, b) != 0 || mysql_stmt_execute(ls->upsert) != 0) {
        snprintf(err, errsize, "update ratelimits for %s: %s", r->sender, mysql_stmt_error(ls->upsert));
        *code = mysql_stmt_errno(ls->upsert);
        return false;
    }
    id = mysql_stmt_insert_id(ls->upsert);

    memset(b, 0, sizeof(b));
    bind_u64(&b[0], &id);
    bind_str(&b[1], r->msgid, &len[1]);
    bind_str(&b[2], r->sender, &len[2]);
    bind_u32(&b[3], &rcpt_count);
    bind_u32(&b[4], &blocked);
    bind_str(&b[5], r->from_addr, &len[5]);
    bind_str(&b[6], r->to_addr, &len[6]);
    bind_str(&b[7], r->client_address, &len[7]);
    bind_str(&b[8], r->client_name, &len[8]);
    bind_double(&b[9], &created);
    if (mysql_stmt_bind_param(ls->insert_message, b) != 0 || mysql_stmt_execute(ls->insert_message) != 0) {
        snprintf(err, errsize, "insert into messages for %s: %s", r->sender,
                 mysql_stmt_error(ls->insert_message));
        *code = mysql_stmt_errno(ls->insert_message);
        return false;
    }
    count_statement(ls, DB_ONE_BY_ONE, t0);
    return true;
}

/* The progress rows `which` says, on this lane's connection. */
static bool save_progress(struct lane *l, const struct progress last[WRITER_LANES], const bool which[WRITER_LANES],
                          char *err, size_t errsize)
{
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        if (!which[k])
            continue;
        int64_t t0 = clock_monotonic_us();
        MYSQL_BIND b[3];
        unsigned long len;
        uint64_t epoch = last[k].epoch, seq = last[k].seq;
        memset(b, 0, sizeof(b));
        bind_str(&b[0], l->set->progress_name[k], &len);
        bind_u64(&b[1], &epoch);
        bind_u64(&b[2], &seq);
        if (mysql_stmt_bind_param(l->save_progress, b) != 0 || mysql_stmt_execute(l->save_progress) != 0) {
            snprintf(err, errsize, "save progress: %s", mysql_stmt_error(l->save_progress));
            return false;
        }
        count_statement(l->set, DB_PROGRESS, t0);
    }
    return true;
}

/* Separate from connecting: a refresh or a reset needs only the
 * connection, and must not wait for a table the writes need. */
bool lanes_prepare(struct lanes *ls, const struct progress committed[WRITER_LANES], char *err, size_t errsize)
{
    if (ls->upsert)
        return true;
    MYSQL *db = ls->lane[0].db;
    if ((ls->upsert = prepare(db, sql_upsert, err, errsize)) == NULL ||
        (ls->insert_message = prepare(db, sql_insert_message, err, errsize)) == NULL)
        return false;
    for (unsigned k = 0; k < WRITER_LANES; k++)
        if ((ls->lane[k].save_progress = prepare(ls->lane[k].db, sql_save_progress, err, errsize)) == NULL)
            return false;
    /* Every lane's row exists from the first round on: a missing one reads
     * as lane 0's, which is only right before then (an upgrade from a
     * writer without lanes). */
    bool all[WRITER_LANES];
    memset(all, 1, sizeof(all));
    if (!save_progress(&ls->lane[0], committed, all, err, errsize))
        return false;
    if (mysql_commit(db) != 0) {
        snprintf(err, errsize, "commit: %s", mysql_error(db));
        return false;
    }
    return true;
}

/* Build "head (row),(row),... tail" for a statement over `rows` rows. */
static char *rows_sql(const char *head, const char *row, size_t rows, const char *tail)
{
    size_t len = strlen(head) + rows * (strlen(row) + 1) + strlen(tail) + 1;
    char *sql = xmalloc(len), *p = sql;
    p += sprintf(p, "%s", head);
    for (size_t i = 0; i < rows; i++)
        p += sprintf(p, "%s%s", i ? "," : "", row);
    sprintf(p, "%s", tail);
    return sql;
}

/* Rows a padded statement has for n rows: the next power of two. */
static size_t padded_rows(size_t n)
{
    size_t rows = 1;
    while (rows < n)
        rows *= 2;
    return rows;
}

static char *bulk_sql(enum bulk_kind kind, size_t rows)
{
    switch (kind) {
    case BULK_CREATE:
        return rows_sql("INSERT INTO `ratelimits` (`sender`, `quota`, `quota_reset`) VALUES ", "(?, ?, ?)", rows,
                        " ON DUPLICATE KEY UPDATE `id` = `id` RETURNING `id`, `sender`");
    case BULK_SELECT_LOCK_ID:
        return rows_sql("SELECT " CACHESYNC_COLUMNS " FROM `ratelimits` WHERE `id` IN (", "?", rows, ") FOR UPDATE");
    case BULK_SELECT_LOCK:
    case BULK_SELECT_NEW:
        return rows_sql("SELECT " CACHESYNC_COLUMNS " FROM `ratelimits` WHERE `sender` IN (", "?", rows,
                        kind == BULK_SELECT_LOCK ? ") FOR UPDATE" : ")");
    case BULK_UPSERT:
        /* Rows that exist come with their id: the duplicate is found on the
         * primary key at once, not after a failed insert into the sender
         * index. New rows come with a NULL id. */
        return rows_sql("INSERT INTO `ratelimits` (`id`, `sender`, `quota`, `quota_reset`, `msg_counter`, "
                        "`rcpt_counter`, `msg_total`, `rcpt_total`, `notified`) VALUES ",
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?)", rows,
                        " ON DUPLICATE KEY UPDATE `notified` = VALUES(`notified`), "
                        "`msg_counter` = LEAST(`msg_counter` + VALUES(`msg_counter`), " SQL_COUNTER_MAX "), "
                        "`rcpt_counter` = LEAST(`rcpt_counter` + VALUES(`rcpt_counter`), " SQL_COUNTER_MAX "), "
                        "`msg_total` = LEAST(`msg_total` + VALUES(`msg_total`), " SQL_COUNTER_MAX "), "
                        "`rcpt_total` = LEAST(`rcpt_total` + VALUES(`rcpt_total`), " SQL_COUNTER_MAX ")");
    case BULK_MESSAGES:
    case BULK_KINDS:
        break;
    }
    return rows_sql("INSERT INTO `messages` (`ratelimit_id`, `msgid`, `sender`, `rcpt_count`, `blocked`, "
                    "`from_addr`, `to_addr`, `client_address`, `client_name`, `created_at`) VALUES ",
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, FROM_UNIXTIME(? / 1000000.0))", rows, "");
}

/* Execute the bulk statement of this shape with these parameters. The
 * statement stays the lane's (cached); a result must be read to its end or
 * freed before the next use. */
static MYSQL_STMT *run_bulk(struct lane *l, enum bulk_kind kind, size_t rows, MYSQL_BIND *params, char *err,
                            size_t errsize)
{
    struct bulk_stmt *b = NULL, *oldest = &l->bulk[0];
    for (size_t i = 0; i < BULK_CACHE && b == NULL; i++) {
        if (l->bulk[i].st && l->bulk[i].kind == kind && l->bulk[i].rows == rows)
            b = &l->bulk[i];
        else if (l->bulk[i].st == NULL || (oldest->st && l->bulk[i].last_used < oldest->last_used))
            oldest = &l->bulk[i];
    }
    if (b == NULL) {
        b = oldest;
        if (b->st)
            mysql_stmt_close(b->st);
        char *sql = bulk_sql(kind, rows);
        b->st = prepare(l->db, sql, err, errsize);
        free(sql);
        if (b->st == NULL) {
            l->bulk_errno = lanes_prepare_errno;  /* on Galera a conflict may show here first */
            return NULL;
        }
        b->kind = kind;
        b->rows = rows;
    }
    b->last_used = ++l->bulk_clock;
    if (mysql_stmt_bind_param(b->st, params) != 0 || mysql_stmt_execute(b->st) != 0) {
        snprintf(err, errsize, "bulk statement of %zu rows: %s", rows, mysql_stmt_error(b->st));
        l->bulk_errno = mysql_stmt_errno(b->st);
        return NULL;
    }
    return b->st;
}

/* `rows` rows of `per_row` parameters each, in statements of power-of-two
 * sizes, the largest first: no padding (a row can only be written once),
 * and few sizes, which stay prepared. Each statement counted as `kind`. */
static bool run_in_chunks(struct lane *l, enum bulk_kind bulk, enum db_kind kind, size_t rows, size_t per_row,
                          MYSQL_BIND *params, char *err, size_t errsize)
{
    for (size_t done = 0, chunk; done < rows; done += chunk) {
        for (chunk = 1; chunk * 2 <= rows - done; chunk *= 2)
            ;
        int64_t t0 = clock_monotonic_us();
        if (run_bulk(l, bulk, chunk, &params[done * per_row], err, errsize) == NULL)
            return false;
        count_statement(l->set, kind, t0);
    }
    return true;
}

/* A result that could not be read: the error is on the statement or, for
 * one the server sent instead of a row (a deadlock), on the connection;
 * kept in bulk_errno, which tells a deadlock or a refusal. */
static void fetch_failed(struct lane *l, MYSQL_STMT *st, const char *what, char *err, size_t errsize)
{
    bool on_statement = mysql_stmt_errno(st) != 0;
    l->bulk_errno = on_statement ? mysql_stmt_errno(st) : mysql_errno(l->db);
    snprintf(err, errsize, "%s: %s", what, on_statement ? mysql_stmt_error(st) : mysql_error(l->db));
}

/* Read the rows a bulk SELECT returns into their touched[] entries. */
static bool fetch_touched(struct lane *l, MYSQL_STMT *st, char *err, size_t errsize)
{
    MYSQL_BIND out[14];
    unsigned long sender_len;
    char sender[1024];
    struct db_row r;
    uint32_t locked, block_action, notified;

    memset(out, 0, sizeof(out));
    memset(&r, 0, sizeof(r));
    out[0].buffer_type = MYSQL_TYPE_STRING;
    out[0].buffer = sender;
    out[0].buffer_length = sizeof(sender) - 1;
    out[0].length = &sender_len;
    bind_u64(&out[1], &r.id);
    bind_u32(&out[2], &r.quota);
    bind_u32(&out[3], &r.quota_reset);
    bind_u32(&out[4], &locked);
    bind_u32(&out[5], &r.msg_counter);
    bind_u32(&out[6], &r.rcpt_counter);
    bind_u32(&out[7], &r.msg_total);
    bind_u32(&out[8], &r.rcpt_total);
    out[9].buffer_type = MYSQL_TYPE_LONGLONG;
    out[9].buffer = &r.reset_us;
    out[10].buffer_type = MYSQL_TYPE_LONGLONG;
    out[10].buffer = &r.msg_quota;
    out[11].buffer_type = MYSQL_TYPE_LONGLONG;
    out[11].buffer = &r.rcpt_quota;
    bind_u32(&out[12], &block_action);
    bind_u32(&out[13], &notified);
    if (mysql_stmt_bind_result(st, out) != 0) {
        snprintf(err, errsize, "bind result: %s", mysql_stmt_error(st));
        mysql_stmt_free_result(st);
        return false;
    }
    int rc;
    while ((rc = mysql_stmt_fetch(st)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
        sender[sender_len < sizeof(sender) ? sender_len : sizeof(sender) - 1] = '\0';
        int t = batch_find(&l->batch, sender);
        if (t < 0)
            continue;
        r.locked = (uint8_t)(locked != 0);
        r.block_action = (uint8_t)(block_action < BLOCK_ACTIONS ? block_action : BLOCK_ACTION_DEFAULT);
        r.notified = (uint8_t)notified;
        l->batch.touched[t].row = r;
        l->batch.touched[t].found = true;
    }
    bool ok = rc == MYSQL_NO_DATA;
    if (!ok)
        fetch_failed(l, st, "read rows", err, errsize);
    mysql_stmt_free_result(st);
    return ok;
}

/* Read touched rows into touched[].row (found set): with lock, all of
 * them (FOR UPDATE, held until COMMIT), else only those not found yet.
 * Locking reads go by primary key where the cache knows the row's id (a
 * third of the cost of the sender index); the rest, and ids that turn out
 * stale, by sender. */
static bool select_touched(struct lane *l, bool lock, char *err, size_t errsize)
{
    size_t *which = xcalloc(l->batch.n_touched + 1, sizeof(size_t)), k = 0;
    bool ok = true;

    for (size_t i = 0; lock && i < l->batch.n_touched; i++)
        if (l->batch.touched[i].cached_id != 0)
            which[k++] = i;
    if (k > 0) {
        size_t rows = padded_rows(k);
        MYSQL_BIND *in = xcalloc(rows, sizeof(MYSQL_BIND));
        for (size_t i = 0; i < rows; i++)     /* the padding repeats the last id */
            bind_u64(&in[i], &l->batch.touched[which[i < k ? i : k - 1]].cached_id);
        int64_t t0 = clock_monotonic_us();
        MYSQL_STMT *st = run_bulk(l, BULK_SELECT_LOCK_ID, rows, in, err, errsize);
        ok = st != NULL && fetch_touched(l, st, err, errsize);
        count_statement(l->set, DB_LOCK_READ, t0);
        free(in);
    }
    k = 0;
    for (size_t i = 0; ok && i < l->batch.n_touched; i++)
        if (!l->batch.touched[i].found)
            which[k++] = i;
    if (ok && k > 0) {
        size_t rows = padded_rows(k);
        MYSQL_BIND *in = xcalloc(rows, sizeof(MYSQL_BIND));
        unsigned long *lens = xcalloc(rows, sizeof(unsigned long));
        for (size_t i = 0; i < rows; i++)     /* the padding repeats the last sender */
            bind_str(&in[i], l->batch.touched[which[i < k ? i : k - 1]].sender, &lens[i]);
        int64_t t0 = clock_monotonic_us();
        MYSQL_STMT *st = run_bulk(l, lock ? BULK_SELECT_LOCK : BULK_SELECT_NEW, rows, in, err, errsize);
        ok = st != NULL && fetch_touched(l, st, err, errsize);
        count_statement(l->set, lock ? DB_LOCK_READ : DB_READ_BACK, t0);
        free(lens);
        free(in);
    }
    free(which);
    return ok;
}

/* Every sender's deltas added up (counters only for messages not older
 * than the row's reset_at), from the rows as read and locked. */
static void add_up_deltas(struct lane *l)
{
    for (size_t i = 0; i < l->batch.n_touched; i++)
        l->batch.touched[i].notified = l->batch.touched[i].found ? l->batch.touched[i].row.notified : 0;
    for (size_t i = 0; i < l->batch.n_recs; i++) {
        if (l->batch.covered[i])
            continue;
        const struct msg_record *r = &l->batch.pending[i];
        struct touched *t = &l->batch.touched[l->batch.recs[i].sender];
        t->has_new = true;
        if (!t->found || r->created_us >= t->row.reset_us) {
            t->msg_counter = quota_sat_add(t->msg_counter, r->msg_delta);
            t->rcpt_counter = quota_sat_add(t->rcpt_counter, r->rcpt_delta);
            /* In the sender's order: the last change of the period wins. */
            t->notified = (t->notified & ~(uint32_t)r->notified_clear) | r->notified_set;
        }
        t->msg_total = quota_sat_add(t->msg_total, r->msg_delta);
        t->rcpt_total = quota_sat_add(t->rcpt_total, r->rcpt_delta);
        if (!t->found)
            t->row.quota = r->quota_default;    /* for a new row */
    }
}

/* The upsert of every sender's increments. Only senders with records to
 * write (a replay-only sender whose row was deleted meanwhile must not
 * come back with a zero quota), in statements of power-of-two sizes like
 * the messages rows: a padded statement would upsert up to twice the rows.
 * The rows found are locked, so their new values are the old ones plus
 * the deltas. */
static bool upsert_senders(struct lane *l, char *err, size_t errsize)
{
    size_t k = l->batch.n_touched, up = 0;
    for (size_t i = 0; i < k; i++)
        up += l->batch.touched[i].has_new;
    MYSQL_BIND *b = xcalloc(up * 9 + 1, sizeof(MYSQL_BIND));
    unsigned long *lens = xcalloc(up * 9 + 1, sizeof(unsigned long));
    for (size_t i = 0, j = 0; i < k; i++) {
        struct touched *t = &l->batch.touched[i];
        if (!t->has_new)
            continue;
        MYSQL_BIND *p = &b[j * 9];
        if (t->found)
            bind_u64(&p[0], &t->row.id);
        else
            p[0].buffer_type = MYSQL_TYPE_NULL;
        bind_str(&p[1], t->sender, &lens[j * 9 + 1]);
        bind_u32(&p[2], &t->row.quota);
        bind_u32(&p[3], &t->row.quota);
        bind_u32(&p[4], &t->msg_counter);
        bind_u32(&p[5], &t->rcpt_counter);
        bind_u32(&p[6], &t->msg_total);
        bind_u32(&p[7], &t->rcpt_total);
        bind_u32(&p[8], &t->notified);
        j++;
    }
    bool ok = run_in_chunks(l, BULK_UPSERT, DB_UPSERT, up, 9, b, err, errsize);
    free(b);
    free(lens);
    for (size_t i = 0; ok && i < k; i++) {
        struct touched *t = &l->batch.touched[i];
        if (!t->found)
            continue;
        t->row.msg_counter = quota_sat_add(t->row.msg_counter, t->msg_counter);
        t->row.rcpt_counter = quota_sat_add(t->row.rcpt_counter, t->rcpt_counter);
        t->row.msg_total = quota_sat_add(t->row.msg_total, t->msg_total);
        t->row.rcpt_total = quota_sat_add(t->row.rcpt_total, t->rcpt_total);
        if (t->has_new)
            t->row.notified = (uint8_t)t->notified;
    }
    return ok;
}

/* Every sender must have its row by now; one that the read-back did not
 * match (a spelling the database folds differently from the cache key)
 * goes record by record, where the upsert itself returns the id. */
static bool every_row_known(struct lane *l, char *err, size_t errsize)
{
    for (size_t i = 0; i < l->batch.n_touched; i++)
        if (l->batch.touched[i].has_new && l->batch.touched[i].row.id == 0) {
            snprintf(err, errsize, "the row of %.200s was not found after its upsert", l->batch.touched[i].sender);
            l->bulk_errno = ER_NO_REFERENCED_ROW_2;     /* a refusal: careful mode next */
            return false;
        }
    return true;
}

/* The messages rows of the records not yet written, in statements of
 * power-of-two sizes. */
static bool insert_messages(struct lane *l, char *err, size_t errsize)
{
    size_t n = l->batch.n_recs, rows = 0;
    MYSQL_BIND *b = xcalloc(n * 10 + 1, sizeof(MYSQL_BIND));
    unsigned long *lens = xcalloc(n * 10 + 1, sizeof(unsigned long));
    uint64_t *ids = xcalloc(n + 1, sizeof(uint64_t)), *created = xcalloc(n + 1, sizeof(uint64_t));
    uint32_t *flags = xcalloc(n * 2 + 1, sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        if (l->batch.covered[i])
            continue;
        const struct msg_record *r = &l->batch.pending[i];
        MYSQL_BIND *p = &b[rows * 10];
        unsigned long *len = &lens[rows * 10];
        ids[rows] = l->batch.touched[l->batch.recs[i].sender].row.id;
        created[rows] = (uint64_t)r->created_us;
        flags[rows * 2] = r->rcpt_count;
        flags[rows * 2 + 1] = r->blocked;
        bind_u64(&p[0], &ids[rows]);
        bind_str(&p[1], r->msgid, &len[1]);
        bind_str(&p[2], r->sender, &len[2]);
        bind_u32(&p[3], &flags[rows * 2]);
        bind_u32(&p[4], &flags[rows * 2 + 1]);
        bind_str(&p[5], r->from_addr, &len[5]);
        bind_str(&p[6], r->to_addr, &len[6]);
        bind_str(&p[7], r->client_address, &len[7]);
        bind_str(&p[8], r->client_name, &len[8]);
        bind_u64(&p[9], &created[rows]);
        rows++;
    }
    bool ok = run_in_chunks(l, BULK_MESSAGES, DB_MESSAGES, rows, 10, b, err, errsize);
    free(b);
    free(lens);
    free(ids);
    free(created);
    free(flags);
    return ok;
}

/* A lane's batch in a few statements: read and lock the senders' rows,
 * add every sender's deltas in one upsert, insert the messages rows. The
 * rows stay locked until COMMIT; only rows the upsert created (one lane
 * alone: lanes_create_rows made them otherwise) are read back, for their
 * ids. */
static bool write_bulk(struct lane *l, char *err, size_t errsize)
{
    if (!select_touched(l, true, err, errsize))
        return false;
    add_up_deltas(l);
    return upsert_senders(l, err, errsize) &&
           select_touched(l, false, err, errsize) &&     /* the rows this batch created */
           every_row_known(l, err, errsize) && insert_messages(l, err, errsize);
}

/* The ids of the rows lanes_create_rows made or found, so that the lanes go to
 * them by primary key. */
static bool learn_created_ids(struct lanes *ls, MYSQL_STMT *st, char *err, size_t errsize)
{
    MYSQL_BIND out[2];
    unsigned long sender_len;
    char sender[1024];
    uint64_t id;

    memset(out, 0, sizeof(out));
    bind_u64(&out[0], &id);
    out[1].buffer_type = MYSQL_TYPE_STRING;
    out[1].buffer = sender;
    out[1].buffer_length = sizeof(sender) - 1;
    out[1].length = &sender_len;
    bool ok = mysql_stmt_bind_result(st, out) == 0;
    int rc = 0;
    while (ok && ((rc = mysql_stmt_fetch(st)) == 0 || rc == MYSQL_DATA_TRUNCATED)) {
        sender[sender_len < sizeof(sender) ? sender_len : sizeof(sender) - 1] = '\0';
        struct lane *l = &ls->lane[writer_lane(sender)];
        int t = batch_find(&l->batch, sender);
        if (t >= 0)
            l->batch.touched[t].cached_id = id;
    }
    if (!ok || rc != MYSQL_NO_DATA) {
        fetch_failed(&ls->lane[0], st, "read created rows", err, errsize);
        ok = false;
    }
    mysql_stmt_free_result(st);
    return ok;
}

/* Rows for the round's new senders (the cache knows no id for them), in a
 * transaction of its own on lane 0 before the lanes start: an insert into
 * the sender index locks the gaps around it even under READ COMMITTED,
 * and two lanes inserting side by side deadlock. The lanes then only
 * update rows. A row created here with nothing counted is the one the
 * lane's upsert would have created; a lane that fails writes its records
 * next round (a record refused for good leaves its sender's row, with
 * nothing counted). Senders with only replayed records get no row (theirs
 * may have been deleted meanwhile). */
bool lanes_create_rows(struct lanes *ls, char *err, size_t errsize)
{
    struct lane *first = &ls->lane[0];
    size_t count = 0, cap = 0;

    for (unsigned k = 0; k < WRITER_LANES; k++)
        cap += ls->lane[k].batch.n_touched;
    const struct touched **which = xcalloc(cap + 1, sizeof(*which));
    uint32_t *quota = xcalloc(cap + 1, sizeof(*quota));
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        struct lane *l = &ls->lane[k];
        for (size_t i = 0; i < l->batch.n_recs; i++) {
            struct touched *t = &l->batch.touched[l->batch.recs[i].sender];
            if (l->batch.covered[i] || t->has_new)
                continue;
            t->has_new = true;      /* seen; write_bulk sets it again */
            if (t->cached_id == 0) {
                quota[count] = l->batch.pending[i].quota_default;
                which[count++] = t;
            }
        }
    }
    bool ok = true;
    if (count > 0) {
        size_t rows = padded_rows(count);
        MYSQL_BIND *in = xcalloc(rows * 3, sizeof(MYSQL_BIND));
        unsigned long *lens = xcalloc(rows, sizeof(unsigned long));
        for (size_t i = 0; i < rows; i++) {     /* the padding repeats the last: ignored as a duplicate */
            size_t j = i < count ? i : count - 1;
            bind_str(&in[i * 3], which[j]->sender, &lens[i]);
            bind_u32(&in[i * 3 + 1], &quota[j]);
            bind_u32(&in[i * 3 + 2], &quota[j]);
        }
        first->bulk_errno = 0;
        int64_t t0 = clock_monotonic_us();
        MYSQL_STMT *st = run_bulk(first, BULK_CREATE, rows, in, err, errsize);
        ok = st != NULL && learn_created_ids(ls, st, err, errsize);
        if (ok && mysql_commit(first->db) != 0) {
            snprintf(err, errsize, "commit: %s", mysql_error(first->db));
            ok = false;
        }
        if (ok)
            count_statement(ls, DB_CREATE, t0);    /* with its COMMIT */
        if (!ok && first->bulk_errno == 0)
            first->bulk_errno = mysql_errno(first->db);
        if (!ok)
            mysql_rollback(first->db);
        free(lens);
        free(in);
    }
    free(quota);
    free(which);
    return ok;
}

/* A lane's part of a round, in its own transaction: the bulk statements
 * (careful: lane 0 has written the records one by one already), the
 * progress rows it carries, COMMIT. Each lane commits on its own, so a
 * lane never waits for another's transaction; a round where one lane
 * fails leaves the other's records committed, and the next round finds
 * them covered by that lane's progress. */
static void lane_write(struct lane *l, bool careful)
{
    l->ok = false;
    l->bulk_errno = 0;
    if ((careful || write_bulk(l, l->err, sizeof(l->err))) &&
        save_progress(l, l->set->last, l->saves, l->err, sizeof(l->err)) &&
        (!careful || select_touched(l, false, l->err, sizeof(l->err)))) {    /* careful: the rows as written */
        int64_t t0 = clock_monotonic_us();
        if (mysql_commit(l->db) == 0) {
            count_statement(l->set, DB_COMMIT, t0);
            l->ok = true;
            return;
        }
        snprintf(l->err, sizeof(l->err), "commit: %s", mysql_error(l->db));
    }
    if (l->bulk_errno == 0)
        l->bulk_errno = mysql_errno(l->db);     /* a progress save or COMMIT: before ROLLBACK clears it */
    mysql_rollback(l->db);
}

static void *lane_thread(void *arg)
{
    mysql_thread_init();
    lane_write(arg, false);
    mysql_thread_end();
    return NULL;
}

/* The lanes with records write them, side by side (lane 0 in this thread)
 * when `parallel`, else one after the other. */
void lanes_run(struct lanes *ls, const struct progress last[WRITER_LANES], bool careful, bool parallel)
{
    pthread_t thread[WRITER_LANES];
    bool started[WRITER_LANES] = {false};

    ls->last = last;

    for (unsigned k = 1; k < WRITER_LANES; k++) {
        if (ls->lane[k].batch.n_recs == 0)
            continue;
        if (parallel && pthread_create(&thread[k], NULL, lane_thread, &ls->lane[k]) == 0)
            started[k] = true;
        else
            lane_write(&ls->lane[k], false);    /* alone, or no thread: one after the other */
    }
    if (ls->lane[0].batch.n_recs > 0)
        lane_write(&ls->lane[0], careful);
    for (unsigned k = 1; k < WRITER_LANES; k++)
        if (started[k])
            pthread_join(thread[k], NULL);
    ls->last = NULL;
}
