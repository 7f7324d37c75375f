/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * writer.c - the writer process: database write-back. It connects, keeps
 * the period schedule and the cache refreshes (housekeeping, before any
 * record of a round), and runs rounds (writeround.c) while records wait,
 * sleeping until a worker pokes it otherwise.
 *
 * When the database fails: rollback, keep everything, retry with backoff,
 * log the outage once and its end once. With the queue half full, the
 * oldest records move to the spool file (spool.c) so that workers always
 * find room. A conflict with another transaction (a deadlock, a Galera
 * certification failure) is no outage: the round is retried at once.
 *
 * The top of the write path: it owns struct writer (the loop's state:
 * backoff, outage, schedule) and the parts below it, and calls down only:
 * writeround.c (a round, which says what happened), writelane.c (the
 * connections), spool.c, wqueue.c (the wake-up protocol), watchsync.c
 * (the signals' share of the housekeeping), writepurge.c (the retention
 * purge, a chunk at a time between rounds).
 */
#include "writer.h"
#include "blockjournal.h"
#include "cacherefresh.h"
#include "report.h"
#include "config.h"
#include "log.h"
#include "period.h"
#include "rateguard.h"
#include "shm.h"
#include "snapjob.h"
#include "spool.h"
#include "util.h"
#include "watchsync.h"
#include "writepurge.h"
#include "writeround.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MAX_MS 5000

struct writer {
    const struct writer_ctx *ctx;
    struct lanes lanes;             /* the connections, one per lane */
    struct round round;             /* the progress, the next round's mode */
    struct spool spool;
    bool outage_logged;
    int backoff_ms;
    int64_t next_refresh_ms;        /* monotonic: a step of the wall clock moves no refresh */
    time_t next_reset;              /* quota.reset_schedule boundary, 0 = none */
    uint32_t refresh_seen;          /* refresh_requests already served */
    struct watchsync watch;         /* the signals' feed, episodes and fold */
    struct writepurge purge;        /* the retention purge, paced */
    struct cacherefresh refresh;    /* the refresh from the database, in pages */
    struct snapjob snap;            /* the counter snapshot being stored */
};

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
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

/* Sleep until a worker pokes us (unless backing off: then only the time
 * and the master's death count), the timeout passes, or the master dies. */
static void wait_for_work(struct writer *w, int timeout_ms, bool backoff)
{
    struct wqueue *q = &w->ctx->shm->queue;
    struct pollfd p[2] = {{.fd = w->ctx->lifeline_fd, .events = POLLIN},
                          {.fd = w->ctx->wake_fd, .events = POLLIN}};

    if (!backoff && !wqueue_writer_sleep(q))
        return;
    poll(p, backoff ? 1 : 2, timeout_ms);
    wqueue_writer_awake(q, !backoff && (p[1].revents & POLLIN));
    if (p[0].revents)
        stop_requested = 1;     /* master gone: drain what we can and leave */
}

/* A round waits until its oldest record is ROUND_GATHER_MS old or a full
 * batch is queued: under a steady load every round then carries the
 * records of that many milliseconds, and the statements, the progress row
 * and the COMMIT that every round costs are shared by all of them (at
 * 8000 requests/s the database spent three times as much CPU per record
 * on rounds of a few dozen records). The lag grows by as much at most;
 * nothing waits when catching up, with a spool to write, or when stopping. */
#define ROUND_GATHER_MS 10

