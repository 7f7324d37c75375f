/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * shm.h - the shared-memory segment every rateguard process maps: a header
 * (magic, version, sizes, offsets, statistics) followed by the worker
 * scoreboard, the sender cache and the write-back queue. The master
 * creates it before forking, so every child inherits the same mapping.
 *
 * Also the process-shared robust mutex helpers: a lock whose holder died
 * is recovered (EOWNERDEAD -> pthread_mutex_consistent) and counted, never
 * left wedged.
 */
#ifndef RG_SHM_H
#define RG_SHM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache.h"
#include "connlog.h"
#include "domains.h"
#include "policy.h"
#include "scoreboard.h"
#include "wqueue.h"

#define SHM_MAGIC 0x52475348u           /* "RGSH" */
#define SHM_VERSION 1

/* Counters shown by `rateguard status`; updated with atomic adds. */
/* The writer's statements by kind (writelane.c), in the metrics: where
 * the database's time per record goes. */
enum db_kind {
    DB_LOCK_READ,       /* the senders' rows read and locked */
    DB_READ_BACK,       /* rows an upsert created, read for their ids */
    DB_CREATE,          /* rows of new senders, in their own transaction */
    DB_UPSERT,          /* the senders' increments */
    DB_MESSAGES,        /* the messages rows */
    DB_PROGRESS,        /* rateguard_progress */
    DB_COMMIT,
    DB_ONE_BY_ONE,      /* careful mode: one record's statements */
    DB_KINDS
};

struct shm_stats {
    uint64_t requests;      /* well-formed requests answered */
    uint64_t counted;       /* messages counted */
    uint64_t accepted;      /* counted and accepted */
    uint64_t blocked;       /* counted and blocked */
    uint64_t would_block;   /* quota.dry_run: accepted, would have been blocked */
    uint64_t exempt;        /* exempt senders and clients: accepted, not counted */
    uint64_t warnings;      /* first messages past quota.warning_percent */
    uint64_t errors;        /* answered with on_error */
    uint64_t malformed;     /* connections closed for malformed input */
    uint64_t refused;       /* connections from outside allowed_clients */
    uint64_t over_client_limit; /* connections over workers.max_per_client */
    uint64_t refused_user;  /* local connections from an account outside allowed_users (or of unknown owner) */
    uint64_t cache_misses;  /* requests of a sender not in the cache (an entry made, its row read back) */
    uint64_t db_written;    /* records committed by the writer */
    uint64_t db_errors;     /* failed writer transactions */
    uint64_t db_conflicts;  /* rounds retried after a deadlock or a Galera certification conflict */
    uint64_t db_purged_rows;    /* messages rows deleted by the writer's retention purge (writepurge.c) */
    uint64_t db_purge_chunks;   /* ... its chunks committed, one transaction each */
    uint64_t locks_recovered; /* robust mutexes taken over from dead holders */
    uint64_t stress_episodes;   /* times the pool went into stress (master.c) */
    uint64_t stress_idle_closed; /* idle connections closed to free their worker */
    uint64_t stress_timeouts;   /* connections closed by workers.stress_read_timeout */
    uint64_t signal_held;       /* messages answered HOLD by a signal (watch.h) */
    uint64_t signal_refused;    /* ... refused by one (DEFER_IF_PERMIT, REJECT, lock) */
    uint64_t signal_bad_address;    /* counted requests whose client_address counts toward no signal */
    uint64_t signal_episodes[4];    /* episodes this host claimed, by the signal that opened them */
    uint64_t signal_ended;      /* ... that ended (a window without a trip, or cleared) */
    uint64_t db_statements[DB_KINDS];   /* executed, by kind */
    uint64_t db_statement_us[DB_KINDS]; /* their time as the writer waited for them (prepare, execute, rows) */
    uint64_t blocks_by_refusal[POLICY_REFUSALS]; /* blocked answers by what they asked of Postfix (policy.h) */
    uint64_t metrics_scrapes;   /* /metrics answered (metricsd.c) */
    uint64_t metrics_refused;   /* connections to it from outside metrics.allowed_clients */
};

struct shm_header {
    uint32_t magic;
    uint32_t version;
    uint64_t total_size;
    pid_t writer_pid;             /* shown by status --json */
    pid_t metrics_pid;          /* the metrics process (metricsd.c), 0 when none; shown likewise */
    int64_t started;            /* unix s the master began serving (the uptime) */
    unsigned log_generation;    /* bumped on SIGUSR2: every process reopens its log */
    uint64_t off_scoreboard, off_cache;
    uint32_t refresh_requests;  /* bumped to make the writer re-read every row */
    uint32_t watch_pending;     /* bumped by a worker that opened an episode: the writer claims it */
    int64_t watch_feed_from;    /* unix s the writer's feed goes on from (set by the start's preload), 0: its own */
    uint8_t db_up;              /* 1 while the writer's last connection or statement worked */
    uint8_t stress;             /* 1 while every worker is busy and connections wait (master.c) */
    int64_t stress_since;       /* CLOCK_REALTIME seconds the current stress began, 0 = none */
    /* The rate-limited log of connection problems (connlog.c). */
    struct connlog_slot connlog[CONNLOG_SLOTS];
    struct shm_stats stats;
    struct scoreboard_shared scoreboard;
    struct cache_shared cache;
    struct domain_shared domains;
    uint64_t off_domains;
    /* The counter snapshot (snapshot.c); read and written atomically. */
    int64_t snapshot_written_us;    /* creation time of the last one written, 0 = none yet */
    uint32_t snapshot_senders;      /* senders in it */
    int64_t snapshot_loaded_us;     /* creation time of the one the cache was loaded from, 0 = none */
    uint8_t cache_from_snapshot;    /* 1 until the writer has read every row from the database */
    uint32_t journal_gen;           /* bumped as the block journal is rotated (blockjournal.h) */
    uint8_t db_read;                /* the cache has read every row at least once (preload or refresh) */
    int64_t owed_reset_us;          /* a reset_schedule boundary passed since the loaded snapshot */
    int64_t db_reset_done;          /* unix s of the last boundary the writer reset the database at:
                                     * a writer started later (a reload) does not do it again */
};

/* A process's view of the mapped segment. */
struct shm {
    struct shm_header *hdr;
    size_t size;
    struct scoreboard scoreboard;
    struct cache cache;
    struct domain_table domains;
    struct wqueue queue;
    struct wqueue notify;       /* webhook notifications; sh NULL when disabled */
};

/* Create (anonymous shared mapping) and lay out a fresh segment. Returns
 * false with a logged error when the memory cannot be had. The queue is
 * opened separately with wqueue_open(). */
/* extra_size: companion bytes per cache entry (cache_extra()), of which
 * the last watch_size are the login's watch (watch.h). */
bool shm_create(struct shm *shm, uint32_t workers, uint32_t cache_entries, uint32_t extra_size, uint32_t watch_size,
                uint32_t domains);

void shm_destroy(struct shm *shm);

#define STAT_ADD(shm, field, n) __atomic_fetch_add(&(shm)->hdr->stats.field, (n), __ATOMIC_RELAXED)
#define STAT_GET(shm, field) __atomic_load_n(&(shm)->hdr->stats.field, __ATOMIC_RELAXED)

#endif
