/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * watchsync.c - the database side of the hijacked-account watch (see
 * watchsync.h): the feed of every host's messages, the claims and ends of
 * episodes, the fold of the baselines and the adoption of what other hosts
 * and operators changed. Cache entries are read and changed under their
 * lock (cache_apply, cache_foreach), the database only outside it.
 */
#include "watchsync.h"
#include "cache.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "shm.h"
#include "util.h"
#include "watch.h"
#include "wqueue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WALK_MAX 256            /* episodes handled per walk; the rest at the next */
#define FOLD_ROWS 500           /* rows per INSERT of the fold */

void watchsync_init(struct watchsync *ws, const char *host)
{
    memset(ws, 0, sizeof(*ws));
    ws->host = host;
}

/* A step failed: rolled back, logged at most once a minute. */
static void failed(struct watchsync *ws, MYSQL *db, const char *what, const char *err)
{
    mysql_rollback(db);
    time_t now = time(NULL);
    if (now - ws->last_error_log >= 60) {
        log_warning("signals: %s: %s (tried again at the next step)", what, err);
        ws->last_error_log = now;
    }
}

/* ---- the feed ---- */

struct feed_arg {
    const struct rg_config *cfg;
    struct cache *cache;
    const struct watch_origin *origin;
    int64_t at_us;
};

static void feed_locked(struct cache_entry *e, bool created, void *arg)
{
    const struct feed_arg *a = arg;
    (void)created;
    struct login_watch *w = watch_of(a->cache, e);
    if (w)
        signals_feed(&w->s, &a->cfg->signal_params, a->at_us, a->origin->net_key, a->origin->country);
}

/* The rows created in [feed_from, to): each toward its login's signals
 * (cached logins only; one not cached is rebuilt by no one, and counts
 * from its next message). */
static bool feed(struct watchsync *ws, MYSQL *db, struct shm *shm, const struct rg_config *cfg, int64_t to,
                 char *err, size_t errsize)
{
    char sql[300];
    MYSQL_RES *res;
    MYSQL_ROW row;
    snprintf(sql, sizeof(sql),
             "SELECT `sender`, `client_address`, UNIX_TIMESTAMP(`created_at`) FROM `messages` "
             "WHERE `created_at` >= FROM_UNIXTIME(%lld) AND `created_at` < FROM_UNIXTIME(%lld) ORDER BY `created_at`",
             (long long)ws->feed_from, (long long)to);
    if (mysql_real_query(db, sql, strlen(sql)) != 0 || (res = mysql_use_result(db)) == NULL) {
        snprintf(err, errsize, "%s", mysql_error(db));
        return false;
    }
    while ((row = mysql_fetch_row(res)) != NULL) {
        struct watch_origin o;
        if (row[0] == NULL || row[0][0] == '@' || row[2] == NULL || watch_exempt(cfg, row[0]) ||
            !watch_origin(cfg, row[1], &o))
            continue;
        char key[CACHE_KEY_SIZE];
        struct feed_arg a = {.cfg = cfg, .cache = &shm->cache, .origin = &o,
                             .at_us = strtoll(row[2], NULL, 10) * 1000000};
        cache_make_key(row[0], key);
        cache_apply(&shm->cache, key, false, feed_locked, &a);
    }
    bool ok = mysql_errno(db) == 0;
    if (!ok)
        snprintf(err, errsize, "%s", mysql_error(db));
    mysql_free_result(res);
    mysql_commit(db);       /* ends the read: the next sees newer rows */
    if (ok)
        ws->feed_from = to;
    return ok;
}

/* ---- the adoption of rows changed elsewhere ---- */

struct adopt_arg {
    const struct rg_config *cfg;
    struct cache *cache;
    uint32_t baseline, history, episode, since, last, locked, cleared, now;
    bool mine;
};

static void adopt_locked(struct cache_entry *e, bool created, void *arg)
{
    const struct adopt_arg *a = arg;
    (void)created;
    struct login_watch *w = watch_of(a->cache, e);
    if (w == NULL)
        return;
    w->baseline_read = 1;
    if (a->cleared > w->cleared_at) {
        watch_clear(w);
        w->cleared_at = a->cleared;
    }
    if (a->history > 0)         /* folded in the database: its baseline is every host's */
        signals_set_baseline(&w->s, a->baseline, a->history);
    if (a->locked)
        w->locked = 1;
    if (a->episode == 0 || a->now >= a->last + (uint32_t)a->cfg->signals.window || a->since <= a->cleared)
        return;
    if (!watch_episode_open(w, a->cfg, a->now)) {
        w->episode = (uint8_t)a->episode;
        w->episode_since = a->since;
        w->episode_last = a->last;
        w->unclaimed = 0;
    } else {
        w->episode |= (uint8_t)a->episode;
        if (a->last > w->episode_last)
            w->episode_last = a->last;
    }
    w->claimed = a->mine;
    if (a->last > w->written_last)
        w->written_last = a->last;
}