static void gather_round(struct writer *w)
{
    struct wqueue *q = &w->ctx->shm->queue;
    while (!stop_requested && !spool_pending(&w->spool)) {
        uint64_t depth = wqueue_depth(q);
        if (depth == 0 || depth >= (uint64_t)BATCH_MAX * WRITER_LANES)
            return;
        int64_t age_us = clock_realtime_us() - wqueue_oldest_us(q);
        if (age_us < 0 || age_us >= ROUND_GATHER_MS * 1000)
            return;     /* old enough, or a clock step: write now */
        usleep((useconds_t)(ROUND_GATHER_MS * 1000 - age_us));
    }
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
 * older snapshot; stored in a thread (snapjob.h). */
static void write_snapshot(struct writer *w)
{
    struct shm_header *h = w->ctx->shm->hdr;
    if (!__atomic_load_n(&h->db_read, __ATOMIC_ACQUIRE) || __atomic_load_n(&h->cache_from_snapshot, __ATOMIC_ACQUIRE))
        return;
    snapjob_start(&w->snap, w->ctx->shm, w->ctx->snapshot_path, w->ctx->journal_path, w->ctx->name);
}

/* A refresh pass has read every row: what waited for it. */
static void refresh_done(struct writer *w)
{
    struct shm_header *h = w->ctx->shm->hdr;

    if (__atomic_exchange_n(&h->cache_from_snapshot, 0, __ATOMIC_ACQ_REL))
        log_notice("writer: every sender re-read from the database; the counts loaded from the snapshot "
                   "are replaced");
    __atomic_store_n(&h->db_read, 1, __ATOMIC_RELEASE);
    write_snapshot(w);
    w->next_refresh_ms = clock_monotonic_ms() + w->ctx->cfg->cache.refresh_interval * 1000;
    w->watch.next_adopt = 0;    /* an operator's `clear` is taken before the command hears back */
    watchsync_step(&w->watch, lanes_db(&w->lanes), w->ctx->shm, w->ctx->cfg);
    if (w->refresh.asked != w->refresh_seen) {
        snapjob_finish(&w->snap);   /* a command hears back once the snapshot is on disk */
        w->refresh_seen = w->refresh.asked;
        acknowledge(w);
    }
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
        unsigned long long reset;
        /* The report of the period that ends, before its counts go (once
         * per boundary: a failed reset is tried again, the report not). */
        static time_t reported;
        if (w->ctx->cfg->report.enabled && reported != w->next_reset) {
            report_prepare_pending(lanes_db(&w->lanes), w->ctx->cfg, (int64_t)w->next_reset * 1000000);
            reported = w->next_reset;
        }
        if (!cachesync_db_reset(lanes_db(&w->lanes), (int64_t)w->next_reset * 1000000, w->ctx->cfg->purge.chunk_rows,
                                &reset, err, errsize))
            return false;
        log_notice("period reset: %llu sender(s) reset", reset);
        writepurge_start(&w->purge, w->ctx->cfg);   /* in chunks, between the rounds that follow */
        __atomic_store_n(&h->db_reset_done, (int64_t)w->next_reset, __ATOMIC_RELEASE);
        w->next_reset = period_next_reset(w->ctx->cfg->reset_schedule, time(NULL), w->next_reset);
        w->next_refresh_ms = 0;
        cacherefresh_abort(&w->refresh);    /* the rows read before the reset are read again */
    }
    if (w->refresh.active || asked != w->refresh_seen || clock_monotonic_ms() >= w->next_refresh_ms) {
        if (!w->refresh.active)
            log_debug("writer: refreshing the cache from the database%s",
                      asked != w->refresh_seen ? " (asked)" : "");
        bool done;
        if (!cacherefresh_step(&w->refresh, lanes_db(&w->lanes), w->ctx->shm, asked, &done, err, errsize))
            return false;
        if (done)
            refresh_done(w);
        else
            watchsync_step(&w->watch, lanes_db(&w->lanes), w->ctx->shm, w->ctx->cfg);
    } else
        watchsync_step(&w->watch, lanes_db(&w->lanes), w->ctx->shm, w->ctx->cfg);
    return writepurge_step(&w->purge, lanes_db(&w->lanes), w->ctx->shm, w->ctx->cfg, err, errsize);
}

static bool housekeeping_due(struct writer *w)
{
    struct shm_header *h = w->ctx->shm->hdr;
    return __atomic_load_n(&h->refresh_requests, __ATOMIC_ACQUIRE) != w->refresh_seen ||
           (w->next_reset && time(NULL) >= w->next_reset);
}

/* The state of a writer that has not connected yet; a spool left by an
 * earlier run is opened (a round writes it first). */
static void writer_init(struct writer *w, const struct writer_ctx *ctx)
{
    struct shm *shm = ctx->shm;

    memset(w, 0, sizeof(*w));
    w->ctx = ctx;
    lanes_init(&w->lanes, ctx->cfg, shm, ctx->name);
    round_init(&w->round, ctx);
    spool_init(&w->spool, ctx->spool_path);
    watchsync_init(&w->watch, ctx->name);
    /* What is past retention goes, whether or not a purge was under way
     * when the last writer ended (the predicate needs no remembering). */
    writepurge_start(&w->purge, ctx->cfg);
    w->refresh_seen = __atomic_load_n(&shm->hdr->refresh_requests, __ATOMIC_ACQUIRE);
    w->next_refresh_ms = clock_monotonic_ms() + ctx->cfg->cache.refresh_interval * 1000;
    w->next_reset = period_next_reset(ctx->cfg->reset_schedule, time(NULL),
                                      (time_t)__atomic_load_n(&shm->hdr->db_reset_done, __ATOMIC_ACQUIRE));
    if (shm->hdr->owed_reset_us && w->next_reset)   /* a boundary the loaded snapshot crossed */
        w->next_reset = (time_t)(shm->hdr->owed_reset_us / 1000000);
    spool_open(&w->spool, false);
}

/* Connect if need be, housekeeping, then a round; what happened. A
 * failure that is a conflict (two hosts' period resets of the same rows,
 * a Galera certification failure at prepare) is rolled back and said so. */
