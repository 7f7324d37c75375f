/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * cachesync.h - keeping the shared cache and the database in agreement:
 * the start-up preload, the writer's refresh of rows (after each commit,
 * every cache.refresh_interval seconds and on demand), the replay of
 * records left by a killed daemon into the cache, and the period reset on
 * both sides. The database is the authority for quotas and committed
 * counts; the cache adds what is queued but not yet committed.
 */
#ifndef RG_CACHESYNC_H
#define RG_CACHESYNC_H

#include <mysql.h>
#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "wqueue.h"

struct rg_config;
struct shm;

/* One `ratelimits` row as the cache needs it. */
struct db_row {
    uint64_t id;
    uint32_t quota, quota_reset, msg_counter, rcpt_counter, msg_total, rcpt_total;
    int64_t msg_quota, rcpt_quota;  /* -1: NULL (quota applies) */
    uint8_t block_action;           /* enum block_action */
    uint8_t locked;
    uint8_t notified;           /* NOTIFIED_* bits of the current period */
    int64_t reset_us;           /* reset_at in unix microseconds, 0 if never */
    uint16_t round;             /* refresh round, for the deletion sweep */
};

/* The columns, in the order cachesync_parse_row expects them. */
#define CACHESYNC_COLUMNS                                                                  \
    "`sender`, `id`, `quota`, `quota_reset`, `quota_locked`, `msg_counter`, `rcpt_counter`, " \
    "`msg_total`, `rcpt_total`, COALESCE(CAST(UNIX_TIMESTAMP(`reset_at`) * 1000000 AS SIGNED), 0), "  \
    "COALESCE(`msg_quota`, -1), COALESCE(`rcpt_quota`, -1), COALESCE(`block_action` + 0, 0), `notified`"

void cachesync_parse_row(MYSQL_ROW row, struct db_row *out);

/* Under the entry's lock: take the database's row, plus what is queued. A
 * newer reset_at than the cache knows resets the entry first. The row's
 * notified bits are taken unless the entry has queued records that
 * changed them (those are newer than the row). */
void cachesync_apply_row(struct cache_entry *e, bool created, void *row);

/* Load the most recently updated rows (as many as the cache holds).
 * Returns false (logged) when the database cannot be read. */
bool cachesync_preload(MYSQL *db, struct shm *shm);

/* Fill the sliding windows of quota.windows from the messages rows of
 * the last window length (at start: the windows live in shared memory). */
bool cachesync_rebuild_windows(MYSQL *db, struct shm *shm, const struct rg_config *cfg, char *err, size_t errsize);

/* Make the domain_quotas rows the shared domain table. */
bool cachesync_load_domains(MYSQL *db, struct shm *shm, char *err, size_t errsize);

/* One page of the writer's refresh (cacherefresh.h): up to page_rows rows
 * with id > after_id in the order of id, applied to the cache (rows not
 * cached loaded while it has room), marked seen in round; the read's
 * transaction ended. *read: rows read (fewer than page_rows: the last
 * page); *last_id: the last one's id. False with err on a database error. */
bool cachesync_refresh_page(MYSQL *db, struct shm *shm, uint64_t after_id, unsigned page_rows, uint16_t round,
                            unsigned long *read, uint64_t *last_id, char *err, size_t errsize);

/* The smallest and largest ratelimits ids (1 and 0: none), the read's
 * transaction ended: where the reset's chunks and the refresh's pages go. */
bool cachesync_id_range(MYSQL *db, uint64_t *lo, uint64_t *hi, char *err, size_t errsize);

/* After a refresh pass of round that began when the largest id was
 * max_id: drop the cached senders it did not find whose rows are gone
 * (checked again by id, since an entry made again after its page was read
 * was not seen either) and that have nothing queued. *dropped: how many. */
bool cachesync_sweep_gone(MYSQL *db, struct shm *shm, uint16_t round, uint64_t max_id, uint32_t *dropped, char *err,
                          size_t errsize);

/* The writer's progress: (epoch, seq) of the last committed record. */
struct progress {
    uint64_t epoch, seq;
};

/* The writer writes over WRITER_LANES database connections at once, each
 * for its own share of the senders (by the hash of the cache key, so a
 * sender's records stay in one lane and in order), and keeps one progress
 * row per lane: "NAME" for lane 0 (the row of a single-connection writer),
 * "NAME#2" and so on. Changing the number breaks the mapping of records
 * queued before: it is a constant, not a setting. */
#define WRITER_LANES 2
unsigned writer_lane(const char *sender);

/* The same from the fnv1a64 hash of the sender's cache key. */
static inline unsigned writer_lane_of_hash(uint64_t key_hash)
{
    return (unsigned)(key_hash >> 32) % WRITER_LANES;
}
void progress_row_name(const char *writer, unsigned lane, char *buf, size_t size);

static inline bool progress_covers(const struct progress *p, uint64_t epoch, uint64_t seq)
{
    return epoch < p->epoch || (epoch == p->epoch && seq <= p->seq);
}

/* Every lane's progress; a lane without a row yet takes lane 0's, which is
 * what a writer of one connection (before lanes) had written for all. */
bool cachesync_read_progress(MYSQL *db, const char *writer, struct progress p[WRITER_LANES], char *err,
                             size_t errsize);

static inline bool progress_covers_record(const struct progress p[WRITER_LANES], const struct msg_record *r)
{
    return progress_covers(&p[writer_lane(r->sender)], r->epoch, r->seq);
}

/* Add a queued, not yet committed record to the cache (crash recovery). */
void cachesync_replay_record(struct shm *shm, const struct rg_config *cfg, const struct msg_record *rec);

/* Reset every cached sender whose last reset is older than boundary_us:
 * counters and queued counts to 0, quota back to quota_reset unless
 * locked. Returns the senders reset. */
uint32_t cachesync_period_reset(struct shm *shm, int64_t boundary_us);

/* The period reset in the database, reset_at = boundary (rows already
 * reset at or after it are left alone, so several hosts resetting at one
 * boundary do it once), in chunks of at most chunk_rows rows by ranges of
 * id, each its own transaction (one bounded Galera writeset, row locks held
 * for one chunk: a single UPDATE of a million rows held every sender's row
 * for seconds, and on Galera paused the cluster while the other nodes
 * applied it). Idempotent: a reset that failed part way is done again and
 * resets only the rows left. The purge of old messages that follows it is
 * chunked likewise (purge.h). *reset: the rows reset, also on failure. */
bool cachesync_db_reset(MYSQL *db, int64_t boundary_us, long chunk_rows, unsigned long long *reset, char *err,
                        size_t errsize);

#endif
