/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * status.c - formats the status dump. The cache is copied entry by entry
 * under each stripe lock, then sorted and written with no lock held.
 */
#include "status.h"
#include "errqueue.h"
#include "cache.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "minute.h"
#include "quota.h"
#include "rateguard.h"
#include "shm.h"
#include "snapshot.h"
#include "watch.h"
#include "util.h"
#include "windows.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A sender as copied under its lock, with its sliding windows' counts. */
struct sender_copy {
    struct cache_entry e;
    uint32_t windows[WINDOWS_MAX];
    uint8_t episode;            /* the signals of an open hijacked-account episode (watch.h), 0 none */
    uint8_t action;             /* its enum watch_action (WATCH_LOCK while locked) */
    uint32_t episode_since;
};

struct top_pick;

struct snapshot {
    struct sender_copy *rows;
    size_t count, size;
    struct cache *cache;
    const struct rg_config *cfg;
    size_t n_windows;
    int64_t now_us;
    const struct top_pick *top;     /* a top dump's senders, or NULL */
};

/* Under the entry's lock: the entry with its windows' counts and its
 * watch's episode, into *c. */
static void copy_sender(const struct snapshot *s, struct cache_entry *e, struct sender_copy *c)
{
    c->e = *e;
    struct window_counts *w = s->n_windows ? cache_extra(s->cache, e) : NULL;
    for (size_t i = 0; i < s->n_windows; i++)
        c->windows[i] = window_count(&w[i], &s->cfg->window_specs[i], s->now_us);
    const struct login_watch *lw = watch_of(s->cache, e);
    bool open = lw && watch_episode_open(lw, s->cfg, (uint32_t)(s->now_us / 1000000));
    c->episode = open ? lw->episode : 0;
    c->action = lw && lw->locked ? WATCH_LOCK : watch_action_of(s->cfg, c->episode);
    c->episode_since = open ? lw->episode_since : 0;
}

static void collect(struct cache_entry *e, bool created, void *arg)
{
    struct snapshot *s = arg;
    (void)created;
    if (s->count == s->size) {
        s->size = s->size ? s->size * 2 : 256;
        s->rows = xrealloc(s->rows, s->size * sizeof(*s->rows));
    }
    copy_sender(s, e, &s->rows[s->count++]);
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const struct sender_copy *)a)->e.key, ((const struct sender_copy *)b)->e.key);
}

/* Why the sender's next message (one recipient) would be refused, or NULL:
 * "locked" (quota 0 kept across resets: an operator's lock), "quota", or
 * "window" (one of quota.windows is full). A domain pool that is full is
 * not seen here: it is decided against the pool's own entry. */
static const char *refusal_reason(const struct rg_config *cfg, const struct sender_copy *c, size_t n_windows,
                                  struct limits l)
{
    const struct cache_entry *e = &c->e;
    if (c->action >= WATCH_DEFER_IF_PERMIT)     /* an episode's refusing action, or its lock */
        return "signal";
    if (quota_next_refused(l.msg, l.rcpt, e->msg_counter, e->rcpt_counter))
        return e->locked && l.msg == 0 ? "locked" : "quota";
    for (size_t i = 0; i < n_windows; i++)
        if (quota_sat_add(c->windows[i], 1) > cfg->window_specs[i].limit)
            return "window";
    return NULL;
}

/* The status column: "ok", "full" (the next message is refused, none was
 * yet), "BLOCKED" (messages were refused in this period), "SIGNAL" (in a
 * hijacked-account episode, whatever its action). */
static const char *state_of(struct shm *shm, const struct rg_config *cfg, const struct sender_copy *c,
                            size_t n_windows)
{
    struct limits l = limits_of_entry(&shm->domains, &c->e);
    if (c->episode || c->action == WATCH_LOCK)
        return "SIGNAL";
    return limits_exceeded(&c->e, l) ? "BLOCKED" : refusal_reason(cfg, c, n_windows, l) ? "full" : "ok";
}

