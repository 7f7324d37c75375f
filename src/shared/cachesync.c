/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * cachesync.c - database <-> cache agreement (see cachesync.h). Rows are
 * fetched first and applied one by one, each under its entry's lock, so
 * no lock is ever held while the database is being read.
 */
#include "cachesync.h"
#include "config.h"
#include "log.h"
#include "quota.h"
#include "shm.h"
#include "util.h"
#include "windows.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cachesync_parse_row(MYSQL_ROW row, struct db_row *out)
{
    out->id = strtoull(row[1], NULL, 10);
    out->quota = (uint32_t)strtoul(row[2], NULL, 10);
    out->quota_reset = (uint32_t)strtoul(row[3], NULL, 10);
    out->locked = row[4][0] != '0';
    out->msg_counter = (uint32_t)strtoul(row[5], NULL, 10);
    out->rcpt_counter = (uint32_t)strtoul(row[6], NULL, 10);
    out->msg_total = (uint32_t)strtoul(row[7], NULL, 10);
    out->rcpt_total = (uint32_t)strtoul(row[8], NULL, 10);
    out->reset_us = strtoll(row[9], NULL, 10);
    out->msg_quota = strtoll(row[10], NULL, 10);
    out->rcpt_quota = strtoll(row[11], NULL, 10);
    out->block_action = (uint8_t)strtoul(row[12], NULL, 10);
    out->notified = (uint8_t)strtoul(row[13], NULL, 10);
}

void cachesync_apply_row(struct cache_entry *e, bool created, void *arg)
{
    const struct db_row *r = arg;

    /* Limits hold whatever the period. */
    e->quota_own = (uint8_t)((r->msg_quota >= 0 ? QUOTA_OWN_MSG : 0) | (r->rcpt_quota >= 0 ? QUOTA_OWN_RCPT : 0));
    e->msg_quota = r->msg_quota >= 0 ? (uint32_t)r->msg_quota : 0;
    e->rcpt_quota = r->rcpt_quota >= 0 ? (uint32_t)r->rcpt_quota : 0;
    e->block_action = r->block_action < BLOCK_ACTIONS ? r->block_action : BLOCK_ACTION_DEFAULT;
    if (r->reset_us < e->reset_us) {
        /* A row from before a reset the cache already made (the database
         * follows): its counters belong to the old period. */
        e->db_id = r->id;
        e->seen = r->round;
        return;
    }
    if (r->reset_us > e->reset_us) {
        /* Reset in the database since we last looked: what we had queued
         * before it no longer counts in this period. */
        e->reset_us = r->reset_us;
        e->unwritten_msg = e->unwritten_rcpt = 0;
        e->block_notified = e->warning_notified = 0;
        e->notify_unwritten = 0;
    }
    if (e->notify_unwritten == 0) {
        e->block_notified = (r->notified & NOTIFIED_BLOCK) != 0;
        e->warning_notified = (r->notified & NOTIFIED_WARNING) != 0;
    }
    e->db_id = r->id;
    e->quota = r->quota;
    e->quota_reset = r->quota_reset;
    e->locked = r->locked;
    e->msg_counter = quota_sat_add(r->msg_counter, e->unwritten_msg);
    e->rcpt_counter = quota_sat_add(r->rcpt_counter, e->unwritten_rcpt);
    e->msg_total = quota_sat_add(r->msg_total, e->unwritten_msg);
    e->rcpt_total = quota_sat_add(r->rcpt_total, e->unwritten_rcpt);
    e->seen = r->round;
    if (created)
        e->referenced = 0;      /* loaded, not used: first to go if space runs out */
}

/* Which rows become cache entries when they have none. */
enum row_entries {
    ROWS_LOAD,          /* every row (making room if need be) */
    ROWS_LOAD_IF_ROOM,  /* rows not cached, while the cache has free entries */
};

/* Every row of sql (CACHESYNC_COLUMNS) applied to the cache; *count the
 * rows applied; *read (when not NULL) the rows read and *last_id the id of
 * the last one. */