#define ADOPT_COLUMNS                                                                                     \
    "`sender`, `baseline`, `history`, `episode`, `episode_since`, `episode_last`, `episode_host`, `locked`, " \
    "`cleared_at`"

/* Adopt the login_signals rows a query (of ADOPT_COLUMNS) returns. */
static bool adopt_rows(struct watchsync *ws, MYSQL *db, struct shm *shm, const struct rg_config *cfg,
                       const char *sql, int64_t now, char *err, size_t errsize)
{
    MYSQL_RES *res;
    MYSQL_ROW row;
    if (mysql_real_query(db, sql, strlen(sql)) != 0 || (res = mysql_use_result(db)) == NULL) {
        snprintf(err, errsize, "%s", mysql_error(db));
        return false;
    }
    while ((row = mysql_fetch_row(res)) != NULL) {
        struct adopt_arg a = {.cfg = cfg, .cache = &shm->cache, .now = (uint32_t)now};
        uint32_t *fields[] = {&a.baseline, &a.history, &a.episode, &a.since, &a.last};
        for (int i = 0; i < 5; i++)
            *fields[i] = (uint32_t)strtoul(row[1 + i] ? row[1 + i] : "0", NULL, 10);
        a.mine = row[6] && strcmp(row[6], ws->host) == 0;
        a.locked = (uint32_t)strtoul(row[7] ? row[7] : "0", NULL, 10);
        a.cleared = (uint32_t)strtoul(row[8] ? row[8] : "0", NULL, 10);
        char key[CACHE_KEY_SIZE];
        cache_make_key(row[0], key);
        cache_apply(&shm->cache, key, false, adopt_locked, &a);
    }
    bool ok = mysql_errno(db) == 0;
    if (!ok)
        snprintf(err, errsize, "%s", mysql_error(db));
    mysql_free_result(res);
    mysql_commit(db);
    return ok;
}

/* The rows changed since the last look (all of them the first time). */
static bool adopt(struct watchsync *ws, MYSQL *db, struct shm *shm, const struct rg_config *cfg, char *err,
                  size_t errsize)
{
    char sql[400];
    int64_t now = time(NULL);
    snprintf(sql, sizeof(sql), "SELECT " ADOPT_COLUMNS " FROM `login_signals` WHERE `updated_at` >= FROM_UNIXTIME(%lld)",
             (long long)(ws->adopt_from > 2 ? ws->adopt_from - 2 : 0));
    if (!adopt_rows(ws, db, shm, cfg, sql, now, err, errsize))
        return false;
    ws->adopt_from = now;
    return true;
}

/* Logins cached since the last look (a worker made their entry, or one
 * evicted came back): their rows, so that a login with history is not
 * taken for a newcomer. */
struct unread {
    struct cache *cache;
    char (*keys)[CACHE_KEY_SIZE];
    size_t n;
};

static void unread_locked(struct cache_entry *e, bool created, void *arg)
{
    struct unread *u = arg;
    (void)created;
    struct login_watch *w = watch_of(u->cache, e);
    if (w == NULL || w->baseline_read || u->n >= FOLD_ROWS || e->key[0] == '@')
        return;
    w->baseline_read = 1;       /* looked for now: a login without a row is a newcomer */
    memcpy(u->keys[u->n++], e->key, CACHE_KEY_SIZE);
}

/* The read failed: these logins are looked for again at the next try. */
static void unread_again_locked(struct cache_entry *e, bool created, void *arg)
{
    struct login_watch *w = watch_of(arg, e);
    (void)created;
    if (w != NULL)
        w->baseline_read = 0;
}