/* Stress mode (stress.c): whether it is on, and what it has done since start. */
static void write_stress_text(FILE *f, struct shm *shm)
{
    int64_t since = shm->hdr->stress_since;
    if (__atomic_load_n(&shm->hdr->stress, __ATOMIC_ACQUIRE) && since)
        fprintf(f, "stress: ON for %ld s", (long)(time(NULL) - since));
    else
        fputs("stress: off", f);
    fprintf(f, "; %llu episode(s), %llu idle connection(s) closed, %llu timed out\n",
            (unsigned long long)STAT_GET(shm, stress_episodes), (unsigned long long)STAT_GET(shm, stress_idle_closed),
            (unsigned long long)STAT_GET(shm, stress_timeouts));
}

/* The hijacked-account signals (watch.h): episodes this host claimed, by
 * the signal that opened them, and the messages their actions took. */
static void write_signals_text(FILE *f, struct shm *shm)
{
    fputs("signals: episodes", f);
    for (int i = 0; i < 4; i++)
        fprintf(f, " %s %llu", metrics_signal_names[i], (unsigned long long)STAT_GET(shm, signal_episodes[i]));
    fprintf(f, ", %llu ended; %llu message(s) held, %llu refused; %llu without a usable client_address\n",
            (unsigned long long)STAT_GET(shm, signal_ended), (unsigned long long)STAT_GET(shm, signal_held),
            (unsigned long long)STAT_GET(shm, signal_refused), (unsigned long long)STAT_GET(shm, signal_bad_address));
}

static void write_signals_json(FILE *f, struct shm *shm)
{
    fputs("\"signals\":{\"episodes\":{", f);
    for (int i = 0; i < 4; i++)
        fprintf(f, "%s\"%s\":%llu", i ? "," : "", metrics_signal_names[i],
                (unsigned long long)STAT_GET(shm, signal_episodes[i]));
    fprintf(f, "},\"ended\":%llu,\"held\":%llu,\"refused\":%llu,\"bad_address\":%llu},",
            (unsigned long long)STAT_GET(shm, signal_ended), (unsigned long long)STAT_GET(shm, signal_held),
            (unsigned long long)STAT_GET(shm, signal_refused), (unsigned long long)STAT_GET(shm, signal_bad_address));
}

static void write_text(FILE *f, const struct rg_config *cfg, struct shm *shm, const struct snapshot *s,
                       struct pool_counts p, time_t started)
{
    fprintf(f, "rateguard %s, pid %ld, up %ld s\n", RATEGUARD_VERSION, (long)getpid(),
            (long)(time(NULL) - started));
    fprintf(f, "%-40s %10s %10s %10s %10s %10s %-8s %s\n", "sender", "quota", "messages", "recipients",
            "msg_total", "rcpt_total", "state", "unwritten");
    for (size_t i = 0; i < s->count; i++) {
        const struct cache_entry *e = &s->rows[i].e;
        char key[4 * CACHE_KEY_SIZE];
        text_escape(key, sizeof(key), e->key, CACHE_KEY_SIZE);     /* the terminal obeys no sender */
        fprintf(f, "%-40s %10u %10u %10u %10u %10u %-8s %u/%u\n", key, e->quota, e->msg_counter,
                e->rcpt_counter, e->msg_total, e->rcpt_total, state_of(shm, cfg, &s->rows[i], s->n_windows),
                e->unwritten_msg, e->unwritten_rcpt);
    }
    fprintf(f, "workers: %u busy, %u idle, %u running (min %ld, max %ld)\n", p.busy, p.idle, p.running,
            cfg->workers.min, cfg->workers.max);
    fputs("requests:", f);
    for (size_t i = 0; i < metrics_request_count(); i++)
        fprintf(f, "%s %llu %s", i ? "," : "", metrics_request_value(shm, i), metrics_request_name(i));
    fputc('\n', f);
    fprintf(f, "database: %llu writes pending, %llu written, %llu failed transactions, %llu conflicts retried\n",
            (unsigned long long)wqueue_depth(&shm->queue), (unsigned long long)STAT_GET(shm, db_written),
            (unsigned long long)STAT_GET(shm, db_errors), (unsigned long long)STAT_GET(shm, db_conflicts));
    fprintf(f, "cache: %u of %u entries used\n", cache_used(&shm->cache), shm->cache.sh->capacity);
    snapshot_status_text(f, shm);
    struct errqueue_stats es;
    if (cfg->sentry_dsn.key[0] && errqueue_stats(&es))
        fprintf(f, "sentry: %llu event(s) queued, %llu sent, %llu failed, %llu repeat(s) suppressed, "
                "%llu dropped (queue full)\n", (unsigned long long)es.queued, (unsigned long long)es.sent,
                (unsigned long long)es.failed, (unsigned long long)es.suppressed, (unsigned long long)es.dropped);
    write_stress_text(f, shm);
    write_signals_text(f, shm);
}