static bool for_each_row(MYSQL *db, struct shm *shm, const char *sql, enum row_entries load, uint16_t round,
                         unsigned long *count, unsigned long *read, uint64_t *last_id, char *err, size_t errsize)
{
    MYSQL_RES *res;
    MYSQL_ROW row;
    unsigned long rows = 0;

    if (mysql_real_query(db, sql, strlen(sql)) != 0 || (res = mysql_use_result(db)) == NULL) {
        snprintf(err, errsize, "%s", mysql_error(db));
        return false;
    }
    *count = 0;
    while ((row = mysql_fetch_row(res)) != NULL) {
        struct db_row r = {.round = round};
        char key[CACHE_KEY_SIZE];
        cachesync_parse_row(row, &r);
        cache_make_key(row[0], key);
        bool create = load == ROWS_LOAD || cache_used(&shm->cache) < shm->cache.sh->capacity;
        if (cache_apply(&shm->cache, key, create, cachesync_apply_row, &r) == CACHE_OK)
            (*count)++;
        rows++;
        if (last_id)
            *last_id = r.id;
    }
    if (read)
        *read = rows;
    bool ok = mysql_errno(db) == 0;
    if (!ok)
        snprintf(err, errsize, "%s", mysql_error(db));
    mysql_free_result(res);
    return ok;
}

/* A domain pool's counts being re-derived: the database's sum over the
 * domain's senders plus what its cached senders still have queued. */
struct pool_sum {
    const struct domain_default *domain;
    uint64_t msg, rcpt;
};

struct pool_sums {
    struct pool_sum *pools;     /* sorted by domain name */
    size_t n;
};

static int pool_by_name(const void *a, const void *b)
{
    return strcmp(((const struct pool_sum *)a)->domain->name, ((const struct pool_sum *)b)->domain->name);
}

static struct pool_sum *find_pool(struct pool_sums *s, const char *domain)
{
    struct domain_default key;
    str_copy(key.name, domain, sizeof(key.name));
    struct pool_sum probe = {.domain = &key};
    return bsearch(&probe, s->pools, s->n, sizeof(*s->pools), pool_by_name);
}

static void add_unwritten(struct cache_entry *e, bool created, void *arg)
{
    struct pool_sums *s = arg;
    (void)created;
    const char *at = strrchr(e->key, '@');
    if (at == NULL || at == e->key || (e->unwritten_msg == 0 && e->unwritten_rcpt == 0))
        return;
    struct pool_sum *p = find_pool(s, at + 1);
    if (p) {
        p->msg += e->unwritten_msg;
        p->rcpt += e->unwritten_rcpt;
    }
}

static void set_pool_locked(struct cache_entry *e, bool created, void *arg)
{
    const struct pool_sum *p = arg;
    (void)created;
    e->quota = e->quota_reset = p->domain->pool_quota;
    e->locked = 1;              /* kept in the cache longest */
    e->msg_counter = p->msg > UINT32_MAX ? UINT32_MAX : (uint32_t)p->msg;
    e->rcpt_counter = p->rcpt > UINT32_MAX ? UINT32_MAX : (uint32_t)p->rcpt;
}

/* Pools are counted by the workers between refreshes and re-derived from
 * the database at each refresh (so a lost count heals within
 * cache.refresh_interval): one scan of ratelimits for all pools. */
