/*
 * writer.c - database write-back. One transaction per round: for each
 * record an upsert of the sender's counters as increments (creating the
 * row with the default quota if new) and an insert of its `messages` row;
 * then the touched rows are read back inside the same transaction. After
 * COMMIT the records leave the queue and the cache takes the committed
 * values plus whatever was queued meanwhile (unwritten counts).
 *
 * When the database fails, the transaction is rolled back, the records
 * stay queued, and the writer retries with backoff, logging the outage
 * once and its end once. All statements are prepared.
 */
#include "writer.h"
#include "cache.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "quota.h"
#include "rateguard.h"
#include "shm.h"
#include "util.h"

#include <errno.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <errmsg.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH_MAX 1000              /* records per transaction */
#define ARENA_SIZE (4u << 20)       /* copies of the records of one batch */
#define BACKOFF_MAX_MS 5000

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* A sender touched by the current batch. */
struct touched {
    char key[CACHE_KEY_SIZE];
    char *sender;               /* as written (first spelling seen) */
    uint32_t msg_delta, rcpt_delta;
    /* read back from the database */
    uint64_t id;
    uint32_t quota, quota_reset, msg_counter, rcpt_counter, msg_total, rcpt_total;
    uint8_t locked;
    bool found;
};

struct writer {
    const struct writer_ctx *ctx;
    MYSQL *db;
    MYSQL_STMT *upsert, *insert_message, *select_row;
    struct touched *touched;
    size_t n_touched;
    char *arena;                /* the current batch's records */
    bool outage_logged;
    uint64_t poison_seq;        /* record refused by the database, to set aside */
    char poison_error[512];
};

static const char sql_upsert[] =
    "INSERT INTO `ratelimits` (`sender`, `quota`, `quota_reset`, `msg_counter`, `rcpt_counter`, "
    "`msg_total`, `rcpt_total`) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON DUPLICATE KEY UPDATE `msg_counter` = `msg_counter` + VALUES(`msg_counter`), "
    "`rcpt_counter` = `rcpt_counter` + VALUES(`rcpt_counter`), "
    "`msg_total` = `msg_total` + VALUES(`msg_total`), "
    "`rcpt_total` = `rcpt_total` + VALUES(`rcpt_total`), `id` = LAST_INSERT_ID(`id`)";

static const char sql_insert_message[] =
    "INSERT INTO `messages` (`ratelimit_id`, `msgid`, `sender`, `rcpt_count`, `blocked`, "
    "`from_addr`, `to_addr`, `client_address`, `client_name`, `created_at`) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, FROM_UNIXTIME(?))";

static const char sql_select_row[] =
    "SELECT `id`, `quota`, `quota_reset`, `quota_locked`, `msg_counter`, `rcpt_counter`, "
    "`msg_total`, `rcpt_total` FROM `ratelimits` WHERE `sender` = ?";

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

static void disconnect(struct writer *w)
{
    MYSQL_STMT **stmts[] = {&w->upsert, &w->insert_message, &w->select_row};
    for (size_t i = 0; i < 3; i++)
        if (*stmts[i]) {
            mysql_stmt_close(*stmts[i]);
            *stmts[i] = NULL;
        }
    if (w->db)
        mysql_close(w->db);
    w->db = NULL;
}

static MYSQL_STMT *prepare(MYSQL *db, const char *sql, char *err, size_t errsize)
{
    MYSQL_STMT *st = mysql_stmt_init(db);
    if (st == NULL || mysql_stmt_prepare(st, sql, strlen(sql)) != 0) {
        snprintf(err, errsize, "prepare: %s", st ? mysql_stmt_error(st) : mysql_error(db));
        if (st)
            mysql_stmt_close(st);
        return NULL;
    }
    return st;
}

static bool connect_db(struct writer *w, char *err, size_t errsize)
{
    w->db = db_connect(w->ctx->cfg, err, errsize);
    if (w->db == NULL)
        return false;
    mysql_autocommit(w->db, 0);
    if ((w->upsert = prepare(w->db, sql_upsert, err, errsize)) == NULL ||
        (w->insert_message = prepare(w->db, sql_insert_message, err, errsize)) == NULL ||
        (w->select_row = prepare(w->db, sql_select_row, err, errsize)) == NULL) {
        disconnect(w);
        return false;
    }
    return true;
}