static void write_json(FILE *f, const struct rg_config *cfg, struct shm *shm, const struct snapshot *s,
                       struct pool_counts p, time_t started)
{
    fprintf(f, "{\"version\":\"%s\",\"pid\":%ld,\"uptime\":%ld,\"senders\":[", RATEGUARD_VERSION,
            (long)getpid(), (long)(time(NULL) - started));
    for (size_t i = 0; i < s->count; i++) {
        const struct cache_entry *e = &s->rows[i].e;
        struct limits l = limits_of_entry(&shm->domains, e);
        fprintf(f, "%s{\"sender\":", i ? "," : "");
        json_write_string(f, e->key);
        fprintf(f, ",\"quota\":%u,\"quota_reset\":%u,\"quota_locked\":%s,\"msg_counter\":%u,"
                   "\"rcpt_counter\":%u,\"msg_total\":%u,\"rcpt_total\":%u,\"blocked\":%s,"
                   "\"unwritten_msg\":%u,\"unwritten_rcpt\":%u,\"next_refused\":%s",
                e->quota, e->quota_reset, e->locked ? "true" : "false", e->msg_counter, e->rcpt_counter,
                e->msg_total, e->rcpt_total, limits_exceeded(e, l) ? "true" : "false", e->unwritten_msg,
                e->unwritten_rcpt, refusal_reason(cfg, &s->rows[i], s->n_windows, l) ? "true" : "false");
        /* The limits of migration 004, after PolicydRateGuard's fields. */
        if (e->quota_own & QUOTA_OWN_MSG)
            fprintf(f, ",\"msg_quota\":%u", e->msg_quota);
        if (e->quota_own & QUOTA_OWN_RCPT)
            fprintf(f, ",\"rcpt_quota\":%u", e->rcpt_quota);
        if (e->block_action != BLOCK_ACTION_DEFAULT)
            fprintf(f, ",\"block_action\":%u", e->block_action);
        for (size_t w = 0; w < s->n_windows; w++)
            fprintf(f, "%s%u%s", w ? "," : ",\"windows\":[", s->rows[i].windows[w], w + 1 == s->n_windows ? "]" : "");
        if (s->rows[i].episode || s->rows[i].action == WATCH_LOCK) {
            char names[64];
            fprintf(f, ",\"signal\":\"%s\",\"signal_action\":\"%s\"",
                    watch_names(s->rows[i].episode, names, sizeof(names)), watch_action_names[s->rows[i].action]);
        }
        fputc('}', f);
    }
    fprintf(f, "],\"workers\":{\"busy\":%u,\"idle\":%u,\"running\":%u,\"min\":%ld,\"max\":%ld},", p.busy,
            p.idle, p.running, cfg->workers.min, cfg->workers.max);
    fputs("\"requests\":{", f);
    for (size_t i = 0; i < metrics_request_count(); i++)
        fprintf(f, "%s\"%s\":%llu", i ? "," : "", metrics_request_name(i), metrics_request_value(shm, i));
    fputs("},", f);
    fprintf(f, "\"database\":{\"pending\":%llu,\"written\":%llu,\"failed_transactions\":%llu,\"conflicts\":%llu},",
            (unsigned long long)wqueue_depth(&shm->queue), (unsigned long long)STAT_GET(shm, db_written),
            (unsigned long long)STAT_GET(shm, db_errors), (unsigned long long)STAT_GET(shm, db_conflicts));
    fprintf(f, "\"stress\":{\"active\":%s,\"episodes\":%llu,\"idle_closed\":%llu,\"timeouts\":%llu},",
            __atomic_load_n(&shm->hdr->stress, __ATOMIC_ACQUIRE) ? "true" : "false",
            (unsigned long long)STAT_GET(shm, stress_episodes), (unsigned long long)STAT_GET(shm, stress_idle_closed),
            (unsigned long long)STAT_GET(shm, stress_timeouts));
    write_signals_json(f, shm);
    fprintf(f, "\"cache\":{\"used\":%u,\"entries\":%u}", cache_used(&shm->cache), shm->cache.sh->capacity);
    snapshot_status_json(f, shm);
    fprintf(f, ",\"writer_pid\":%ld,\"metrics_pid\":%ld}\n", (long)shm->hdr->writer_pid,
            (long)shm->hdr->metrics_pid);
}