static bool read_unread(struct watchsync *ws, MYSQL *db, struct shm *shm, const struct rg_config *cfg, char *err,
                        size_t errsize)
{
    static char keys[FOLD_ROWS][CACHE_KEY_SIZE];
    struct unread u = {.cache = &shm->cache, .keys = keys};
    cache_foreach(&shm->cache, unread_locked, &u);
    if (u.n == 0)
        return true;
    size_t cap = 200 + u.n * (2 * CACHE_KEY_SIZE + 4), len;
    char *sql = xmalloc(cap);
    len = (size_t)snprintf(sql, cap, "SELECT " ADOPT_COLUMNS " FROM `login_signals` WHERE `sender` IN (");
    for (size_t i = 0; i < u.n; i++) {
        len += (size_t)snprintf(sql + len, cap - len, "%s'", i ? "," : "");
        len += mysql_real_escape_string(db, sql + len, keys[i], (unsigned long)strlen(keys[i]));
        len += (size_t)snprintf(sql + len, cap - len, "'");
    }
    snprintf(sql + len, cap - len, ")");
    bool ok = adopt_rows(ws, db, shm, cfg, sql, time(NULL), err, errsize);
    free(sql);
    for (size_t i = 0; !ok && i < u.n; i++)
        cache_apply(&shm->cache, keys[i], false, unread_again_locked, &shm->cache);
    return ok;
}

/* ---- claims, ends and extensions of episodes ---- */

enum item_kind { ITEM_CLAIM, ITEM_END, ITEM_EXTEND };

struct walk_item {
    enum item_kind kind;
    char key[CACHE_KEY_SIZE];
    uint8_t bits, claimed;
    uint32_t since, last, quota_reset;
    enum watch_action action;
    char evidence[200];
};

struct walk {
    const struct rg_config *cfg;
    struct cache *cache;
    struct walk_item *items;
    size_t n;
    uint32_t now;
};

static void walk_locked(struct cache_entry *e, bool created, void *arg)
{
    struct walk *k = arg;
    (void)created;
    struct login_watch *w = watch_of(k->cache, e);
    if (w == NULL || w->episode == 0 || k->n >= WALK_MAX)
        return;
    struct walk_item *it = &k->items[k->n];
    bool open = watch_episode_open(w, k->cfg, k->now);
    if (!open)
        it->kind = ITEM_END;
    else if (w->unclaimed)
        it->kind = ITEM_CLAIM;
    else if (w->episode_last >= w->written_last + (uint32_t)k->cfg->cache.refresh_interval)
        it->kind = ITEM_EXTEND;
    else
        return;
    memcpy(it->key, e->key, sizeof(it->key));
    it->bits = it->kind == ITEM_CLAIM ? w->unclaimed : w->episode;
    it->claimed = w->claimed;
    it->since = w->episode_since;
    it->last = w->episode_last;
    it->quota_reset = e->quota_reset;
    it->action = w->locked ? WATCH_LOCK : k->cfg->quota.dry_run ? WATCH_LOG : watch_action_of(k->cfg, w->episode);
    if (it->kind == ITEM_CLAIM) {
        struct watch_eval ev = watch_peek(w, k->cfg, (int64_t)k->now * 1000000);
        watch_evidence(&ev, k->cfg, it->evidence, sizeof(it->evidence));
    }
    k->n++;
}

struct done_arg {
    const struct walk_item *it;
    const struct rg_config *cfg;
    struct cache *cache;
    bool mine;
    uint32_t now;
};

static void done_locked(struct cache_entry *e, bool created, void *arg)
{
    const struct done_arg *d = arg;
    (void)created;
    struct login_watch *w = watch_of(d->cache, e);
    if (w == NULL)
        return;
    if (d->it->kind == ITEM_END) {
        if (!watch_episode_open(w, d->cfg, d->now))
            w->episode = w->unclaimed = w->claimed = 0;
        return;
    }
    if (d->it->kind == ITEM_CLAIM) {
        w->unclaimed &= (uint8_t)~d->it->bits;
        w->claimed = d->mine;
    }
    if (d->it->last > w->written_last)
        w->written_last = d->it->last;
}

/* The episode's webhook event (the notifier sends it; wqueue.h says where
 * its fields travel). */
static void notify_episode(struct shm *shm, const struct walk_item *it, const char *names)
{
    if (shm->notify.sh == NULL)
        return;
    struct msg_record n = {.created_us = (int64_t)it->since * 1000000, .sender = it->key, .msgid = "",
                           .from_addr = names, .to_addr = it->evidence, .client_address = "",
                           .client_name = watch_action_names[it->action], .event = NOTIFY_EPISODE};
    if (!wqueue_push(&shm->notify, &n))
        log_error("webhook queue full: the SUSPECTED_HIJACK notification for %s is lost", it->key);
}