static enum round_result write_step(struct writer *w, long *n, char *err, size_t errsize)
{
    enum round_result res = ROUND_FAILED;

    lanes_prepare_errno = 0;
    if (lanes_db(&w->lanes) != NULL || round_connect(&w->round, &w->lanes, err, errsize)) {
        if (!w->outage_logged)
            gather_round(w);
        if (housekeeping(w, err, errsize) && round_prepare(&w->round, &w->lanes, err, errsize))
            res = round_run(&w->round, &w->lanes, &w->spool, n, err, errsize);
        else if (w->outage_logged)
            log_error("writer: %s", err);   /* the outage line named an earlier cause */
    }
    MYSQL *db = lanes_db(&w->lanes);
    if (res == ROUND_FAILED && db != NULL &&
        (lanes_conflict_error(mysql_errno(db)) || lanes_conflict_error(lanes_prepare_errno))) {
        mysql_rollback(db);
        res = ROUND_CONFLICT;
    }
    return res;
}

/* The database failed: logged once, disconnected, a backoff (0.1 s
 * doubling to 5 s) in short steps that keep room in the queue (the
 * spool); a command waiting for a refresh or a due reset cuts it short.
 * False when stopping and the database stays away. */
static bool back_off(struct writer *w, const char *err)
{
    struct shm *shm = w->ctx->shm;

    STAT_ADD(shm, db_errors, 1);
    __atomic_store_n(&shm->hdr->db_up, 0, __ATOMIC_RELEASE);
    if (!w->outage_logged) {
        log_error("writer: database unavailable, %llu record(s) kept queued: %s",
                  (unsigned long long)wqueue_depth(&shm->queue), err);
        write_snapshot(w);     /* what is committed; the rest stays in the queue */
    }
    w->outage_logged = true;
    lanes_disconnect(&w->lanes);
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : 100;
    if (w->backoff_ms > BACKOFF_MAX_MS)
        w->backoff_ms = BACKOFF_MAX_MS;
    if (stop_requested && w->backoff_ms >= BACKOFF_MAX_MS)
        return false;
    for (int waited = 0; waited < w->backoff_ms && !stop_requested && !housekeeping_due(w); waited += 100) {
        spool_spill(&w->spool, &shm->queue);
        blockjournal_sync(w->ctx->journal_path);
        snapjob_busy(&w->snap);
        wait_for_work(w, 100, true);
    }
    return true;
}

/* Stopping: what is left is said (the next start writes it), everything
 * closed and freed. */
static void writer_finish(struct writer *w)
{
    uint64_t left = wqueue_depth(&w->ctx->shm->queue);
    off_t spooled = spool_size(&w->spool) - w->spool.read;
    if (left > 0 || spooled > 0)
        log_error("writer: stopping with %llu record(s) queued and %lld spooled byte(s) not written; "
                  "the next start writes them", (unsigned long long)left, (long long)spooled);
    snapjob_finish(&w->snap);
    lanes_free(&w->lanes);
    spool_close(&w->spool);
    round_free(&w->round);
}

void writer_main(const struct writer_ctx *ctx)
{
    struct writer w;
    char err[1024];

    child_signals(on_term, false);
    srand((unsigned)getpid() ^ (unsigned)time(NULL));     /* conflict_pause's jitter */
    writer_init(&w, ctx);
    for (;;) {
        long n = 0;
        blockjournal_sync(ctx->journal_path);   /* at most once a second */
        snapjob_busy(&w.snap);                  /* a stored snapshot's outcome logged */
        enum round_result res = write_step(&w, &n, err, sizeof(err));
        if (res == ROUND_AGAIN)
            continue;
        if (res == ROUND_CONFLICT) {
            conflict_pause(&w, err);
            continue;
        }
        if (res == ROUND_FAILED) {
            if (!back_off(&w, err))
                break;          /* stopping and the database stays away */
            continue;
        }
        if (w.outage_logged) {
            log_notice("writer: database available again, writing %llu queued record(s)",
                       (unsigned long long)wqueue_depth(&ctx->shm->queue) + (unsigned long long)n);
            w.outage_logged = false;
        }
        w.backoff_ms = 0;
        __atomic_store_n(&ctx->shm->hdr->db_up, 1, __ATOMIC_RELEASE);
        if (n > 0)
            continue;           /* more may be waiting */
        if (stop_requested)
            break;
        int64_t until_refresh = w.refresh.active ? 0 : w.next_refresh_ms - clock_monotonic_ms();
        int timeout = until_refresh < 1000 ? (until_refresh > 0 ? (int)until_refresh : 0) : 1000;
        int purge_due = writepurge_due_in_ms(&w.purge);
        wait_for_work(&w, purge_due >= 0 && purge_due < timeout ? purge_due : timeout, false);
    }
    writer_finish(&w);
    _exit(RG_EXIT_OK);
}