/* Prometheus text format (for node_exporter's textfile collector): what
 * /metrics serves, without its senders. */
static void write_prometheus(FILE *f, const struct rg_config *cfg, struct shm *shm, const struct snapshot *s,
                             struct pool_counts p, time_t started)
{
    (void)cfg;
    (void)s;
    (void)p;
    (void)started;
    metrics_write_prometheus(f, shm, 0);
}

/* `rateguard blocked`: the senders whose next message would be refused,
 * why, and since when (the moment this daemon saw the quota filled; 0
 * when it did not: a quota lowered by an operator, counts read back from
 * the database at start, or a sliding window, whose fill has no moment). */
struct refused {
    const struct cache_entry *e;
    const char *why;
    struct limits limits;
    uint32_t since;
};

/* The next refused sender from row *i on (advancing *i past it), or false. */
static bool next_refused(struct shm *shm, const struct rg_config *cfg, const struct snapshot *s, size_t *i,
                         struct refused *r)
{
    for (; *i < s->count; (*i)++) {
        const struct sender_copy *c = &s->rows[*i];
        r->e = &c->e;
        r->limits = limits_of_entry(&shm->domains, r->e);
        r->why = refusal_reason(cfg, c, s->n_windows, r->limits);
        if (r->why == NULL)
            continue;
        r->since = strcmp(r->why, "signal") == 0   ? c->episode_since
                   : strcmp(r->why, "window") != 0 ? r->e->full_since
                                                   : 0;
        (*i)++;
        return true;
    }
    return false;
}

static void write_blocked_text(FILE *f, const struct rg_config *cfg, struct shm *shm, const struct snapshot *s,
                               struct pool_counts p, time_t started)
{
    (void)p;
    (void)started;
    size_t n = 0;
    struct refused r;
    fprintf(f, "%-40s %-7s %12s %12s %s\n", "sender", "reason", "messages", "recipients", "since");
    for (size_t i = 0; next_refused(shm, cfg, s, &i, &r); n++) {
        char key[4 * CACHE_KEY_SIZE], msgs[24], rcpts[24], since[32] = "-";
        text_escape(key, sizeof(key), r.e->key, CACHE_KEY_SIZE);
        snprintf(msgs, sizeof(msgs), "%u/%u", r.e->msg_counter, r.limits.msg);
        snprintf(rcpts, sizeof(rcpts), "%u/%u", r.e->rcpt_counter, r.limits.rcpt);
        time_t t = (time_t)r.since;
        struct tm tm;
        if (t && localtime_r(&t, &tm))
            strftime(since, sizeof(since), "%Y-%m-%d %H:%M:%S", &tm);
        fprintf(f, "%-40s %-7s %12s %12s %s\n", key, r.why, msgs, rcpts, since);
    }
    fprintf(f, "%zu of %zu cached sender(s) would be refused now\n", n, s->count);
}