/* Claim an episode: the first host to find no open episode in the row
 * writes it and owns it (logs it, notifies it, locks the quota); a host
 * that finds one open adds its signals to it. *mine: this host owns it;
 * *fresh: it began here now. */
static bool claim(struct watchsync *ws, MYSQL *db, const struct rg_config *cfg, const struct walk_item *it,
                  bool *mine, bool *fresh, char *err, size_t errsize)
{
    char f[3][256], *out[3] = {f[0], f[1], f[2]};
    char bits[8], since[16], last[16], lock[4];
    const char *key[] = {it->key};
    snprintf(bits, sizeof(bits), "%u", it->bits);
    snprintf(since, sizeof(since), "%u", it->since);
    snprintf(last, sizeof(last), "%u", it->last);
    snprintf(lock, sizeof(lock), "%d", it->action == WATCH_LOCK);

    int found = db_query_row_params(db, "SELECT `episode`, `episode_last`, `episode_host` FROM `login_signals` "
                                    "WHERE `sender` = ? FOR UPDATE", key, 1, out, 3, sizeof(f[0]), err, errsize);
    if (found < 0)
        return false;
    uint32_t episode = found ? (uint32_t)strtoul(f[0], NULL, 10) : 0;
    uint32_t row_last = found ? (uint32_t)strtoul(f[1], NULL, 10) : 0;
    if (episode != 0 && it->since < row_last + (uint32_t)cfg->signals.window) {
        const char *p[] = {bits, last, it->key};
        *mine = strcmp(f[2], ws->host) == 0;
        *fresh = false;
        return db_exec_params(db, "UPDATE `login_signals` SET `episode` = `episode` | ?, "
                              "`episode_last` = GREATEST(`episode_last`, ?) WHERE `sender` = ?", p, 3, NULL, err, errsize);
    }
    const char *p[] = {it->key, bits, since, last, ws->host, it->evidence, lock};
    *mine = *fresh = true;
    if (!db_exec_params(db, "INSERT INTO `login_signals` (`sender`, `episode`, `episode_since`, `episode_last`, "
                        "`episode_host`, `evidence`, `locked`) VALUES (?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE "
                        "`episode` = VALUES(`episode`), `episode_since` = VALUES(`episode_since`), "
                        "`episode_last` = VALUES(`episode_last`), `episode_host` = VALUES(`episode_host`), "
                        "`evidence` = VALUES(`evidence`), `locked` = GREATEST(`locked`, VALUES(`locked`))",
                        p, 7, NULL, err, errsize))
        return false;
    /* The lock: the row's quota to 0 until an operator clears it (the row
     * made here if the records that make it are not written yet). */
    char quota_reset[16];
    snprintf(quota_reset, sizeof(quota_reset), "%u", it->quota_reset);
    const char *q[] = {it->key, quota_reset};
    return it->action != WATCH_LOCK ||
           db_exec_params(db, "INSERT INTO `ratelimits` (`sender`, `quota`, `quota_reset`, `quota_locked`) "
                          "VALUES (?, 0, ?, 1) ON DUPLICATE KEY UPDATE `quota` = 0, `quota_locked` = 1", q, 2,
                          NULL, err, errsize);
}

/* What one walk item asks of the database, then of the cache and the log. */
static bool handle(struct watchsync *ws, MYSQL *db, struct shm *shm, const struct rg_config *cfg,
                   const struct walk_item *it, uint32_t now, char *err, size_t errsize)
{
    struct done_arg d = {.it = it, .cfg = cfg, .cache = &shm->cache, .now = now};
    bool fresh = false;
    char names[64];
    watch_names(it->bits, names, sizeof(names));

    if (it->kind == ITEM_CLAIM) {
        if (!claim(ws, db, cfg, it, &d.mine, &fresh, err, errsize))
            return false;
    } else if (it->kind == ITEM_EXTEND) {
        char last[16];
        snprintf(last, sizeof(last), "%u", it->last);
        const char *p[] = {last, it->key};
        if (!db_exec_params(db, "UPDATE `login_signals` SET `episode_last` = GREATEST(`episode_last`, ?) "
                            "WHERE `sender` = ?", p, 2, NULL, err, errsize))
            return false;
    }
    if (it->kind != ITEM_END && mysql_commit(db) != 0) {
        snprintf(err, errsize, "commit: %s", mysql_error(db));
        return false;
    }
    cache_apply(&shm->cache, it->key, false, done_locked, &d);
    if (fresh) {
        log_warning("signals: %s looks hijacked: %s tripped (%s); action %s until a window passes without a trip "
                    "or `rateguard clear`", it->key, names, it->evidence, watch_action_names[it->action]);
        for (int i = 0; i < WATCH_SIGNALS; i++)
            if (it->bits & (1u << i)) {
                STAT_ADD(shm, signal_episodes[i], 1);
                break;      /* counted once, by the first signal that opened it */
            }
        notify_episode(shm, it, names);
    } else if (it->kind == ITEM_CLAIM && d.mine) {
        log_info("signals: %s: the open episode also trips %s", it->key, names);
    } else if (it->kind == ITEM_END && it->claimed) {
        log_notice("signals: %s: the episode (%s, since %u) ended: a window without a trip", it->key, names,
                   it->since);
        STAT_ADD(shm, signal_ended, 1);
    }
    return true;
}

