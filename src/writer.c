/*
 * writer.c - database write-back.
 *
 * One round takes the oldest records (the spool file, then the queue) and
 * splits them between WRITER_LANES lanes by sender (writer_lane), each a
 * database connection with its own transaction of up to BATCH_MAX records
 * and its own progress row: for each record not yet committed (the lane's
 * rateguard_progress row says which), the sender's counters as increments
 * (counters only if the record is not older than the row's reset_at) and
 * its `messages` row; then the progress row and COMMIT. The lanes run side
 * by side when the workers are idle (catching up), one after the other
 * while they answer. When every lane has committed, the records leave the
 * queue and the cache takes the committed rows plus whatever is still
 * queued; a round where a lane failed is retried whole, and the lanes that
 * did commit find their records covered.
 *
 * When the database fails: rollback, keep everything, retry with backoff,
 * log the outage once and its end once. With the queue half full, the
 * oldest records move to the spool file so that workers always find room.
 * All statements with values are prepared.
 */
#include "writer.h"
#include "report.h"
#include "cache.h"
#include "cachesync.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "period.h"
#include "quota.h"
#include "rateguard.h"
#include "shm.h"
#include "snapshot.h"
#include "util.h"

#include <errno.h>
#include <errmsg.h>
#include <fcntl.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BATCH_MAX 1000              /* records per transaction */
#define TOUCHED_SLOTS 4096          /* hash index over a batch's senders: a power of two > 2 * BATCH_MAX */
#define ARENA_SIZE (4u << 20)       /* copies of the records of one batch */
#define BACKOFF_MAX_MS 5000
#define WRITE_FAILED (-1)           /* rolled back; retry after a pause */
#define WRITE_AGAIN (-2)            /* rolled back; a refused record goes aside next round */

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* A record of the current batch, as far as the cache is concerned. */
struct batch_rec {
    uint32_t sender;            /* index into touched */
    uint32_t next_of_sender;    /* index + 1 of the sender's next record, 0 ends */
    int64_t created_us;
    uint32_t msg_delta, rcpt_delta;
    uint64_t epoch, seq;
    unsigned lane;              /* writer_lane: whose progress row covers it */
    bool notified_change;       /* it sets or clears ratelimits.notified bits */
};

/* A sender touched by the current batch, read back before COMMIT. */
struct touched {
    char key[CACHE_KEY_SIZE];
    uint64_t key_hash;
    char *sender;
    struct db_row row;
    bool found;
    uint32_t msg_counter, rcpt_counter, msg_total, rcpt_total;   /* bulk: deltas to add */
    bool has_new;                   /* bulk: at least one record not yet in the database */
    uint32_t notified;              /* bulk: ratelimits.notified after the batch's records */
    uint32_t first_rec, last_rec;   /* index + 1 of its records in recs[] (a chain) */
    uint64_t cached_id;             /* ratelimits.id as the cache knows it, 0 if not */
};

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

struct writer;

/* One database connection and the records of a round it writes, in its
 * own transaction: the senders of its share (writer_lane), or all of them
 * when lane 0 must do the round alone (careful, or after a deadlock); it
 * then carries the other lanes' progress rows too. Indexes into pending,
 * covered and recs are the same record. */
struct lane {
    struct writer *w;
    MYSQL *db;
    MYSQL_STMT *save_progress;
    struct bulk_stmt bulk[BULK_CACHE];
    uint64_t bulk_clock;
    struct msg_record *pending;     /* the round's records (strings in the writer's arena) */
    bool *covered;                  /* ... already in the database (a replay) */
    struct batch_rec *recs;
    size_t n_recs;
    struct touched *touched;
    size_t n_touched;
    uint32_t touched_index[TOUCHED_SLOTS];  /* open addressing by key hash: touched[i] as i + 1 */
    bool saves[WRITER_LANES];       /* progress rows this lane writes in this round */
    /* The outcome of its part of a round (a lane may run in its own thread). */
    bool ok;
    unsigned int bulk_errno;        /* server error of the last failed bulk statement */
    char err[1024];
};

struct writer {
    const struct writer_ctx *ctx;
    struct lane lanes[WRITER_LANES];
    MYSQL_STMT *upsert, *insert_message;    /* one record at a time, on lane 0 */
    char progress_name[WRITER_LANES][256];
    struct progress committed[WRITER_LANES];
    bool careful;                   /* next round: one statement per record, to find a refused one */
    bool one_lane;                  /* next round: lane 0 alone (after the lanes deadlocked) */
    char *arena;
    bool outage_logged;
    uint64_t poison_epoch, poison_seq;  /* record refused by the database, to set aside */
    char poison_error[512];
    int spool_fd;
    off_t spool_read;           /* next spool byte to write to the database */
    struct progress round_last[WRITER_LANES];   /* the current round's last record of each lane */
    uint64_t answered;          /* the workers' request count at the last round */
    /* Records this process has taken out of the queued counts, by lane: a
     * lane that committed in a round another lane failed is applied at once
     * (or a refresh would count its records twice, in the row and as
     * queued), and its records come again, covered, in the retry. */
    struct progress applied[WRITER_LANES];
    time_t next_refresh;
    time_t next_reset;              /* quota.reset_schedule boundary, 0 = none */
    uint32_t refresh_seen;      /* refresh_requests already served */
};

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