static void write_blocked_json(FILE *f, const struct rg_config *cfg, struct shm *shm, const struct snapshot *s,
                               struct pool_counts p, time_t started)
{
    (void)p;
    (void)started;
    size_t n = 0;
    struct refused r;
    fputs("{\"blocked\":[", f);
    for (size_t i = 0; next_refused(shm, cfg, s, &i, &r); n++) {
        fprintf(f, "%s{\"sender\":", n ? "," : "");
        json_write_string(f, r.e->key);
        fprintf(f, ",\"reason\":\"%s\",\"msg_counter\":%u,\"msg_limit\":%u,\"rcpt_counter\":%u,"
                   "\"rcpt_limit\":%u,\"quota_locked\":%s,\"refused_this_period\":%s,\"since\":",
                r.why, r.e->msg_counter, r.limits.msg, r.e->rcpt_counter, r.limits.rcpt,
                r.e->locked ? "true" : "false", limits_exceeded(r.e, r.limits) ? "true" : "false");
        if (r.since)
            fprintf(f, "%u}", r.since);
        else
            fputs("null}", f);
    }
    fprintf(f, "],\"senders\":%zu}\n", s->count);
}

/*
 * `rateguard top`: the figures of its header and the first senders in one
 * ordering, chosen while walking the cache. Only `rows` of them are kept
 * (a min-heap whose root is the lowest ranked kept), so a second's dump
 * costs one walk and a comparison per sender, and copies a sender only
 * when it ranks among the first: not a sort of every cached sender.
 * Ties go to the larger count, then to the key in byte order, so the
 * listing is the same from one dump to the next.
 */
struct top_rank {
    uint8_t blocked;            /* refused in this period, or in a signal's episode or lock */
    uint32_t minute;            /* messages in the last minute (minute.h) */
    uint32_t msgs;              /* msg_counter */
    uint64_t use;               /* per mille of the nearest limit; UINT32_MAX: a limit of 0 */
};

struct top_row {
    struct top_rank r;
    struct sender_copy c;
    struct limits l;
};

struct top_pick {
    enum status_format order;
    struct shm *shm;
    const struct snapshot *s;
    struct top_row *rows;
    size_t count, max;
};

static const char *top_order_name(enum status_format order)
{
    return order == STATUS_TOP_QUOTA ? "quota" : order == STATUS_TOP_BLOCKED ? "blocked" : "messages";
}

/* > 0 when a ranks before b in the ordering, < 0 after, 0 the same sender. */
static int top_cmp(enum status_format order, const struct top_rank *a, const char *akey, const struct top_rank *b,
                   const char *bkey)
{
    if (order == STATUS_TOP_BLOCKED && a->blocked != b->blocked)
        return a->blocked > b->blocked ? 1 : -1;
    if (order == STATUS_TOP_QUOTA && a->use != b->use)
        return a->use > b->use ? 1 : -1;
    if (a->minute != b->minute)
        return a->minute > b->minute ? 1 : -1;
    if (a->msgs != b->msgs)
        return a->msgs > b->msgs ? 1 : -1;
    return -strcmp(akey, bkey);
}

static int row_cmp(const struct top_pick *t, size_t i, size_t j)
{
    return top_cmp(t->order, &t->rows[i].r, t->rows[i].c.e.key, &t->rows[j].r, t->rows[j].c.e.key);
}

static void row_swap(struct top_pick *t, size_t i, size_t j)
{
    struct top_row tmp = t->rows[i];
    t->rows[i] = t->rows[j];
    t->rows[j] = tmp;
}

/* The heap's order restored below row i (a row ranks after its children). */
static void heap_down(struct top_pick *t, size_t i)
{
    for (;;) {
        size_t low = i, l = 2 * i + 1, r = l + 1;
        if (l < t->count && row_cmp(t, l, low) < 0)
            low = l;
        if (r < t->count && row_cmp(t, r, low) < 0)
            low = r;
        if (low == i)
            return;
        row_swap(t, i, low);
        i = low;
    }
}