static bool refresh_pools(MYSQL *db, struct shm *shm, const struct domain_default *rows, size_t n, char *err,
                          size_t errsize)
{
    struct pool_sums s = {xcalloc(n + 1, sizeof(struct pool_sum)), 0};
    for (size_t i = 0; i < n; i++)
        if (rows[i].has_pool)
            s.pools[s.n++].domain = &rows[i];
    if (s.n == 0) {
        free(s.pools);
        return true;
    }
    qsort(s.pools, s.n, sizeof(*s.pools), pool_by_name);
    const char *sql = "SELECT q.`domain`, SUM(r.`msg_counter`), SUM(r.`rcpt_counter`) FROM `ratelimits` r "
                      "JOIN `domain_quotas` q ON q.`pool_quota` IS NOT NULL "
                      "AND q.`domain` = SUBSTRING_INDEX(r.`sender`, '@', -1) "
                      "WHERE r.`sender` LIKE '%@%' GROUP BY q.`domain`";
    MYSQL_RES *res;
    MYSQL_ROW row;
    if (mysql_real_query(db, sql, strlen(sql)) != 0 || (res = mysql_store_result(db)) == NULL) {
        snprintf(err, errsize, "domain pools: %s", mysql_error(db));
        free(s.pools);
        return false;
    }
    while ((row = mysql_fetch_row(res)) != NULL) {
        char name[DOMAIN_NAME_SIZE];
        size_t len = strlen(row[0]);
        if (len >= sizeof(name))
            continue;
        ascii_fold(name, row[0], len);
        struct pool_sum *p = find_pool(&s, name);
        if (p) {
            p->msg = strtoull(row[1], NULL, 10);
            p->rcpt = strtoull(row[2], NULL, 10);
        }
    }
    mysql_free_result(res);
    cache_foreach(&shm->cache, add_unwritten, &s);
    for (size_t i = 0; i < s.n; i++) {
        char key[CACHE_KEY_SIZE];
        domains_pool_key(s.pools[i].domain, key);
        cache_apply(&shm->cache, key, true, set_pool_locked, &s.pools[i]);
    }
    free(s.pools);
    return true;
}

bool cachesync_load_domains(MYSQL *db, struct shm *shm, char *err, size_t errsize)
{
    MYSQL_RES *res;
    MYSQL_ROW row;
    const char *sql = "SELECT `domain`, COALESCE(`quota`, -1), COALESCE(`msg_quota`, -1), "
                      "COALESCE(`rcpt_quota`, -1), COALESCE(`block_action` + 0, 0), COALESCE(`pool_quota`, -1) "
                      "FROM `domain_quotas`";

    if (mysql_real_query(db, sql, strlen(sql)) != 0 || (res = mysql_store_result(db)) == NULL) {
        snprintf(err, errsize, "domain_quotas: %s", mysql_error(db));
        return false;
    }
    size_t n = (size_t)mysql_num_rows(res), k = 0, too_long = 0;
    struct domain_default *rows = xcalloc(n + 1, sizeof(*rows));
    while ((row = mysql_fetch_row(res)) != NULL) {
        struct domain_default *d = &rows[k];
        if (strlen(row[0]) >= DOMAIN_NAME_SIZE) {
            too_long++;
            continue;
        }
        ascii_fold(d->name, row[0], strlen(row[0]));
        long long quota = strtoll(row[1], NULL, 10), msg = strtoll(row[2], NULL, 10), rcpt = strtoll(row[3], NULL, 10);
        unsigned long action = strtoul(row[4], NULL, 10);
        d->has_quota = quota >= 0;
        d->quota = quota >= 0 ? (uint32_t)quota : 0;
        d->quota_own = (uint8_t)((msg >= 0 ? QUOTA_OWN_MSG : 0) | (rcpt >= 0 ? QUOTA_OWN_RCPT : 0));
        d->msg_quota = msg >= 0 ? (uint32_t)msg : 0;
        d->rcpt_quota = rcpt >= 0 ? (uint32_t)rcpt : 0;
        d->block_action = action < BLOCK_ACTIONS ? (uint8_t)action : BLOCK_ACTION_DEFAULT;
        long long pool = strtoll(row[5], NULL, 10);
        d->has_pool = pool >= 0;
        d->pool_quota = pool >= 0 ? (uint32_t)pool : 0;
        k++;
    }
    mysql_free_result(res);
    size_t skipped;
    domains_replace(&shm->domains, rows, k, &skipped);
    bool pools_ok = refresh_pools(db, shm, rows, k, err, errsize);
    free(rows);
    if (too_long || skipped)
        log_warning("domain_quotas: %zu domain(s) ignored (%zu longer than %d bytes, %zu over cache.domains = %u)",
                    too_long + skipped, too_long, DOMAIN_NAME_SIZE - 1, skipped, shm->domains.sh->slots / 2);
    return pools_ok;
}