/* One walk: true when it found WALK_MAX items and handled them all (there
 * may be more: the next second walks again). */
static bool walk(struct watchsync *ws, MYSQL *db, struct shm *shm, const struct rg_config *cfg)
{
    static struct walk_item items[WALK_MAX];
    struct walk k = {.cfg = cfg, .cache = &shm->cache, .items = items, .now = (uint32_t)time(NULL)};
    char err[512];

    cache_foreach(&shm->cache, walk_locked, &k);
    for (size_t i = 0; i < k.n; i++)
        if (!handle(ws, db, shm, cfg, &items[i], k.now, err, sizeof(err))) {
            failed(ws, db, "episode", err);
            return false;
        }
    return k.n == WALK_MAX;
}

/* ---- the fold of the baselines ---- */

/* One INSERT of up to FOLD_ROWS folded baselines, each applied only if
 * its window is newer than the row's (so the first host's fold counts). */
static bool fold_write(MYSQL *db, char *values, size_t len, char *err, size_t errsize)
{
    static const char head[] = "INSERT INTO `login_signals` (`sender`, `baseline`, `history`, `folded_window`) VALUES ";
    static const char tail[] =
        " ON DUPLICATE KEY UPDATE `baseline` = IF(`folded_window` < VALUES(`folded_window`), VALUES(`baseline`), `baseline`), "
        "`history` = IF(`folded_window` < VALUES(`folded_window`), VALUES(`history`), `history`), "
        "`folded_window` = GREATEST(`folded_window`, VALUES(`folded_window`))";
    char *sql = xmalloc(sizeof(head) + len + sizeof(tail));
    memcpy(sql, head, sizeof(head) - 1);
    memcpy(sql + sizeof(head) - 1, values, len);
    memcpy(sql + sizeof(head) - 1 + len, tail, sizeof(tail));
    bool ok = mysql_real_query(db, sql, strlen(sql)) == 0;
    if (!ok)
        snprintf(err, errsize, "fold: %s", mysql_error(db));
    free(sql);
    return ok;
}

/* Fold the window that began at start into every active login's baseline
 * (all hosts' rows), unless a host already did. */