static void heap_up(struct top_pick *t, size_t i)
{
    while (i > 0 && row_cmp(t, i, (i - 1) / 2) < 0) {
        row_swap(t, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

/* Per mille of the limit used; a limit of 0 refuses every message. */
static uint64_t permille(uint32_t used, uint32_t limit)
{
    return limit ? (uint64_t)used * 1000 / limit : UINT32_MAX;
}

/* Per mille of the nearest limit, messages or recipients. */
static uint64_t use_of(const struct cache_entry *e, struct limits l)
{
    uint64_t m = permille(e->msg_counter, l.msg), r = permille(e->rcpt_counter, l.rcpt);
    return m > r ? m : r;
}

/* Under the entry's lock: what the ordering compares (limits looked up
 * only when it needs them). */
static struct top_rank rank_of(const struct top_pick *t, const struct cache_entry *e)
{
    struct top_rank r = {.minute = minute_estimate(&e->last_minute, t->s->now_us), .msgs = e->msg_counter};
    if (t->order == STATUS_TOP_MESSAGES)
        return r;
    struct limits l = limits_of_entry(&t->shm->domains, e);
    if (t->order == STATUS_TOP_QUOTA) {
        r.use = use_of(e, l);
        return r;
    }
    const struct login_watch *lw = watch_of(t->s->cache, e);
    r.blocked = limits_exceeded(e, l) ||
                (lw && (lw->locked || watch_episode_open(lw, t->s->cfg, (uint32_t)(t->s->now_us / 1000000))));
    return r;
}

/* A cache_foreach() callback: keep the sender if it ranks among the first. */
static void top_visit(struct cache_entry *e, bool created, void *arg)
{
    struct top_pick *t = arg;
    (void)created;
    struct top_rank r = rank_of(t, e);
    bool full = t->count == t->max;
    if (full && top_cmp(t->order, &r, e->key, &t->rows[0].r, t->rows[0].c.e.key) <= 0)
        return;
    size_t at = full ? 0 : t->count++;      /* full: it replaces the lowest ranked kept */
    t->rows[at].r = r;
    copy_sender(t->s, e, &t->rows[at].c);
    t->rows[at].l = limits_of_entry(&t->shm->domains, e);
    t->rows[at].r.use = use_of(e, t->rows[at].l);     /* shown in every ordering; ranks only in QUOTA's */
    if (full)
        heap_down(t, 0);
    else
        heap_up(t, at);
}

/* The first `rows` senders in the ordering, first first, into *t. */
static void top_select(struct top_pick *t, struct shm *shm, const struct snapshot *s, enum status_format order,
                       unsigned rows)
{
    *t = (struct top_pick){.order = order, .shm = shm, .s = s, .max = rows ? rows : 1};
    t->rows = xcalloc(t->max, sizeof(*t->rows));
    cache_foreach(&shm->cache, top_visit, t);
    /* heap order to listing order: the lowest ranked moved to the end, one by one */
    size_t kept = t->count;
    while (t->count > 1) {
        row_swap(t, 0, t->count - 1);
        t->count--;
        heap_down(t, 0);
    }
    t->count = kept;
}

/* The header's figures, one line per kind, then a line per sender:
 * "sender MINUTE MESSAGES MSG_LIMIT RECIPIENTS RCPT_LIMIT USE STATE KEY"
 * with the key escaped (text_escape) and last, so it may hold spaces.
 * Read by top.c, not meant for people. */
static void write_top(FILE *f, const struct rg_config *cfg, struct shm *shm, const struct snapshot *s,
                      struct pool_counts p, time_t started)
{
    const struct top_pick *t = s->top;
    fprintf(f, "top %d %s %zu\ntime %lld\nuptime %ld\npid %ld\nrequests", STATUS_TOP_VERSION,
            top_order_name(t->order), t->max, (long long)s->now_us, (long)(time(NULL) - started), (long)getpid());
    for (size_t i = 0; i < metrics_request_count(); i++)
        fprintf(f, " %s %llu", metrics_request_name(i), metrics_request_value(shm, i));
    fprintf(f, "\nworkers %u %u %u %ld %ld\n", p.busy, p.idle, p.running, cfg->workers.min, cfg->workers.max);
    fprintf(f, "database %llu %lld %d\n", (unsigned long long)wqueue_depth(&shm->queue),
            (long long)metrics_write_lag_us(shm) / 1000, __atomic_load_n(&shm->hdr->db_up, __ATOMIC_ACQUIRE) ? 1 : 0);
    int64_t since = shm->hdr->stress_since;
    bool stress = __atomic_load_n(&shm->hdr->stress, __ATOMIC_ACQUIRE) && since;
    fprintf(f, "stress %d %ld\n", stress ? 1 : 0, stress ? (long)(time(NULL) - since) : 0L);
    fprintf(f, "cache %u %u\nsenders %zu\n", cache_used(&shm->cache), shm->cache.sh->capacity, t->count);
    for (size_t i = 0; i < t->count; i++) {
        const struct top_row *row = &t->rows[i];
        char key[4 * CACHE_KEY_SIZE];
        text_escape(key, sizeof(key), row->c.e.key, CACHE_KEY_SIZE);
        fprintf(f, "sender %u %u %u %u %u %llu %s %s\n", row->r.minute, row->c.e.msg_counter, row->l.msg,
                row->c.e.rcpt_counter, row->l.rcpt, (unsigned long long)row->r.use,
                state_of(shm, cfg, &row->c, s->n_windows), key);
    }
}

/* Write to a temporary file, then rename over the old dump. */
typedef void (*status_format_fn)(FILE *f, const struct rg_config *cfg, struct shm *shm, const struct snapshot *s,
                              struct pool_counts p, time_t started);

static bool write_file(const char *suffix, status_format_fn format, const struct rg_config *cfg, struct shm *shm,
                       const struct snapshot *s, struct pool_counts p, time_t started)
{
    char path[4200], tmp[4300];
    config_state_path(cfg, suffix, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        log_error("status: fopen(%s): %s", tmp, strerror(errno));
        return false;
    }
    format(f, cfg, shm, s, p, started);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        log_error("status: writing %s: %s", path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}

static const struct {
    const char *suffix;
    status_format_fn write;
} formats[STATUS_FORMATS] = {
    [STATUS_TEXT] = {".status.txt", write_text},
    [STATUS_JSON] = {".status.json", write_json},
    [STATUS_PROMETHEUS] = {".status.prom", write_prometheus},
    [STATUS_BLOCKED_TEXT] = {".blocked.txt", write_blocked_text},
    [STATUS_BLOCKED_JSON] = {".blocked.json", write_blocked_json},
    [STATUS_TOP_MESSAGES] = {".top-messages.txt", write_top},
    [STATUS_TOP_QUOTA] = {".top-quota.txt", write_top},
    [STATUS_TOP_BLOCKED] = {".top-blocked.txt", write_top},
};

const char *status_suffix(enum status_format format)
{
    return formats[format].suffix;
}

bool status_write(const struct rg_config *cfg, struct shm *shm, time_t started, const bool wanted[STATUS_FORMATS],
                  unsigned top_rows)
{
    struct snapshot s = {.cache = &shm->cache, .cfg = cfg, .now_us = clock_realtime_us(),
                         .n_windows = windows_usable(cfg->quota.windows.count, cache_windows_size(&shm->cache))};
    bool ok = true;

    /* The metrics need no per-sender copy of the cache. */
    bool senders = wanted[STATUS_TEXT] || wanted[STATUS_JSON] || wanted[STATUS_BLOCKED_TEXT] ||
                   wanted[STATUS_BLOCKED_JSON];
    if (senders) {
        cache_foreach(&shm->cache, collect, &s);
        if (s.count > 1)
            qsort(s.rows, s.count, sizeof(*s.rows), by_key);
    }
    struct pool_counts p = metrics_pool_counts(shm);
    for (int i = 0; i < STATUS_FORMATS && ok; i++) {
        struct top_pick top = {.rows = NULL};
        if (wanted[i] && i >= STATUS_TOP_MESSAGES) {
            top_select(&top, shm, &s, (enum status_format)i, top_rows);
            s.top = &top;
        }
        if (wanted[i])
            ok = write_file(formats[i].suffix, formats[i].write, cfg, shm, &s, p, started);
        free(top.rows);
        s.top = NULL;
    }
    free(s.rows);
    /* Debug: an operator's look is not an event of the mail system. */
    if (ok && senders)
        log_debug("status: %zu cached sender(s) written to %s", s.count, cfg->state_dir);
    return ok;
}