struct window_rebuild {
    struct cache *cache;
    const struct window_spec *spec;
    size_t index;
    int64_t at_us;
    uint32_t count;
};

static void rebuild_locked(struct cache_entry *e, bool created, void *arg)
{
    const struct window_rebuild *r = arg;
    (void)created;
    struct window_counts *w = (struct window_counts *)cache_extra(r->cache, e) + r->index;
    window_add(w, r->spec, r->at_us, r->count);
}

bool cachesync_rebuild_windows(MYSQL *db, struct shm *shm, const struct rg_config *cfg, char *err, size_t errsize)
{
    size_t n = windows_usable(cfg->quota.windows.count, cache_windows_size(&shm->cache));
    for (size_t i = 0; i < n; i++) {
        const struct window_spec *s = &cfg->window_specs[i];
        int64_t bucket_us = window_bucket_us(s);
        char sql[600];
        /* Per sender and bucket, oldest first (a window only moves forward). */
        snprintf(sql, sizeof(sql),
                 "SELECT `sender`, FLOOR(UNIX_TIMESTAMP(`created_at`) * 1000000 / %lld), COUNT(*) FROM `messages` "
                 "WHERE `created_at` >= NOW() - INTERVAL %lld SECOND%s GROUP BY `sender`, 2 ORDER BY `sender`, 2",
                 (long long)bucket_us, (long long)(s->seconds + bucket_us / 1000000 + 1),
                 cfg->quota.count_blocked ? "" : " AND `blocked` = 0");
        MYSQL_RES *res;
        MYSQL_ROW row;
        if (mysql_real_query(db, sql, strlen(sql)) != 0 || (res = mysql_use_result(db)) == NULL) {
            snprintf(err, errsize, "sliding windows: %s", mysql_error(db));
            return false;
        }
        while ((row = mysql_fetch_row(res)) != NULL) {
            char key[CACHE_KEY_SIZE];
            struct window_rebuild r = {.cache = &shm->cache, .spec = s, .index = i,
                                       .at_us = strtoll(row[1], NULL, 10) * bucket_us + bucket_us / 2,
                                       .count = (uint32_t)strtoul(row[2], NULL, 10)};
            cache_make_key(row[0], key);
            cache_apply(&shm->cache, key, false, rebuild_locked, &r);     /* preloaded senders only */
        }
        bool ok = mysql_errno(db) == 0;
        if (!ok)
            snprintf(err, errsize, "sliding windows: %s", mysql_error(db));
        mysql_free_result(res);
        if (!ok)
            return false;
    }
    return true;
}

bool cachesync_preload(MYSQL *db, struct shm *shm)
{
    char sql[1024], err[512];
    unsigned long loaded;

    snprintf(sql, sizeof(sql), "SELECT " CACHESYNC_COLUMNS " FROM `ratelimits` ORDER BY `updated_at` DESC LIMIT %u",
             shm->cache.sh->capacity);
    if (!cachesync_load_domains(db, shm, err, sizeof(err)))
        log_error("preload: %s; starting without domain defaults", err);
    if (!for_each_row(db, shm, sql, ROWS_LOAD, 0, &loaded, NULL, NULL, err, sizeof(err))) {
        log_error("preload: %s; starting with what was loaded", err);
        return false;
    }
    log_info("preload: %lu sender(s) loaded into the cache", loaded);
    return true;
}

bool cachesync_refresh_page(MYSQL *db, struct shm *shm, uint64_t after_id, unsigned page_rows, uint16_t round,
                            unsigned long *read, uint64_t *last_id, char *err, size_t errsize)
{
    char sql[1024];
    unsigned long applied;

    *last_id = after_id;
    /* Rows made by an operator (set-quota, an INSERT) reach the cache here,
     * so the sender's first message is decided on its own quota. */
    snprintf(sql, sizeof(sql), "SELECT " CACHESYNC_COLUMNS " FROM `ratelimits` WHERE `id` > %llu ORDER BY `id` LIMIT %u",
             (unsigned long long)after_id, page_rows);
    bool ok = for_each_row(db, shm, sql, ROWS_LOAD_IF_ROOM, round, &applied, read, last_id, err, errsize);
    mysql_commit(db);       /* end the read's transaction: the next page sees newer rows */
    return ok;
}