static struct touched *touch(struct writer *w, const struct msg_record *r)
{
    char key[CACHE_KEY_SIZE];
    cache_make_key(r->sender, key);
    for (size_t i = 0; i < w->n_touched; i++)
        if (strcmp(w->touched[i].key, key) == 0)
            return &w->touched[i];
    struct touched *t = &w->touched[w->n_touched++];
    memset(t, 0, sizeof(*t));
    memcpy(t->key, key, sizeof(key));
    t->sender = xstrdup(r->sender);
    return t;
}

static void forget_touched(struct writer *w)
{
    for (size_t i = 0; i < w->n_touched; i++)
        free(w->touched[i].sender);
    w->n_touched = 0;
}

static bool write_record(struct writer *w, const struct msg_record *r, char *err, size_t errsize)
{
    MYSQL_BIND b[10];
    unsigned long len[10];
    uint32_t quota = r->quota_default, msg = r->msg_delta, rcpt = r->rcpt_delta;
    uint32_t rcpt_count = r->rcpt_count, blocked = r->blocked;
    uint64_t id, created = (uint64_t)r->created_at;

    memset(b, 0, sizeof(b));
    bind_str(&b[0], r->sender, &len[0]);
    bind_u32(&b[1], &quota);
    bind_u32(&b[2], &quota);
    bind_u32(&b[3], &msg);
    bind_u32(&b[4], &rcpt);
    bind_u32(&b[5], &msg);
    bind_u32(&b[6], &rcpt);
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
    bind_u64(&b[9], &created);
    if (mysql_stmt_bind_param(w->insert_message, b) != 0 || mysql_stmt_execute(w->insert_message) != 0) {
        snprintf(err, errsize, "insert into messages for %s: %s", r->sender,
                 mysql_stmt_error(w->insert_message));
        return false;
    }
    return true;
}

static bool read_back(struct writer *w, struct touched *t, char *err, size_t errsize)
{
    MYSQL_BIND in[1], out[8];
    unsigned long len;
    uint32_t locked;

    memset(in, 0, sizeof(in));
    memset(out, 0, sizeof(out));
    bind_str(&in[0], t->sender, &len);
    bind_u64(&out[0], &t->id);
    bind_u32(&out[1], &t->quota);
    bind_u32(&out[2], &t->quota_reset);
    bind_u32(&out[3], &locked);
    bind_u32(&out[4], &t->msg_counter);
    bind_u32(&out[5], &t->rcpt_counter);
    bind_u32(&out[6], &t->msg_total);
    bind_u32(&out[7], &t->rcpt_total);
    if (mysql_stmt_bind_param(w->select_row, in) != 0 || mysql_stmt_execute(w->select_row) != 0 ||
        mysql_stmt_bind_result(w->select_row, out) != 0) {
        snprintf(err, errsize, "read back %s: %s", t->sender, mysql_stmt_error(w->select_row));
        return false;
    }
    int rc = mysql_stmt_fetch(w->select_row);
    t->found = rc == 0 || rc == MYSQL_DATA_TRUNCATED;
    t->locked = (uint8_t)(locked != 0);
    mysql_stmt_free_result(w->select_row);
    return true;
}

/* Under the sender's lock: the committed deltas are no longer unwritten;
 * the cache takes the database's values plus what is still queued. */
static void apply_committed(struct cache_entry *e, bool created, void *arg)
{
    const struct touched *t = arg;
    (void)created;
    e->unwritten_msg = e->unwritten_msg > t->msg_delta ? e->unwritten_msg - t->msg_delta : 0;
    e->unwritten_rcpt = e->unwritten_rcpt > t->rcpt_delta ? e->unwritten_rcpt - t->rcpt_delta : 0;
    if (!t->found)
        return;
    e->db_id = t->id;
    e->quota = t->quota;
    e->quota_reset = t->quota_reset;
    e->locked = t->locked;
    e->msg_counter = quota_sat_add(t->msg_counter, e->unwritten_msg);
    e->rcpt_counter = quota_sat_add(t->rcpt_counter, e->unwritten_rcpt);
    e->msg_total = quota_sat_add(t->msg_total, e->unwritten_msg);
    e->rcpt_total = quota_sat_add(t->rcpt_total, e->unwritten_rcpt);
}

static uint32_t now_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)ts.tv_sec;
}

/* MariaDB errors that say "try again later" rather than "this record can
 * never be written". */