static void disconnect(struct writer *w)
{
    MYSQL_STMT **stmts[] = {&w->upsert, &w->insert_message};
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
        if (*stmts[i]) {
            mysql_stmt_close(*stmts[i]);
            *stmts[i] = NULL;
        }
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        struct lane *l = &w->lanes[k];
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
static __thread unsigned int prepare_errno;   /* per lane thread */

static MYSQL_STMT *prepare(MYSQL *db, const char *sql, char *err, size_t errsize)
{
    MYSQL_STMT *st = mysql_stmt_init(db);
    if (st == NULL || mysql_stmt_prepare(st, sql, strlen(sql)) != 0) {
        snprintf(err, errsize, "prepare: %s", st ? mysql_stmt_error(st) : mysql_error(db));
        prepare_errno = st ? mysql_stmt_errno(st) : mysql_errno(db);
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
 * other's inserts. Then every lane's progress. */
static bool connect_db(struct writer *w, char *err, size_t errsize)
{
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        struct lane *l = &w->lanes[k];
        if ((l->db = db_connect(w->ctx->cfg, err, errsize)) == NULL)
            goto fail;
        mysql_autocommit(l->db, 0);
        if (mysql_query(l->db, "SET SESSION foreign_key_checks = 0") != 0 ||
            mysql_query(l->db, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED") != 0) {
            snprintf(err, errsize, "%s", mysql_error(l->db));
            goto fail;
        }
    }
    if (!cachesync_read_progress(w->lanes[0].db, w->ctx->name, w->committed, err, errsize))
        goto fail;
    /* End the read's transaction: an idle writer must hold no table's
     * metadata lock (an operator's ALTER or LOCK TABLES would wait on it). */
    mysql_commit(w->lanes[0].db);
    return true;
fail:
    disconnect(w);
    return false;
}

/* The errors that say "this record's values can never be stored"; every
 * other error (connection, permissions, locks, a full disk, a cluster not
 * ready, a missing table) is the database's state: wait and try again. */
static bool record_refused(unsigned int code)
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
static bool conflict(unsigned int code)
{
    return code == ER_LOCK_DEADLOCK;
}

/* The touched[] entry for this cache key (and its fnv1a64 hash), created
 * when `create`; -1 when absent. A hash index, because a batch can touch a
 * thousand senders. */
static int touched_lookup(struct lane *l, const char *key, uint64_t hash, const char *sender, bool create)
{
    for (uint32_t slot = (uint32_t)hash & (TOUCHED_SLOTS - 1);; slot = (slot + 1) & (TOUCHED_SLOTS - 1)) {
        uint32_t i = l->touched_index[slot];
        if (i == 0)
            break;
        if (l->touched[i - 1].key_hash == hash && strcmp(l->touched[i - 1].key, key) == 0)
            return (int)(i - 1);
    }
    if (!create)
        return -1;
    struct touched *t = &l->touched[l->n_touched];
    memset(t, 0, sizeof(*t));
    str_copy(t->key, key, sizeof(t->key));
    t->key_hash = hash;
    t->sender = xstrdup(sender);
    uint32_t slot = (uint32_t)hash & (TOUCHED_SLOTS - 1);
    while (l->touched_index[slot] != 0)
        slot = (slot + 1) & (TOUCHED_SLOTS - 1);
    l->touched_index[slot] = (uint32_t)++l->n_touched;
    return (int)(l->n_touched - 1);
}

static void read_id_locked(struct cache_entry *e, bool created, void *arg)
{
    (void)created;
    *(uint64_t *)arg = e->db_id;
}

static uint32_t touch(struct lane *l, const struct msg_record *r, const char *key, uint64_t hash)
{
    size_t before = l->n_touched;
    uint32_t t = (uint32_t)touched_lookup(l, key, hash, r->sender, true);
    if (l->n_touched > before)      /* new in this batch: its id, if the cache has it */
        cache_apply(&l->w->ctx->shm->cache, key, false, read_id_locked, &l->touched[t].cached_id);
    return t;
}

static void batch_reset(struct lane *l)
{
    for (size_t i = 0; i < l->n_touched; i++)
        free(l->touched[i].sender);
    l->n_touched = 0;
    memset(l->touched_index, 0, sizeof(l->touched_index));
    l->n_recs = 0;
}

static void batch_add(struct lane *l, const struct msg_record *r, const char *key, uint64_t hash, unsigned lane)
{
    uint32_t i = (uint32_t)l->n_recs++;
    struct batch_rec *b = &l->recs[i];
    b->sender = touch(l, r, key, hash);
    b->next_of_sender = 0;
    struct touched *t = &l->touched[b->sender];
    if (t->last_rec)
        l->recs[t->last_rec - 1].next_of_sender = i + 1;
    else
        t->first_rec = i + 1;
    t->last_rec = i + 1;
    b->created_us = r->created_us;
    b->msg_delta = r->msg_delta;
    b->rcpt_delta = r->rcpt_delta;
    b->epoch = r->epoch;
    b->seq = r->seq;
    b->lane = lane;
    b->notified_change = (r->notified_set | r->notified_clear) != 0;
}

static bool write_record(struct writer *w, const struct msg_record *r, char *err, size_t errsize)
{
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
    if (mysql_stmt_bind_param(w->upsert, b) != 0 || mysql_stmt_execute(w->upsert) != 0) {
        snprintf(err, errsize, "update ratelimits for %s: %s", r->sender, mysql_stmt_error(w->upsert));
        return false;
    }
    id = mysql_stmt_insert_id(w->upsert);

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
    if (mysql_stmt_bind_param(w->insert_message, b) != 0 || mysql_stmt_execute(w->insert_message) != 0) {
        snprintf(err, errsize, "insert into messages for %s: %s", r->sender,
                 mysql_stmt_error(w->insert_message));
        return false;
    }
    return true;
}

/* The progress rows `which` says, on this lane's connection. */
static bool save_progress(struct lane *l, const struct progress last[WRITER_LANES], const bool which[WRITER_LANES],
                          char *err, size_t errsize)
{
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        if (!which[k])
            continue;
        MYSQL_BIND b[3];
        unsigned long len;
        uint64_t epoch = last[k].epoch, seq = last[k].seq;
        memset(b, 0, sizeof(b));
        bind_str(&b[0], l->w->progress_name[k], &len);
        bind_u64(&b[1], &epoch);
        bind_u64(&b[2], &seq);
        if (mysql_stmt_bind_param(l->save_progress, b) != 0 || mysql_stmt_execute(l->save_progress) != 0) {
            snprintf(err, errsize, "save progress: %s", mysql_stmt_error(l->save_progress));
            return false;
        }
    }
    return true;
}

/* Separate from connecting: a refresh or a reset needs only the
 * connection, and must not wait for a table the writes need. */
static bool prepare_statements(struct writer *w, char *err, size_t errsize)
{
    if (w->upsert)
        return true;
    MYSQL *db = w->lanes[0].db;
    if ((w->upsert = prepare(db, sql_upsert, err, errsize)) == NULL ||
        (w->insert_message = prepare(db, sql_insert_message, err, errsize)) == NULL)
        return false;
    for (unsigned k = 0; k < WRITER_LANES; k++)
        if ((w->lanes[k].save_progress = prepare(w->lanes[k].db, sql_save_progress, err, errsize)) == NULL)
            return false;
    /* Every lane's row exists from the first round on: a missing one reads
     * as lane 0's, which is only right before then (an upgrade from a
     * writer without lanes). */
    bool all[WRITER_LANES];
    memset(all, 1, sizeof(all));
    if (!save_progress(&w->lanes[0], w->committed, all, err, errsize))
        return false;
    if (mysql_commit(db) != 0) {
        snprintf(err, errsize, "commit: %s", mysql_error(db));
        return false;
    }
    return true;
}

/* Under the sender's lock, after COMMIT: the batch's records of this
 * sender are no longer queued (those made before the entry's last reset
 * were already taken out of the queued counts by the reset); then the
 * cache takes the database's row plus what is still queued. */
struct committed_arg {
    struct lane *l;
    uint32_t sender;
};

static void apply_committed(struct cache_entry *e, bool created, void *arg)
{
    const struct committed_arg *a = arg;
    struct lane *l = a->l;
    struct touched *t = &l->touched[a->sender];
    (void)created;

    for (uint32_t i = t->first_rec; i != 0; i = l->recs[i - 1].next_of_sender) {
        const struct batch_rec *b = &l->recs[i - 1];
        if (b->created_us < e->reset_us || progress_covers(&l->w->applied[b->lane], b->epoch, b->seq))
            continue;
        e->unwritten_msg = e->unwritten_msg > b->msg_delta ? e->unwritten_msg - b->msg_delta : 0;
        e->unwritten_rcpt = e->unwritten_rcpt > b->rcpt_delta ? e->unwritten_rcpt - b->rcpt_delta : 0;
        if (b->notified_change && e->notify_unwritten > 0)
            e->notify_unwritten--;
    }
    if (t->found) {
        t->row.round = e->seen;
        cachesync_apply_row(e, false, &t->row);
    }
}

/* After a lane's COMMIT: the cache takes its rows, and its records leave
 * the queued counts, once (applied remembers them). */
static void apply_lane(struct writer *w, struct lane *l)
{
    for (size_t i = 0; i < l->n_touched; i++) {
        struct committed_arg a = {.l = l, .sender = (uint32_t)i};
        cache_apply(&w->ctx->shm->cache, l->touched[i].key, false, apply_committed, &a);
    }
    for (size_t i = 0; i < l->n_recs; i++) {
        const struct batch_rec *b = &l->recs[i];
        if (!progress_covers(&w->applied[b->lane], b->epoch, b->seq))
            w->applied[b->lane] = (struct progress){b->epoch, b->seq};
    }
}

/* A record the database refuses for good (the input checks in engine.c
 * make it unlikely, but it must never wedge the queue): kept in
 * state_dir/rejected.log with the reason, then skipped. */
static void set_aside(struct writer *w, const struct msg_record *r)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/rejected.log", w->ctx->cfg->state_dir);
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "epoch=%llu seq=%llu time_us=%lld sender=%s msgid=%s rcpt_count=%u msg_delta=%u "
                   "rcpt_delta=%u blocked=%u from=%s to=%s client_address=%s client_name=%s error=%s\n",
                (unsigned long long)r->epoch, (unsigned long long)r->seq, (long long)r->created_us,
                r->sender, r->msgid, r->rcpt_count, r->msg_delta, r->rcpt_delta, r->blocked, r->from_addr,
                r->to_addr, r->client_address, r->client_name, w->poison_error);
        fclose(f);
    }
    log_error("writer: record %llu for %s refused by the database (%s); kept in %s and skipped",
              (unsigned long long)r->seq, r->sender, w->poison_error, f ? path : "(unwritable: log only)");
}