bool cachesync_id_range(MYSQL *db, uint64_t *lo, uint64_t *hi, char *err, size_t errsize)
{
    static const char sql[] = "SELECT COALESCE(MIN(`id`), 1), COALESCE(MAX(`id`), 0) FROM `ratelimits`";
    if (mysql_real_query(db, sql, strlen(sql)) != 0) {
        snprintf(err, errsize, "%s", mysql_error(db));
        return false;
    }
    MYSQL_RES *res = mysql_store_result(db);
    MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
    bool ok = row != NULL && row[0] != NULL && row[1] != NULL;
    if (ok) {
        *lo = strtoull(row[0], NULL, 10);
        *hi = strtoull(row[1], NULL, 10);
    } else
        snprintf(err, errsize, "no id range: %s", mysql_error(db));
    mysql_free_result(res);
    mysql_commit(db);       /* end the read's transaction */
    return ok;
}

/* The entries a pass did not find: their rows were there when it began
 * (id at most max_id) and are not now, or they were made again after
 * their page was read. At most GONE_MAX a pass; the rest the next one. */
#define GONE_MAX 4096

struct gone_candidates {
    uint16_t round;
    uint64_t max_id;
    uint64_t ids[GONE_MAX];     /* sorted; once checked, only the ids no row has */
    size_t n;
};

static bool not_found(const struct cache_entry *e, const struct gone_candidates *g)
{
    return e->db_id != 0 && e->db_id <= g->max_id && e->seen != g->round && e->unwritten_msg == 0 &&
           e->unwritten_rcpt == 0;
}

static void collect_not_found(struct cache_entry *e, bool created, void *arg)
{
    struct gone_candidates *g = arg;
    (void)created;
    if (g->n < GONE_MAX && not_found(e, g))
        g->ids[g->n++] = e->db_id;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool row_gone(const struct cache_entry *e, void *arg)
{
    const struct gone_candidates *g = arg;
    return not_found(e, g) && bsearch(&e->db_id, g->ids, g->n, sizeof(uint64_t), cmp_u64) != NULL;
}

/* Keep in g->ids (sorted) only the ids that are no row now. */
static bool keep_gone(MYSQL *db, struct gone_candidates *g, char *err, size_t errsize)
{
    size_t size = 64 + g->n * 21;
    char *sql = xmalloc(size);
    size_t len = (size_t)snprintf(sql, size, "SELECT `id` FROM `ratelimits` WHERE `id` IN (");
    for (size_t i = 0; i < g->n; i++)
        len += (size_t)snprintf(sql + len, size - len, "%s%llu", i ? "," : "", (unsigned long long)g->ids[i]);
    snprintf(sql + len, size - len, ")");
    bool ok = mysql_real_query(db, sql, strlen(sql)) == 0;
    free(sql);
    MYSQL_RES *res = ok ? mysql_store_result(db) : NULL;
    if (res == NULL) {
        snprintf(err, errsize, "%s", mysql_error(db));
        return false;
    }
    uint64_t *present = xcalloc(g->n, sizeof(uint64_t));
    size_t n_present = 0;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL && n_present < g->n)
        present[n_present++] = strtoull(row[0], NULL, 10);
    mysql_free_result(res);
    mysql_commit(db);
    qsort(present, n_present, sizeof(uint64_t), cmp_u64);
    size_t kept = 0;
    for (size_t i = 0; i < g->n; i++)
        if (bsearch(&g->ids[i], present, n_present, sizeof(uint64_t), cmp_u64) == NULL)
            g->ids[kept++] = g->ids[i];
    g->n = kept;        /* still sorted */
    free(present);
    return true;
}