static bool transient_error(unsigned int code)
{
    return (code >= 2000 && code < 3000) || code == ER_LOCK_DEADLOCK || code == ER_LOCK_WAIT_TIMEOUT ||
           code == ER_SERVER_SHUTDOWN || code == ER_CON_COUNT_ERROR || code == ER_OPTION_PREVENTS_STATEMENT ||
           code == ER_QUERY_INTERRUPTED || code == 0;
}

/* A record the database refuses for good (it cannot happen with the input
 * checks in engine.c, but must never wedge the queue): kept in
 * state_dir/rejected.log with the reason, then dropped from the queue. */
static void set_aside(struct writer *w, const struct msg_record *r)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/rejected.log", w->ctx->cfg->state_dir);
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "seq=%llu time=%lld sender=%s msgid=%s rcpt_count=%u msg_delta=%u rcpt_delta=%u "
                   "blocked=%u from=%s to=%s client_address=%s client_name=%s error=%s\n",
                (unsigned long long)r->seq, (long long)r->created_at, r->sender, r->msgid,
                r->rcpt_count, r->msg_delta, r->rcpt_delta, r->blocked, r->from_addr, r->to_addr,
                r->client_address, r->client_name, w->poison_error);
        fclose(f);
    }
    log_error("writer: record %llu for %s refused by the database (%s); kept in %s and skipped",
              (unsigned long long)r->seq, r->sender, w->poison_error, f ? path : "(unwritable: log only)");
}

#define WRITE_FAILED (-1)   /* rolled back; retry after a pause */
#define WRITE_AGAIN (-2)    /* rolled back; a refused record is set aside next round */

/* One transaction over what is queued. Returns records taken off the
 * queue, or WRITE_FAILED / WRITE_AGAIN. */
static long write_batch(struct writer *w, char *err, size_t errsize)
{
    struct shm *shm = w->ctx->shm;
    struct wqueue_cursor cur;
    struct msg_record rec;
    size_t used = 0, len;
    long n = 0;

    wqueue_cursor_start(&shm->queue, &cur);
    forget_touched(w);
    for (;;) {
        struct wqueue_cursor before = cur;
        struct touched *t;
        if (n >= BATCH_MAX ||
            !wqueue_next(&shm->queue, &cur, w->arena + used, ARENA_SIZE - used, &rec, &len))
            break;
        if (rec.seq == w->poison_seq) {
            if (n > 0) {        /* commit what precedes it; it goes alone next round */
                cur = before;
                break;
            }
            set_aside(w, &rec);
            t = touch(w, &rec);
            t->msg_delta = rec.msg_delta;
            t->rcpt_delta = rec.rcpt_delta;
            w->poison_seq = 0;
            n = 1;
            break;
        }
        if (!write_record(w, &rec, err, errsize)) {
            MYSQL_STMT *failed = mysql_stmt_errno(w->upsert) ? w->upsert : w->insert_message;
            if (!transient_error(mysql_stmt_errno(failed))) {
                w->poison_seq = rec.seq;
                snprintf(w->poison_error, sizeof(w->poison_error), "%.500s", err);
                mysql_rollback(w->db);
                return WRITE_AGAIN;
            }
            goto fail;
        }
        t = touch(w, &rec);
        t->msg_delta = quota_sat_add(t->msg_delta, rec.msg_delta);
        t->rcpt_delta = quota_sat_add(t->rcpt_delta, rec.rcpt_delta);
        used += (len + 7) & ~(size_t)7;
        n++;
    }
    if (n == 0)
        return 0;
    for (size_t i = 0; i < w->n_touched; i++)
        if (!read_back(w, &w->touched[i], err, errsize))
            goto fail;
    if (mysql_commit(w->db) != 0) {
        snprintf(err, errsize, "commit: %s", mysql_error(w->db));
        goto fail;
    }
    wqueue_release(&shm->queue, &cur);
    uint32_t now = now_monotonic();
    for (size_t i = 0; i < w->n_touched; i++)
        cache_apply(&shm->cache, w->touched[i].key, false, now, apply_committed, &w->touched[i]);
    STAT_ADD(shm, db_written, (uint64_t)n);
    return n;

fail:
    mysql_rollback(w->db);
    return WRITE_FAILED;
}