/* A source of records in age order: the spool file, then the queue. */
struct source {
    bool spool;
    struct wqueue_cursor cur;   /* queue */
    off_t off;                  /* spool */
    char *spool_buf;
    size_t spool_len, spool_pos;
};

static bool source_next(struct writer *w, struct source *s, char *buf, size_t bufsize,
                        struct msg_record *rec, size_t *used)
{
    if (!s->spool)
        return wqueue_next(&w->ctx->shm->queue, &s->cur, buf, bufsize, rec, used);
    if (s->spool_pos >= s->spool_len)
        return false;
    size_t n = wqueue_decode(s->spool_buf + s->spool_pos, s->spool_len - s->spool_pos, rec);
    if (n == 0 || n > bufsize)
        return false;
    /* Strings must outlive the spool buffer's next refill: copy. */
    memcpy(buf, s->spool_buf + s->spool_pos, n);
    wqueue_decode(buf, n, rec);
    s->spool_pos += n;
    *used = n;
    return true;
}

static off_t spool_size(struct writer *w)
{
    struct stat st;
    return w->spool_fd >= 0 && fstat(w->spool_fd, &st) == 0 ? st.st_size : 0;
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
            l->bulk_errno = prepare_errno;  /* on Galera a conflict may show here first */
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

/* A result that could not be read: the error is on the statement or, for
 * one the server sent instead of a row (a deadlock), on the connection;
 * kept in bulk_errno, which tells a deadlock or a refusal. */
static void fetch_failed(struct lane *l, MYSQL_STMT *st, const char *what, char *err, size_t errsize)
{
    bool on_statement = mysql_stmt_errno(st) != 0;
    l->bulk_errno = on_statement ? mysql_stmt_errno(st) : mysql_errno(l->db);
    snprintf(err, errsize, "%s: %s", what, on_statement ? mysql_stmt_error(st) : mysql_error(l->db));
}

static int find_touched(struct lane *l, const char *sender)
{
    char key[CACHE_KEY_SIZE];
    cache_make_key(sender, key);
    return touched_lookup(l, key, fnv1a64(key, strlen(key)), sender, false);
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
        int t = find_touched(l, sender);
        if (t < 0)
            continue;
        r.locked = (uint8_t)(locked != 0);
        r.block_action = (uint8_t)(block_action < BLOCK_ACTIONS ? block_action : BLOCK_ACTION_DEFAULT);
        r.notified = (uint8_t)notified;
        l->touched[t].row = r;
        l->touched[t].found = true;
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
    size_t *which = xcalloc(l->n_touched + 1, sizeof(size_t)), k = 0;
    bool ok = true;

    for (size_t i = 0; lock && i < l->n_touched; i++)
        if (l->touched[i].cached_id != 0)
            which[k++] = i;
    if (k > 0) {
        size_t rows = padded_rows(k);
        MYSQL_BIND *in = xcalloc(rows, sizeof(MYSQL_BIND));
        for (size_t i = 0; i < rows; i++)     /* the padding repeats the last id */
            bind_u64(&in[i], &l->touched[which[i < k ? i : k - 1]].cached_id);
        MYSQL_STMT *st = run_bulk(l, BULK_SELECT_LOCK_ID, rows, in, err, errsize);
        ok = st != NULL && fetch_touched(l, st, err, errsize);
        free(in);
    }
    k = 0;
    for (size_t i = 0; ok && i < l->n_touched; i++)
        if (!l->touched[i].found)
            which[k++] = i;
    if (ok && k > 0) {
        size_t rows = padded_rows(k);
        MYSQL_BIND *in = xcalloc(rows, sizeof(MYSQL_BIND));
        unsigned long *lens = xcalloc(rows, sizeof(unsigned long));
        for (size_t i = 0; i < rows; i++)     /* the padding repeats the last sender */
            bind_str(&in[i], l->touched[which[i < k ? i : k - 1]].sender, &lens[i]);
        MYSQL_STMT *st = run_bulk(l, lock ? BULK_SELECT_LOCK : BULK_SELECT_NEW, rows, in, err, errsize);
        ok = st != NULL && fetch_touched(l, st, err, errsize);
        free(lens);
        free(in);
    }
    free(which);
    return ok;
}

/* A lane's batch in a few statements: read and lock the senders' rows,
 * add every sender's deltas (counters only for messages not older than the
 * row's reset_at) in one upsert, insert the messages rows (in statements of
 * power-of-two sizes). The rows stay locked until COMMIT, so their new
 * values are the old ones plus our deltas; only rows the upsert created
 * (one lane alone: create_rows made them otherwise) are read back, for
 * their ids. */
static bool write_bulk(struct lane *l, char *err, size_t errsize)
{
    size_t k = l->n_touched, n = l->n_recs;
    bool ok = false;

    if (!select_touched(l, true, err, errsize))
        return false;
    for (size_t i = 0; i < k; i++)
        l->touched[i].notified = l->touched[i].found ? l->touched[i].row.notified : 0;
    for (size_t i = 0; i < n; i++) {
        if (l->covered[i])
            continue;
        const struct msg_record *r = &l->pending[i];
        struct touched *t = &l->touched[l->recs[i].sender];
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

    /* Only senders with records to write (a replay-only sender whose row was
     * deleted meanwhile must not come back with a zero quota). The padding
     * repeats the last of them with nothing to add. */
    size_t up = 0, last = 0;
    for (size_t i = 0; i < k; i++)
        if (l->touched[i].has_new) {
            up++;
            last = i;
        }
    size_t up_rows = up > 0 ? padded_rows(up) : 0;
    size_t nbind = n * 10 > up_rows * 9 ? n * 10 : up_rows * 9;
    MYSQL_BIND *b = xcalloc(nbind, sizeof(MYSQL_BIND));
    unsigned long *lens = xcalloc(nbind, sizeof(unsigned long));
    uint64_t *ids = xcalloc(n, sizeof(uint64_t)), *created = xcalloc(n, sizeof(uint64_t));
    uint32_t *flags = xcalloc(n * 2, sizeof(uint32_t));
    static uint32_t zero;
    for (size_t i = 0, j = 0; j < up_rows; i++) {
        bool padding = j >= up;
        struct touched *t = &l->touched[padding ? last : i];
        if (!padding && !t->has_new)
            continue;
        MYSQL_BIND *p = &b[j * 9];
        if (t->found)
            bind_u64(&p[0], &t->row.id);
        else
            p[0].buffer_type = MYSQL_TYPE_NULL;
        bind_str(&p[1], t->sender, &lens[j * 9 + 1]);
        bind_u32(&p[2], &t->row.quota);
        bind_u32(&p[3], &t->row.quota);
        bind_u32(&p[4], padding ? &zero : &t->msg_counter);
        bind_u32(&p[5], padding ? &zero : &t->rcpt_counter);
        bind_u32(&p[6], padding ? &zero : &t->msg_total);
        bind_u32(&p[7], padding ? &zero : &t->rcpt_total);
        bind_u32(&p[8], &t->notified);     /* the padding repeats it: the same value */
        j++;
    }
    if (up_rows > 0 && run_bulk(l, BULK_UPSERT, up_rows, b, err, errsize) == NULL)
        goto out;
    for (size_t i = 0; i < k; i++) {
        struct touched *t = &l->touched[i];
        if (!t->found)
            continue;
        t->row.msg_counter = quota_sat_add(t->row.msg_counter, t->msg_counter);
        t->row.rcpt_counter = quota_sat_add(t->row.rcpt_counter, t->rcpt_counter);
        t->row.msg_total = quota_sat_add(t->row.msg_total, t->msg_total);
        t->row.rcpt_total = quota_sat_add(t->row.rcpt_total, t->rcpt_total);
        if (t->has_new)
            t->row.notified = (uint8_t)t->notified;
    }
    if (!select_touched(l, false, err, errsize))     /* the rows this batch created */
        goto out;

    /* Every sender must have its row by now; one that the read-back did not
     * match (a spelling the database folds differently from the cache key)
     * goes record by record, where the upsert itself returns the id. */
    for (size_t i = 0; i < k; i++)
        if (l->touched[i].has_new && l->touched[i].row.id == 0) {
            snprintf(err, errsize, "the row of %.200s was not found after its upsert", l->touched[i].sender);
            l->bulk_errno = ER_NO_REFERENCED_ROW_2;     /* a refusal: careful mode next */
            goto out;
        }
    size_t rows = 0;
    memset(b, 0, nbind * sizeof(MYSQL_BIND));
    for (size_t i = 0; i < n; i++) {
        if (l->covered[i])
            continue;
        const struct msg_record *r = &l->pending[i];
        MYSQL_BIND *p = &b[rows * 10];
        unsigned long *len = &lens[rows * 10];
        ids[rows] = l->touched[l->recs[i].sender].row.id;
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
    for (size_t done = 0, chunk; done < rows; done += chunk) {
        for (chunk = 1; chunk * 2 <= rows - done; chunk *= 2)
            ;
        if (run_bulk(l, BULK_MESSAGES, chunk, &b[done * 10], err, errsize) == NULL)
            goto out;
    }
    ok = true;
out:
    free(b);
    free(lens);
    free(ids);
    free(created);
    free(flags);
    return ok;
}

/* The ids of the rows create_rows made or found, so that the lanes go to
 * them by primary key. */
static bool learn_created_ids(struct writer *w, MYSQL_STMT *st, char *err, size_t errsize)
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
        struct lane *l = &w->lanes[writer_lane(sender)];
        int t = find_touched(l, sender);
        if (t >= 0)
            l->touched[t].cached_id = id;
    }
    if (!ok || rc != MYSQL_NO_DATA) {
        fetch_failed(&w->lanes[0], st, "read created rows", err, errsize);
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
static bool create_rows(struct writer *w, char *err, size_t errsize)
{
    struct lane *first = &w->lanes[0];
    size_t count = 0, cap = 0;

    for (unsigned k = 0; k < WRITER_LANES; k++)
        cap += w->lanes[k].n_touched;
    const struct touched **which = xcalloc(cap + 1, sizeof(*which));
    uint32_t *quota = xcalloc(cap + 1, sizeof(*quota));
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        struct lane *l = &w->lanes[k];
        for (size_t i = 0; i < l->n_recs; i++) {
            struct touched *t = &l->touched[l->recs[i].sender];
            if (l->covered[i] || t->has_new)
                continue;
            t->has_new = true;      /* seen; write_bulk sets it again */
            if (t->cached_id == 0) {
                quota[count] = l->pending[i].quota_default;
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
        MYSQL_STMT *st = run_bulk(first, BULK_CREATE, rows, in, err, errsize);
        ok = st != NULL && learn_created_ids(w, st, err, errsize);
        if (ok && mysql_commit(first->db) != 0) {
            snprintf(err, errsize, "commit: %s", mysql_error(first->db));
            ok = false;
        }
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
        save_progress(l, l->w->round_last, l->saves, l->err, sizeof(l->err)) &&
        (!careful || select_touched(l, false, l->err, sizeof(l->err)))) {    /* careful: the rows as written */
        if (mysql_commit(l->db) == 0) {
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
static void run_lanes(struct writer *w, bool careful, bool parallel)
{
    pthread_t thread[WRITER_LANES];
    bool started[WRITER_LANES] = {false};

    for (unsigned k = 1; k < WRITER_LANES; k++) {
        if (w->lanes[k].n_recs == 0)
            continue;
        if (parallel && pthread_create(&thread[k], NULL, lane_thread, &w->lanes[k]) == 0)
            started[k] = true;
        else
            lane_write(&w->lanes[k], false);    /* alone, or no thread: one after the other */
    }
    if (w->lanes[0].n_recs > 0)
        lane_write(&w->lanes[0], careful);
    for (unsigned k = 1; k < WRITER_LANES; k++)
        if (started[k])
            pthread_join(thread[k], NULL);
}

/* After a conflict: counted, logged (debug: under contention on Galera
 * they come by the hundred), and a pause of a few random milliseconds,
 * so that the hosts that collided do not collide again at once. */
static void conflict_pause(struct writer *w, const char *err)
{
    STAT_ADD(w->ctx->shm, db_conflicts, 1);
    log_debug("writer: conflict, the round is retried: %s", err);
    usleep((useconds_t)(1000 + (unsigned)rand() % 20000));
}

/* One round over the oldest records, in a transaction per lane. Returns
 * records taken, or WRITE_FAILED / WRITE_AGAIN. Normally each lane's share
 * goes in a few bulk statements; after a refused bulk write the next round
 * goes record by record on lane 0, to find the refused record and set it
 * aside; after the lanes deadlocked (two spellings of one sender that the
 * database folds together, in different lanes) lane 0 takes a round alone. */
static long write_batch(struct writer *w, char *err, size_t errsize)
{
    struct shm *shm = w->ctx->shm;
    struct source src = {.spool = spool_size(w) > w->spool_read};
    struct msg_record rec;
    size_t used = 0, len;
    long n = 0;
    bool careful = w->careful, one_lane = careful || w->one_lane;
    struct lane *first = &w->lanes[0];

    for (unsigned k = 0; k < WRITER_LANES; k++) {
        batch_reset(&w->lanes[k]);
        memset(w->lanes[k].saves, 0, sizeof(w->lanes[k].saves));
        w->round_last[k] = w->committed[k];
    }
    if (src.spool) {
        /* Read a slice of the spool; a record cut at its end waits. */
        src.spool_buf = xmalloc(ARENA_SIZE);
        ssize_t got = pread(w->spool_fd, src.spool_buf, ARENA_SIZE, w->spool_read);
        src.spool_len = got > 0 ? (size_t)got : 0;
    } else
        wqueue_cursor_start(&shm->queue, &src.cur);

    for (;;) {
        struct source before = src;
        if (n >= WRITER_LANES * BATCH_MAX || ARENA_SIZE - used < WQUEUE_MAX_RECORD ||
            !source_next(w, &src, w->arena + used, ARENA_SIZE - used, &rec, &len))
            break;
        char key[CACHE_KEY_SIZE];
        cache_make_key(rec.sender, key);
        uint64_t hash = fnv1a64(key, strlen(key));     /* once: for the lane and the batch's index */
        unsigned lane = writer_lane_of_hash(hash);
        struct lane *l = one_lane ? first : &w->lanes[lane];
        bool suspect = rec.epoch == w->poison_epoch && rec.seq == w->poison_seq;
        if ((suspect && n > 0) || l->n_recs >= BATCH_MAX) {
            src = before;       /* the suspect goes alone next round; a full lane ends this one */
            break;
        }
        bool covered = progress_covers(&w->committed[lane], rec.epoch, rec.seq);
        if (!covered && careful && !write_record(w, &rec, err, errsize)) {
            MYSQL_STMT *failed = mysql_stmt_errno(w->upsert) ? w->upsert : w->insert_message;
            if (record_refused(mysql_stmt_errno(failed)) && suspect) {
                /* Refused twice, the second time alone: set it aside (the
                 * round is this record only). */
                mysql_rollback(first->db);
                set_aside(w, &rec);
                w->poison_seq = w->poison_epoch = 0;
                covered = true;
            } else if (record_refused(mysql_stmt_errno(failed))) {
                w->poison_epoch = rec.epoch;
                w->poison_seq = rec.seq;
                snprintf(w->poison_error, sizeof(w->poison_error), "%.500s", err);
                mysql_rollback(first->db);
                free(src.spool_buf);
                return WRITE_AGAIN;
            } else {
                mysql_rollback(first->db);
                free(src.spool_buf);
                return WRITE_FAILED;
            }
        }
        /* Written now (careful), to be written (bulk), written before (a
         * replay) or set aside: in every case it leaves the queued counts. */
        l->pending[l->n_recs] = rec;
        l->covered[l->n_recs] = covered;
        batch_add(l, &rec, key, hash, lane);
        /* A retried round may take fewer records than the one before: a
         * lane's progress row never moves back. */
        if (!progress_covers(&w->round_last[lane], rec.epoch, rec.seq)) {
            w->round_last[lane] = (struct progress){rec.epoch, rec.seq};
            l->saves[lane] = true;
        }
        used += (len + 7) & ~(size_t)7;
        n++;
        if (suspect)
            break;
    }
    if (n == 0 && src.spool) {
        off_t left = spool_size(w) - w->spool_read;
        free(src.spool_buf);
        if (src.spool_len == 0) {
            snprintf(err, errsize, "cannot read %s: %s", w->ctx->spool_path, strerror(errno));
            return WRITE_FAILED;
        }
        if (left < (off_t)WQUEUE_MAX_RECORD) {
            /* A spill cut short by a crash: records leave the queue only
             * after a whole spill is synced, so the queue still has these,
             * and everything before them is written. Start the spool anew. */
            log_warning("writer: %lld byte(s) at the end of %s are not a whole record (a spill cut short); "
                        "dropped, the queue still holds those records", (long long)left, w->ctx->spool_path);
        } else {
            char aside[4300];
            snprintf(aside, sizeof(aside), "%s.damaged-%ld", w->ctx->spool_path, (long)time(NULL));
            if (link(w->ctx->spool_path, aside) != 0)
                aside[0] = '\0';
            log_error("writer: %s is damaged at byte %lld; %lld byte(s) not written, kept in %s",
                      w->ctx->spool_path, (long long)w->spool_read, (long long)left, aside[0] ? aside : "(nowhere)");
        }
        if (ftruncate(w->spool_fd, 0) == 0)
            w->spool_read = 0;
        return WRITE_AGAIN;
    }
    if (n == 0) {
        free(src.spool_buf);
        return 0;
    }

    /* Side by side only while the workers are not answering (catching up
     * after a burst or an outage): a database on the same cores as the
     * workers would otherwise take both cores from them under load. */
    unsigned busy = 0;
    for (unsigned k = 0; k < WRITER_LANES; k++)
        busy += w->lanes[k].n_recs > 0;
    uint64_t answered = STAT_GET(shm, requests);
    bool parallel = busy > 1 && answered == w->answered;
    w->answered = answered;
    if (parallel && !create_rows(w, err, errsize)) {
        free(src.spool_buf);
        if (record_refused(first->bulk_errno)) {
            w->careful = true;
            return WRITE_AGAIN;
        }
        if (conflict(first->bulk_errno)) {
            conflict_pause(w, err);
            return WRITE_AGAIN;
        }
        return WRITE_FAILED;
    }
    run_lanes(w, careful, parallel);
    const struct lane *failed = NULL;
    bool deadlock = false, refused = false;
    /* The cache first, then the queue: dying in between leaves records
     * that the progress rows mark as written, and subtracting them again
     * later can only undercount until the queue is empty, never overcount.
     * A lane that committed is applied even when another failed: nothing
     * leaves the queue then, and the retry finds its records covered. */
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        struct lane *l = &w->lanes[k];
        if (l->n_recs == 0)
            continue;
        if (!l->ok) {
            failed = l;
            deadlock |= conflict(l->bulk_errno);
            refused |= record_refused(l->bulk_errno);
            continue;
        }
        for (unsigned j = 0; j < WRITER_LANES; j++)
            if (l->saves[j])
                w->committed[j] = w->round_last[j];
        apply_lane(w, l);
    }
    if (failed) {
        free(src.spool_buf);
        snprintf(err, errsize, "%s", failed->err);
        if (deadlock) {
            w->one_lane = true;     /* two lanes may deadlock each other: one next */
            conflict_pause(w, err);
            return WRITE_AGAIN;
        }
        if (refused) {
            w->careful = true;      /* find the refused record one by one */
            return WRITE_AGAIN;
        }
        return WRITE_FAILED;
    }
    w->careful = w->one_lane = false;
    if (src.spool) {
        w->spool_read += (off_t)src.spool_pos;
        if (w->spool_read >= spool_size(w)) {       /* all of it is in: start the file afresh */
            if (ftruncate(w->spool_fd, 0) == 0)
                w->spool_read = 0;
        }
    } else
        wqueue_release(&shm->queue, &src.cur);
    free(src.spool_buf);
    STAT_ADD(shm, db_written, (uint64_t)n);
    return n;
}

static bool open_spool(struct writer *w)
{
    if (w->spool_fd >= 0)
        return true;
    w->spool_fd = open(w->ctx->spool_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (w->spool_fd < 0) {
        log_error("writer: open(%s): %s", w->ctx->spool_path, strerror(errno));
        return false;
    }
    return true;
}

/* The database is away and the queue is half full: move the oldest
 * records to the spool file (synced before they leave the queue). */
static void spill(struct writer *w)
{
    struct shm *shm = w->ctx->shm;
    uint64_t cap = shm->queue.sh->capacity;

    if (wqueue_bytes(&shm->queue) < cap / 2 || !open_spool(w))
        return;
    struct wqueue_cursor cur;
    struct msg_record rec;
    size_t len;
    uint64_t moved = 0;
    off_t before = spool_size(w);
    wqueue_cursor_start(&shm->queue, &cur);
    while (wqueue_bytes(&shm->queue) - (cur.pos - shm->queue.sh->head) > cap / 4 &&
           wqueue_next(&shm->queue, &cur, w->arena, ARENA_SIZE, &rec, &len)) {
        if (write(w->spool_fd, w->arena, len) != (ssize_t)len) {
            log_error("writer: cannot write spool %s: %s; records stay in the queue",
                      w->ctx->spool_path, strerror(errno));
            moved = 0;
            break;
        }
        moved++;
    }
    if (moved == 0 || fdatasync(w->spool_fd) != 0) {
        if (moved)
            log_error("writer: fdatasync(%s): %s; records stay in the queue", w->ctx->spool_path,
                      strerror(errno));
        /* Nothing released: take back what was appended, or it would be
         * written twice (the queue still holds every record). */
        if (ftruncate(w->spool_fd, before) != 0)
            log_error("writer: ftruncate(%s): %s", w->ctx->spool_path, strerror(errno));
        return;
    }
    wqueue_release(&shm->queue, &cur);
    log_warning("writer: database still unavailable; %llu record(s) moved to %s",
                (unsigned long long)moved, w->ctx->spool_path);
}

/* Sleep until a worker pokes us (unless backing off: then only the time
 * and the master's death count), the timeout passes, or the master dies. */
static void wait_for_work(struct writer *w, int timeout_ms, bool backoff)
{
    struct wqueue_shared *q = w->ctx->shm->queue.sh;
    struct pollfd p[2] = {{.fd = w->ctx->lifeline_fd, .events = POLLIN},
                          {.fd = w->ctx->wake_fd, .events = POLLIN}};

    if (!backoff) {
        /* Announce the sleep before the last look, so a push after the
         * look is sure to see it and poke us. */
        __atomic_store_n(&q->writer_sleeping, 1, __ATOMIC_SEQ_CST);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (wqueue_bytes(&w->ctx->shm->queue) > 0) {
            __atomic_store_n(&q->writer_sleeping, 0, __ATOMIC_SEQ_CST);
            return;
        }
    }
    poll(p, backoff ? 1 : 2, timeout_ms);
    __atomic_store_n(&q->writer_sleeping, 0, __ATOMIC_SEQ_CST);
    if (!backoff && (p[1].revents & POLLIN)) {
        uint64_t v;
        if (read(w->ctx->wake_fd, &v, sizeof(v)) < 0) {
            /* already consumed by an earlier wake-up */
        }
    }
    if (p[0].revents)
        stop_requested = 1;     /* master gone: drain what we can and leave */
}

/* Tell the command that asked for a refresh that it is done. */
static void acknowledge(struct writer *w)
{
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s.%ld", w->ctx->ack_path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fclose(f) != 0 || rename(tmp, w->ctx->ack_path) != 0)
        log_error("writer: cannot write %s: %s", w->ctx->ack_path, strerror(errno));
}

/* The counter snapshot, from the cache as the database has it (after a
 * full refresh, or as an outage begins), never while the cache stands on an
 * older snapshot. */
static void write_snapshot(struct writer *w)
{
    struct shm_header *h = w->ctx->shm->hdr;
    char err[1024];
    if (!__atomic_load_n(&h->db_read, __ATOMIC_ACQUIRE) || __atomic_load_n(&h->cache_from_snapshot, __ATOMIC_ACQUIRE))
        return;
    if (snapshot_write(w->ctx->shm, w->ctx->snapshot_path, w->ctx->name, err, sizeof(err)))
        log_debug("writer: counter snapshot written (%u sender(s))", h->snapshot_senders);
    else
        log_error("writer: counter snapshot: %s", err);
}

/* Owed period reset and due refreshes, before any record is written: a
 * record made after the boundary must land in the new period. */
static bool housekeeping(struct writer *w, char *err, size_t errsize)
{
    struct shm_header *h = w->ctx->shm->hdr;
    uint32_t asked = __atomic_load_n(&h->refresh_requests, __ATOMIC_ACQUIRE);

    /* The writer keeps the schedule itself (the master resets the cache):
     * no record made after a boundary may be committed before the database
     * is reset at that boundary. */
    if (w->next_reset && time(NULL) >= w->next_reset) {
        unsigned long long reset, purged;
        /* The report of the period that ends, before its counts go (once
         * per boundary: a failed reset is tried again, the report not). */
        static time_t reported;
        if (w->ctx->cfg->report.enabled && reported != w->next_reset) {
            report_prepare_pending(w->lanes[0].db, w->ctx->cfg, (int64_t)w->next_reset * 1000000);
            reported = w->next_reset;
        }
        if (!cachesync_db_reset(w->lanes[0].db, (int64_t)w->next_reset * 1000000, w->ctx->cfg->message_retention,
                                &reset, &purged, err, errsize))
            return false;
        log_notice("period reset: %llu sender(s) reset, %llu message(s) purged", reset, purged);
        w->next_reset = period_next_boundary(w->ctx->cfg->reset_schedule, w->next_reset);
        w->next_refresh = 0;
    }
    if (asked != w->refresh_seen || time(NULL) >= w->next_refresh) {
        log_debug("writer: refreshing the cache from the database%s", asked != w->refresh_seen ? " (asked)" : "");
        if (!cachesync_refresh_all(w->lanes[0].db, w->ctx->shm, err, errsize))
            return false;
        mysql_commit(w->lanes[0].db);    /* end the read's transaction: the next sees new data */
        if (__atomic_exchange_n(&h->cache_from_snapshot, 0, __ATOMIC_ACQ_REL))
            log_notice("writer: every sender re-read from the database; the counts loaded from the snapshot "
                       "are replaced");
        __atomic_store_n(&h->db_read, 1, __ATOMIC_RELEASE);
        write_snapshot(w);
        w->next_refresh = time(NULL) + w->ctx->cfg->cache.refresh_interval;
        if (asked != w->refresh_seen) {
            w->refresh_seen = asked;
            acknowledge(w);
        }
    }
    return true;
}

static bool housekeeping_due(struct writer *w)
{
    struct shm_header *h = w->ctx->shm->hdr;
    return __atomic_load_n(&h->refresh_requests, __ATOMIC_ACQUIRE) != w->refresh_seen ||
           (w->next_reset && time(NULL) >= w->next_reset);
}

void writer_main(const struct writer_ctx *ctx)
{
    struct writer w = {.ctx = ctx, .spool_fd = -1};
    struct shm *shm = ctx->shm;
    char err[1024];
    int backoff_ms = 0;

    child_signals(on_term, false);
    srand((unsigned)getpid() ^ (unsigned)time(NULL));     /* conflict_pause's jitter */
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        struct lane *l = &w.lanes[k];
        l->w = &w;
        l->touched = xcalloc(BATCH_MAX, sizeof(struct touched));
        l->recs = xcalloc(BATCH_MAX, sizeof(struct batch_rec));
        l->pending = xcalloc(BATCH_MAX, sizeof(struct msg_record));
        l->covered = xcalloc(BATCH_MAX, sizeof(bool));
        progress_row_name(ctx->name, k, w.progress_name[k], sizeof(w.progress_name[k]));
    }
    w.arena = xmalloc(ARENA_SIZE);
    w.refresh_seen = __atomic_load_n(&shm->hdr->refresh_requests, __ATOMIC_ACQUIRE);
    w.next_refresh = time(NULL) + ctx->cfg->cache.refresh_interval;
    w.next_reset = period_next_boundary(ctx->cfg->reset_schedule, time(NULL));
    if (shm->hdr->owed_reset_us && w.next_reset)   /* a boundary the loaded snapshot crossed */
        w.next_reset = (time_t)(shm->hdr->owed_reset_us / 1000000);
    struct stat st;
    if (stat(ctx->spool_path, &st) == 0 && st.st_size > 0)
        open_spool(&w);

    for (;;) {
        long n = WRITE_FAILED;
        prepare_errno = 0;
        if (w.lanes[0].db != NULL || connect_db(&w, err, sizeof(err))) {
            if (housekeeping(&w, err, sizeof(err)) && prepare_statements(&w, err, sizeof(err)))
                n = write_batch(&w, err, sizeof(err));
            else if (w.outage_logged)
                log_error("writer: %s", err);   /* the outage line named an earlier cause */
        }
        if (n == WRITE_AGAIN)
            continue;
        if (n < 0 && w.lanes[0].db != NULL && (conflict(mysql_errno(w.lanes[0].db)) || conflict(prepare_errno))) {
            mysql_rollback(w.lanes[0].db);  /* e.g. two hosts' period resets of the same rows */
            conflict_pause(&w, err);
            continue;
        }
        if (n < 0) {
            STAT_ADD(shm, db_errors, 1);
            if (!w.outage_logged) {
                log_error("writer: database unavailable, %llu record(s) kept queued: %s",
                          (unsigned long long)wqueue_depth(&shm->queue), err);
                write_snapshot(&w);     /* what is committed; the rest stays in the queue */
            }
            w.outage_logged = true;
            disconnect(&w);
            backoff_ms = backoff_ms ? backoff_ms * 2 : 100;
            if (backoff_ms > BACKOFF_MAX_MS)
                backoff_ms = BACKOFF_MAX_MS;
            if (stop_requested && backoff_ms >= BACKOFF_MAX_MS)
                break;          /* stopping and the database stays away */
            /* Wait in short steps, keeping room in the queue meanwhile; a
             * command waiting for a refresh or a due reset cuts it short. */
            for (int waited = 0; waited < backoff_ms && !stop_requested && !housekeeping_due(&w);
                 waited += 100) {
                spill(&w);
                wait_for_work(&w, 100, true);
            }
            continue;
        }
        if (w.outage_logged) {
            log_notice("writer: database available again, writing %llu queued record(s)",
                       (unsigned long long)wqueue_depth(&shm->queue) + (unsigned long long)n);
            w.outage_logged = false;
        }
        backoff_ms = 0;
        if (n > 0)
            continue;           /* more may be waiting */
        if (stop_requested)
            break;
        long until_refresh = (long)(w.next_refresh - time(NULL)) * 1000;
        wait_for_work(&w, until_refresh < 1000 ? (until_refresh > 0 ? (int)until_refresh : 0) : 1000, false);
    }
    uint64_t left = wqueue_depth(&shm->queue);
    off_t spooled = spool_size(&w) - w.spool_read;
    if (left > 0 || spooled > 0)
        log_error("writer: stopping with %llu record(s) queued and %lld spooled byte(s) not written; "
                  "the next start writes them", (unsigned long long)left, (long long)spooled);
    disconnect(&w);
    if (w.spool_fd >= 0)
        close(w.spool_fd);
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        struct lane *l = &w.lanes[k];
        batch_reset(l);
        free(l->touched);
        free(l->recs);
        free(l->pending);
        free(l->covered);
    }
    free(w.arena);
    _exit(RG_EXIT_OK);
}