bool cachesync_sweep_gone(MYSQL *db, struct shm *shm, uint16_t round, uint64_t max_id, uint32_t *dropped, char *err,
                          size_t errsize)
{
    struct gone_candidates *g = xcalloc(1, sizeof(*g));
    g->round = round;
    g->max_id = max_id;
    *dropped = 0;
    cache_foreach(&shm->cache, collect_not_found, g);
    bool ok = true;
    if (g->n > 0) {
        qsort(g->ids, g->n, sizeof(uint64_t), cmp_u64);
        ok = keep_gone(db, g, err, errsize);
        if (ok && g->n > 0)
            *dropped = cache_sweep(&shm->cache, row_gone, g);
    }
    free(g);
    return ok;
}

unsigned writer_lane(const char *sender)
{
    char key[CACHE_KEY_SIZE];
    cache_make_key(sender, key);
    return writer_lane_of_hash(fnv1a64(key, strlen(key)));
}

void progress_row_name(const char *writer, unsigned lane, char *buf, size_t size)
{
    if (lane == 0)
        snprintf(buf, size, "%s", writer);
    else
        snprintf(buf, size, "%s#%u", writer, lane + 1);
}

static bool read_progress_rows(MYSQL *db, const char *writer, struct progress p[WRITER_LANES], char *err,
                               size_t errsize);

bool cachesync_read_progress(MYSQL *db, const char *writer, struct progress p[WRITER_LANES], char *err,
                             size_t errsize)
{
    if (strlen(writer) > 240) {
        snprintf(err, errsize, "writer name too long");
        return false;
    }
    /* A causal read on Galera: a round this host committed through a node
     * that died after replicating it may not be applied here yet; read
     * before it, the progress would have those records written twice.
     * (A server without the variable ignores the failed SET.) */
    if (mysql_query(db, "SET SESSION wsrep_sync_wait = 1") != 0) {
        /* not MariaDB: no Galera either */
    }
    bool ok = read_progress_rows(db, writer, p, err, errsize);
    if (mysql_query(db, "SET SESSION wsrep_sync_wait = 0") != 0) {
    }
    return ok;
}

static bool read_progress_rows(MYSQL *db, const char *writer, struct progress p[WRITER_LANES], char *err,
                               size_t errsize)
{
    for (unsigned lane = 0; lane < WRITER_LANES; lane++) {
        char name[256], escaped[520], sql[700];
        MYSQL_RES *res;
        progress_row_name(writer, lane, name, sizeof(name));
        mysql_real_escape_string(db, escaped, name, (unsigned long)strlen(name));
        snprintf(sql, sizeof(sql), "SELECT `epoch`, `last_seq` FROM `rateguard_progress` WHERE `writer` = '%s'",
                 escaped);
        if (mysql_real_query(db, sql, strlen(sql)) != 0 || (res = mysql_store_result(db)) == NULL) {
            snprintf(err, errsize, "%s", mysql_error(db));
            return false;
        }
        MYSQL_ROW row = mysql_fetch_row(res);
        if (row) {
            p[lane].epoch = strtoull(row[0], NULL, 10);
            p[lane].seq = strtoull(row[1], NULL, 10);
        } else
            p[lane] = lane == 0 ? (struct progress){0, 0} : p[0];
        mysql_free_result(res);
    }
    return true;
}

struct replay {
    const struct msg_record *rec;
    const struct rg_config *cfg;
    struct cache *cache;
};