static void writer_signals(void)
{
    struct sigaction sa = {.sa_handler = on_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
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
        if (wqueue_depth(&w->ctx->shm->queue) > 0) {
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

void writer_main(const struct writer_ctx *ctx)
{
    struct writer w = {.ctx = ctx};
    struct shm *shm = ctx->shm;
    char err[1024];
    int backoff_ms = 0;

    writer_signals();
    w.touched = xcalloc(BATCH_MAX, sizeof(struct touched));
    w.arena = xmalloc(ARENA_SIZE);

    for (;;) {
        if (w.db == NULL && !connect_db(&w, err, sizeof(err))) {
            if (!w.outage_logged)
                log_error("writer: database unavailable, %llu record(s) kept queued: %s",
                          (unsigned long long)wqueue_depth(&shm->queue), err);
            w.outage_logged = true;
        }
        long n = w.db ? write_batch(&w, err, sizeof(err)) : WRITE_FAILED;
        if (n == WRITE_AGAIN)
            continue;
        if (n < 0) {
            STAT_ADD(shm, db_errors, 1);
            if (w.db && !w.outage_logged)
                log_error("writer: %s; will retry", err);
            w.outage_logged = true;
            disconnect(&w);
            backoff_ms = backoff_ms ? backoff_ms * 2 : 100;
            if (backoff_ms > BACKOFF_MAX_MS)
                backoff_ms = BACKOFF_MAX_MS;
            if (stop_requested && backoff_ms >= BACKOFF_MAX_MS)
                break;          /* stopping and the database stays away */
            wait_for_work(&w, backoff_ms, true);
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
        wait_for_work(&w, 1000, false);
    }
    if (wqueue_depth(&shm->queue) > 0)
        log_error("writer: stopping with %llu record(s) not written",
                  (unsigned long long)wqueue_depth(&shm->queue));
    forget_touched(&w);
    disconnect(&w);
    free(w.touched);
    free(w.arena);
    _exit(RG_EXIT_OK);
}

/* Preload: one row into the cache. */
struct preload_row {
    uint64_t id;
    uint32_t quota, quota_reset, msg_counter, rcpt_counter, msg_total, rcpt_total;
    uint8_t locked;
};

static void preload_entry(struct cache_entry *e, bool created, void *arg)
{
    const struct preload_row *r = arg;
    (void)created;
    e->db_id = r->id;
    e->quota = r->quota;
    e->quota_reset = r->quota_reset;
    e->locked = r->locked;
    e->msg_counter = r->msg_counter;
    e->rcpt_counter = r->rcpt_counter;
    e->msg_total = r->msg_total;
    e->rcpt_total = r->rcpt_total;
    e->referenced = 0;          /* loaded, not used: first to go if space runs out */
}

bool writer_preload(const struct rg_config *cfg, struct shm *shm)
{
    char err[1024], sql[512];
    MYSQL *db = db_connect(cfg, err, sizeof(err));
    unsigned long loaded = 0;

    if (db == NULL) {
        log_error("preload: %s; starting with an empty cache", err);
        return false;
    }
    /* Most recently active senders first, as many as the cache holds. */
    snprintf(sql, sizeof(sql),
             "SELECT `sender`, `id`, `quota`, `quota_reset`, `quota_locked`, `msg_counter`, "
             "`rcpt_counter`, `msg_total`, `rcpt_total` FROM `ratelimits` "
             "ORDER BY `updated_at` DESC LIMIT %u", shm->cache.sh->capacity);
    MYSQL_RES *res;
    if (mysql_real_query(db, sql, strlen(sql)) != 0 || (res = mysql_use_result(db)) == NULL) {
        log_error("preload: %s; starting with an empty cache", mysql_error(db));
        mysql_close(db);
        return false;
    }
    uint32_t now = now_monotonic();
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
        struct preload_row r = {
            .id = strtoull(row[1], NULL, 10), .quota = (uint32_t)strtoul(row[2], NULL, 10),
            .quota_reset = (uint32_t)strtoul(row[3], NULL, 10), .locked = row[4][0] != '0',
            .msg_counter = (uint32_t)strtoul(row[5], NULL, 10),
            .rcpt_counter = (uint32_t)strtoul(row[6], NULL, 10),
            .msg_total = (uint32_t)strtoul(row[7], NULL, 10),
            .rcpt_total = (uint32_t)strtoul(row[8], NULL, 10),
        };
        char key[CACHE_KEY_SIZE];
        cache_make_key(row[0], key);
        if (cache_apply(&shm->cache, key, true, now, preload_entry, &r) == CACHE_OK)
            loaded++;
    }
    bool ok = mysql_errno(db) == 0;
    if (!ok)
        log_error("preload: %s", mysql_error(db));
    mysql_free_result(res);
    mysql_close(db);
    log_info("preload: %lu sender(s) loaded into the cache", loaded);
    return ok;
}
