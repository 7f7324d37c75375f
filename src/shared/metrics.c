/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * metrics.c - the daemon's figures in the Prometheus text format, read
 * from the shared segment by whichever process serves them (metricsd.c
 * on /metrics, the master for .status.prom). Only atomic loads, and
 * with metrics.blocked_senders the cache under its stripe locks: never a
 * lock a worker waits on for long, never the database.
 *
 * The families are bounded: one series per request result, refusal,
 * statement kind, signal, worker state; no label per sender except the
 * capped list of the most blocked ones.
 */
#include "metrics.h"
#include "cache.h"
#include "domains.h"
#include "policy.h"
#include "shm.h"
#include "snapshot.h"
#include "util.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct pool_counts metrics_pool_counts(struct shm *shm)
{
    struct pool_counts p = {0, 0, 0};
    for (uint32_t i = 0; i < shm->scoreboard.sh->slots; i++) {
        uint8_t st = __atomic_load_n(&shm->scoreboard.slot[i].state, __ATOMIC_RELAXED);
        if (st == SLOT_BUSY)
            p.busy++;
        else if (st == SLOT_IDLE || st == SLOT_STARTING)
            p.idle++;
        if (st != SLOT_FREE)
            p.running++;
    }
    return p;
}

static const struct {
    const char *name;
    size_t offset;
} request_stats[] = {
    {"served", offsetof(struct shm_stats, requests)}, {"counted", offsetof(struct shm_stats, counted)},
    {"accepted", offsetof(struct shm_stats, accepted)}, {"blocked", offsetof(struct shm_stats, blocked)},
    {"would_block", offsetof(struct shm_stats, would_block)}, {"exempt", offsetof(struct shm_stats, exempt)},
    {"warnings", offsetof(struct shm_stats, warnings)},
    {"errors", offsetof(struct shm_stats, errors)}, {"malformed", offsetof(struct shm_stats, malformed)},
    {"refused", offsetof(struct shm_stats, refused)},
    {"over_client_limit", offsetof(struct shm_stats, over_client_limit)},
    {"refused_user", offsetof(struct shm_stats, refused_user)},
};

size_t metrics_request_count(void)
{
    return sizeof(request_stats) / sizeof(request_stats[0]);
}

const char *metrics_request_name(size_t i)
{
    return request_stats[i].name;
}

unsigned long long metrics_request_value(struct shm *shm, size_t i)
{
    const uint64_t *v = (const uint64_t *)((const char *)&shm->hdr->stats + request_stats[i].offset);
    return (unsigned long long)__atomic_load_n(v, __ATOMIC_RELAXED);
}

int64_t metrics_write_lag_us(struct shm *shm)
{
    int64_t oldest = wqueue_oldest_us(&shm->queue);
    int64_t lag_us = oldest ? clock_realtime_us() - oldest : 0;
    return lag_us > 0 ? lag_us : 0;
}

const char *const metrics_signal_names[4] = {"spread", "countries", "rate", "probation"};

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void write_requests(FILE *f, struct shm *shm)
{
    family(f, "rateguard_requests_total", "counter", "Policy requests and connections by outcome.");
    for (size_t i = 0; i < metrics_request_count(); i++)
        fprintf(f, "rateguard_requests_total{result=\"%s\"} %llu\n", request_stats[i].name,
                metrics_request_value(shm, i));
    family(f, "rateguard_blocks_total", "counter", "Blocked answers by what they asked of Postfix.");
    for (int i = 0; i < POLICY_REFUSALS; i++)
        fprintf(f, "rateguard_blocks_total{action=\"%s\"} %llu\n", policy_refusal_names[i],
                (unsigned long long)STAT_GET(shm, blocks_by_refusal[i]));
}