static void replay_locked(struct cache_entry *e, bool created, void *arg)
{
    const struct replay *rp = arg;
    const struct msg_record *r = rp->rec;
    /* The sliding windows were rebuilt from the messages rows; this record
     * has none yet. */
    size_t n = windows_usable(rp->cfg->quota.windows.count, cache_windows_size(rp->cache));
    struct window_counts *w = n ? cache_extra(rp->cache, e) : NULL;
    for (size_t i = 0; i < n && r->msg_delta; i++)
        window_add(&w[i], &rp->cfg->window_specs[i], r->created_us, r->msg_delta);
    if (created)
        e->quota = e->quota_reset = r->quota_default;
    if (r->created_us < e->reset_us)
        return;                 /* made before the reset: counts in no period */
    e->msg_counter = quota_sat_add(e->msg_counter, r->msg_delta);
    e->rcpt_counter = quota_sat_add(e->rcpt_counter, r->rcpt_delta);
    e->msg_total = quota_sat_add(e->msg_total, r->msg_delta);
    e->rcpt_total = quota_sat_add(e->rcpt_total, r->rcpt_delta);
    e->unwritten_msg = quota_sat_add(e->unwritten_msg, r->msg_delta);
    e->unwritten_rcpt = quota_sat_add(e->unwritten_rcpt, r->rcpt_delta);
    if (r->notified_set | r->notified_clear) {
        /* Sent (or queued) by the previous run: not to be sent again. */
        uint8_t bits = (uint8_t)((e->block_notified ? NOTIFIED_BLOCK : 0) | (e->warning_notified ? NOTIFIED_WARNING : 0));
        bits = (uint8_t)((bits & ~r->notified_clear) | r->notified_set);
        e->block_notified = (bits & NOTIFIED_BLOCK) != 0;
        e->warning_notified = (bits & NOTIFIED_WARNING) != 0;
        if (e->notify_unwritten < UINT8_MAX)
            e->notify_unwritten++;
    }
}

void cachesync_replay_record(struct shm *shm, const struct rg_config *cfg, const struct msg_record *rec)
{
    char key[CACHE_KEY_SIZE];
    struct replay rp = {.rec = rec, .cfg = cfg, .cache = &shm->cache};
    cache_make_key(rec->sender, key);
    cache_apply(&shm->cache, key, true, replay_locked, &rp);
}

struct reset_arg {
    int64_t boundary_us;
    uint32_t count;
};

static void reset_locked(struct cache_entry *e, bool created, void *arg)
{
    struct reset_arg *a = arg;
    (void)created;
    if (e->reset_us >= a->boundary_us)
        return;
    e->reset_us = a->boundary_us;
    e->msg_counter = e->rcpt_counter = 0;
    e->full_since = 0;
    e->unwritten_msg = e->unwritten_rcpt = 0;
    e->block_notified = e->warning_notified = 0;
    e->notify_unwritten = 0;
    if (!e->locked)
        e->quota = e->quota_reset;
    a->count++;
}

uint32_t cachesync_period_reset(struct shm *shm, int64_t boundary_us)
{
    struct reset_arg a = {.boundary_us = boundary_us, .count = 0};
    cache_foreach(&shm->cache, reset_locked, &a);
    return a.count;
}

bool cachesync_db_reset(MYSQL *db, int64_t boundary_us, long chunk_rows, unsigned long long *reset, char *err,
                        size_t errsize)
{
    char sql[800], at[64], why[512];
    uint64_t lo, hi;

    *reset = 0;
    /* The ids the reset walks: every row there when it begins (a row made
     * later holds counts of the new period only). */
    if (!cachesync_id_range(db, &lo, &hi, why, sizeof(why))) {
        snprintf(err, errsize, "period reset: %s", why);
        return false;
    }
    snprintf(at, sizeof(at), "FROM_UNIXTIME(%lld.%06lld)", (long long)(boundary_us / 1000000),
             (long long)(boundary_us % 1000000));
    for (unsigned long long from = lo; from <= hi; from += (unsigned long long)chunk_rows) {
        snprintf(sql, sizeof(sql),
                 "UPDATE `ratelimits` SET `msg_counter` = 0, `rcpt_counter` = 0, "
                 "`quota` = IF(`quota_locked`, `quota`, `quota_reset`), `reset_at` = %s, `notified` = 0, "
                 "`updated_at` = `updated_at` WHERE `id` >= %llu AND `id` < %llu "
                 "AND (`reset_at` IS NULL OR `reset_at` < %s)", at, from, from + (unsigned long long)chunk_rows, at);
        if (mysql_real_query(db, sql, strlen(sql)) != 0) {
            snprintf(err, errsize, "period reset: %s", mysql_error(db));
            mysql_rollback(db);
            return false;
        }
        my_ulonglong n = mysql_affected_rows(db);
        if (mysql_commit(db) != 0) {
            snprintf(err, errsize, "period reset: commit: %s", mysql_error(db));
            return false;
        }
        *reset += (unsigned long long)n;
    }
    return true;
}