static bool fold(MYSQL *db, const struct rg_config *cfg, int64_t start, char *err, size_t errsize)
{
    char sql[700];
    MYSQL_RES *res;
    MYSQL_ROW row;
    snprintf(sql, sizeof(sql),
             "SELECT t.`sender`, t.c, COALESCE(s.`baseline`, 0), COALESCE(s.`history`, 0), "
             "COALESCE(s.`folded_window`, 0) FROM (SELECT `sender`, COUNT(*) AS c FROM `messages` "
             "WHERE `created_at` >= FROM_UNIXTIME(%lld) AND `created_at` < FROM_UNIXTIME(%lld) GROUP BY `sender`) t "
             "LEFT JOIN `login_signals` s ON s.`sender` = t.`sender`",
             (long long)start, (long long)(start + cfg->signals.window));
    if (mysql_real_query(db, sql, strlen(sql)) != 0 || (res = mysql_store_result(db)) == NULL) {
        snprintf(err, errsize, "fold: %s", mysql_error(db));
        return false;
    }
    size_t cap = FOLD_ROWS * (2 * CACHE_KEY_SIZE + 64), len = 0, rows = 0;
    char *values = xmalloc(cap);
    bool ok = true;
    while (ok && (row = mysql_fetch_row(res)) != NULL) {
        if (row[0][0] == '@' || strtoll(row[4], NULL, 10) >= start)
            continue;
        uint32_t b = (uint32_t)strtoul(row[2], NULL, 10), h = (uint32_t)strtoul(row[3], NULL, 10);
        signals_fold_window(&cfg->signal_params, (uint32_t)strtoul(row[1], NULL, 10), &b, &h);
        char key[CACHE_KEY_SIZE], esc[2 * CACHE_KEY_SIZE + 1];
        cache_make_key(row[0], key);
        mysql_real_escape_string(db, esc, key, (unsigned long)strlen(key));
        len += (size_t)snprintf(values + len, cap - len, "%s('%s', %u, %u, %lld)", rows ? "," : "", esc, b, h,
                                (long long)start);
        if (++rows == FOLD_ROWS) {
            ok = fold_write(db, values, len, err, errsize);
            len = rows = 0;
        }
    }
    mysql_free_result(res);
    if (ok && rows)
        ok = fold_write(db, values, len, err, errsize);
    free(values);
    if (ok && mysql_commit(db) != 0) {
        snprintf(err, errsize, "fold: commit: %s", mysql_error(db));
        ok = false;
    }
    return ok;
}

/* ---- the start ---- */

/* Where a fresh feed starts: the previous window's beginning. */
static int64_t rebuild_from(const struct rg_config *cfg, time_t now)
{
    return ((int64_t)now / cfg->signals.window) * cfg->signals.window - cfg->signals.window;
}

bool watchsync_preload(MYSQL *db, struct shm *shm, const struct rg_config *cfg, const char *host, char *err,
                       size_t errsize)
{
    struct watchsync ws;
    time_t now = time(NULL);
    if (shm->cache.sh->watch_size < WATCH_SIZE)
        return true;
    watchsync_init(&ws, host);
    ws.feed_from = rebuild_from(cfg, now);
    if (!feed(&ws, db, shm, cfg, now - FEED_LAG_S, err, errsize) || !adopt(&ws, db, shm, cfg, err, errsize))
        return false;
    shm->hdr->watch_feed_from = ws.feed_from;
    return true;
}

/* ---- the step ---- */

void watchsync_step(struct watchsync *ws, MYSQL *db, struct shm *shm, const struct rg_config *cfg)
{
    char err[512];
    time_t now = time(NULL);
    int64_t window = cfg->signals.window;

    if (db == NULL || shm->cache.sh->watch_size < WATCH_SIZE)
        return;
    if (!ws->started) {
        /* Go on from the start's preload; without one, rebuild the current
         * and the previous window from every host's rows. */
        ws->feed_from = shm->hdr->watch_feed_from ? shm->hdr->watch_feed_from : rebuild_from(cfg, now);
        ws->started = true;
    }
    if (now >= ws->next_feed) {
        if (!feed(ws, db, shm, cfg, now - FEED_LAG_S, err, sizeof(err)))
            failed(ws, db, "feed", err);
        ws->next_feed = now + 1;
    }
    int64_t done = ((int64_t)(now - FOLD_DELAY_S) / window) * window - window;
    if (done > ws->folded) {
        if (fold(db, cfg, done, err, sizeof(err)))
            ws->folded = done;
        else
            failed(ws, db, "fold", err);
    }
    uint32_t pending = __atomic_load_n(&shm->hdr->watch_pending, __ATOMIC_ACQUIRE);
    if (now >= ws->next_adopt) {
        if (!adopt(ws, db, shm, cfg, err, sizeof(err)))
            failed(ws, db, "adopt", err);
        ws->next_adopt = now + cfg->cache.refresh_interval;
    }
    /* A walk visits every bucket of the cache under its lock (some 10-30
     * ms with 200000 entries): one opened episode asks for one, but while
     * many open (every busy login on probation at start) at most one a
     * second, not one per round; and again the next second while a walk
     * finds WALK_MAX. */
    if (((pending != ws->pending_seen || ws->walk_more) && now != ws->last_walk) || now >= ws->next_walk) {
        ws->pending_seen = pending;
        if (!read_unread(ws, db, shm, cfg, err, sizeof(err)))
            failed(ws, db, "baselines", err);
        ws->walk_more = walk(ws, db, shm, cfg);
        ws->last_walk = now;
        ws->next_walk = now + cfg->cache.refresh_interval;
    }
}