static void write_database(FILE *f, struct shm *shm)
{
    static const char *const kinds[DB_KINDS] = {"lock_read", "read_back", "create", "upsert", "messages",
                                                 "progress", "commit", "one_by_one"};
    int64_t lag_us = metrics_write_lag_us(shm);

    family(f, "rateguard_db_up", "gauge", "1 while the writer's last database round worked, 0 while it backs off.");
    fprintf(f, "rateguard_db_up %d\n", __atomic_load_n(&shm->hdr->db_up, __ATOMIC_ACQUIRE) ? 1 : 0);
    family(f, "rateguard_db_written_total", "counter", "Records committed to the database.");
    fprintf(f, "rateguard_db_written_total %llu\n", (unsigned long long)STAT_GET(shm, db_written));
    family(f, "rateguard_db_failed_transactions_total", "counter", "Writer transactions rolled back.");
    fprintf(f, "rateguard_db_failed_transactions_total %llu\n", (unsigned long long)STAT_GET(shm, db_errors));
    family(f, "rateguard_db_conflicts_total", "counter",
           "Write rounds retried after a deadlock or Galera certification conflict.");
    fprintf(f, "rateguard_db_conflicts_total %llu\n", (unsigned long long)STAT_GET(shm, db_conflicts));
    family(f, "rateguard_db_purged_rows_total", "counter",
           "Messages rows past message_retention deleted by the writer's chunked purge.");
    fprintf(f, "rateguard_db_purged_rows_total %llu\n", (unsigned long long)STAT_GET(shm, db_purged_rows));
    family(f, "rateguard_db_purge_chunks_total", "counter",
           "Chunks of the writer's purge committed, one transaction of at most purge.chunk_rows rows each.");
    fprintf(f, "rateguard_db_purge_chunks_total %llu\n", (unsigned long long)STAT_GET(shm, db_purge_chunks));
    family(f, "rateguard_queue_depth", "gauge", "Records waiting to be written to the database.");
    fprintf(f, "rateguard_queue_depth %llu\n", (unsigned long long)wqueue_depth(&shm->queue));
    family(f, "rateguard_db_write_lag_seconds", "gauge", "Age of the oldest record waiting in the queue.");
    fprintf(f, "rateguard_db_write_lag_seconds %.3f\n", lag_us > 0 ? (double)lag_us / 1e6 : 0.0);
    family(f, "rateguard_db_statements_total", "counter", "Writer statements executed, by kind.");
    for (int k = 0; k < DB_KINDS; k++)
        fprintf(f, "rateguard_db_statements_total{kind=\"%s\"} %llu\n", kinds[k],
                (unsigned long long)STAT_GET(shm, db_statements[k]));
    family(f, "rateguard_db_statement_seconds_total", "counter",
           "Time the writer waited for its statements, by kind.");
    for (int k = 0; k < DB_KINDS; k++)
        fprintf(f, "rateguard_db_statement_seconds_total{kind=\"%s\"} %.6f\n", kinds[k],
                (double)STAT_GET(shm, db_statement_us[k]) / 1e6);
}

static void write_pool(FILE *f, struct shm *shm)
{
    struct pool_counts p = metrics_pool_counts(shm);
    int64_t started = __atomic_load_n(&shm->hdr->started, __ATOMIC_RELAXED);

    family(f, "rateguard_workers", "gauge", "Worker processes by state.");
    fprintf(f, "rateguard_workers{state=\"busy\"} %u\nrateguard_workers{state=\"idle\"} %u\n", p.busy, p.idle);
    family(f, "rateguard_cache_entries", "gauge", "Sender cache entries in use and available.");
    fprintf(f, "rateguard_cache_entries{state=\"used\"} %u\nrateguard_cache_entries{state=\"capacity\"} %u\n",
            cache_used(&shm->cache), shm->cache.sh->capacity);
    family(f, "rateguard_cache_misses_total", "counter",
           "Requests of a sender not in the cache: an entry made, the sender's row read back by the writer.");
    fprintf(f, "rateguard_cache_misses_total %llu\n",
            (unsigned long long)STAT_GET(shm, cache_misses));
    family(f, "rateguard_cache_evictions_total", "counter",
           "Idle, written entries evicted to make room for other senders (cache.entries too small).");
    fprintf(f, "rateguard_cache_evictions_total %llu\n",
            (unsigned long long)__atomic_load_n(&shm->cache.sh->evicted, __ATOMIC_RELAXED));
    family(f, "rateguard_uptime_seconds", "gauge", "Seconds since the daemon started.");
    fprintf(f, "rateguard_uptime_seconds %ld\n", started ? (long)(time(NULL) - started) : 0L);
    family(f, "rateguard_stress", "gauge", "1 while every worker is busy and connections wait (stress mode).");
    fprintf(f, "rateguard_stress %d\n", __atomic_load_n(&shm->hdr->stress, __ATOMIC_ACQUIRE) ? 1 : 0);
    family(f, "rateguard_stress_episodes_total", "counter", "Times the worker pool went into stress mode.");
    fprintf(f, "rateguard_stress_episodes_total %llu\n", (unsigned long long)STAT_GET(shm, stress_episodes));
    family(f, "rateguard_stress_closed_total", "counter", "Connections closed by stress mode, by reason.");
    fprintf(f, "rateguard_stress_closed_total{reason=\"idle\"} %llu\nrateguard_stress_closed_total{reason=\"timeout\"} %llu\n",
            (unsigned long long)STAT_GET(shm, stress_idle_closed), (unsigned long long)STAT_GET(shm, stress_timeouts));
    family(f, "rateguard_metrics_scrapes_total", "counter", "Answers of the /metrics endpoint.");
    fprintf(f, "rateguard_metrics_scrapes_total %llu\n", (unsigned long long)STAT_GET(shm, metrics_scrapes));
    family(f, "rateguard_metrics_refused_total", "counter",
           "Connections to the /metrics endpoint from outside metrics.allowed_clients.");
    fprintf(f, "rateguard_metrics_refused_total %llu\n", (unsigned long long)STAT_GET(shm, metrics_refused));
}

static void write_signals(FILE *f, struct shm *shm)
{
    family(f, "rateguard_signal_episodes_total", "counter",
           "Hijacked-account episodes this host claimed, by the signal that opened them.");
    for (int i = 0; i < 4; i++)
        fprintf(f, "rateguard_signal_episodes_total{signal=\"%s\"} %llu\n", metrics_signal_names[i],
                (unsigned long long)STAT_GET(shm, signal_episodes[i]));
    family(f, "rateguard_signal_episodes_ended_total", "counter", "Episodes this host claimed that ended.");
    fprintf(f, "rateguard_signal_episodes_ended_total %llu\n", (unsigned long long)STAT_GET(shm, signal_ended));
    family(f, "rateguard_signal_messages_total", "counter", "Messages a signal's action took, by action.");
    fprintf(f, "rateguard_signal_messages_total{action=\"hold\"} %llu\nrateguard_signal_messages_total{action=\"refuse\"} %llu\n",
            (unsigned long long)STAT_GET(shm, signal_held), (unsigned long long)STAT_GET(shm, signal_refused));
    family(f, "rateguard_signal_bad_address_total", "counter",
           "Counted requests whose client_address counts toward no signal.");
    fprintf(f, "rateguard_signal_bad_address_total %llu\n", (unsigned long long)STAT_GET(shm, signal_bad_address));
}

/* ---- the optional most blocked senders ---- */

struct blocked_top {
    struct domain_table *domains;
    unsigned k, n;
    struct {
        uint32_t messages;
        char key[CACHE_KEY_SIZE];
    } rows[METRICS_BLOCKED_SENDERS_MAX];
};

/* Keep the k entries refused in this period with the most messages (k is
 * at most 100: a scan of the kept rows costs less than a heap's care). */
static void keep_blocked(struct cache_entry *e, bool created, void *arg)
{
    struct blocked_top *t = arg;
    (void)created;
    if (!limits_exceeded(e, limits_of_entry(t->domains, e)))
        return;
    unsigned at = t->n;
    if (t->n == t->k) {
        at = 0;
        for (unsigned i = 1; i < t->n; i++)
            if (t->rows[i].messages < t->rows[at].messages)
                at = i;
        if (t->rows[at].messages >= e->msg_counter)
            return;
    } else {
        t->n++;
    }
    t->rows[at].messages = e->msg_counter;
    memcpy(t->rows[at].key, e->key, CACHE_KEY_SIZE);
}

static int by_messages(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* A sender as a label value: what text_escape shows a terminal (valid
 * UTF-8, \xNN for the rest), then the format's own escapes. */
static void write_label(FILE *f, const char *key)
{
    char shown[4 * CACHE_KEY_SIZE];
    text_escape(shown, sizeof(shown), key, CACHE_KEY_SIZE);
    for (const char *p = shown; *p; p++) {
        if (*p == '\\' || *p == '"')
            fputc('\\', f);
        fputc(*p, f);
    }
}

static void write_blocked_senders(FILE *f, struct shm *shm, unsigned k)
{
    static struct blocked_top t;    /* 6.8 KB, off the stack: one exposition at a time (metricsd.c) */

    t.domains = &shm->domains;
    t.k = k > METRICS_BLOCKED_SENDERS_MAX ? METRICS_BLOCKED_SENDERS_MAX : k;
    t.n = 0;
    cache_foreach(&shm->cache, keep_blocked, &t);
    qsort(t.rows, t.n, sizeof(t.rows[0]), by_messages);
    family(f, "rateguard_blocked_sender_messages", "gauge",
           "Messages this period of the senders refused in it, the most first (metrics.blocked_senders of them).");
    for (unsigned i = 0; i < t.n; i++) {
        fputs("rateguard_blocked_sender_messages{sender=\"", f);
        write_label(f, t.rows[i].key);
        fprintf(f, "\"} %u\n", t.rows[i].messages);
    }
}

void metrics_write_prometheus(FILE *f, struct shm *shm, unsigned blocked_senders)
{
    write_requests(f, shm);
    write_database(f, shm);
    write_pool(f, shm);
    write_signals(f, shm);
    snapshot_status_prometheus(f, shm);
    if (blocked_senders)
        write_blocked_senders(f, shm, blocked_senders);
}
