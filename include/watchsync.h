/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * watchsync.h - the database side of the hijacked-account watch (watch.h),
 * run by the writer between its rounds, never in the reply path:
 *   - the feed: every second, the `messages` rows of every host committed
 *     since the last read (up to FEED_LAG_S ago) count toward the logins'
 *     networks, countries and per-window rate, so that a login spread over
 *     several hosts is one login (and at start, the last two windows'
 *     rows rebuild them);
 *   - the claims: an episode a worker opened is claimed in `login_signals`
 *     by the first host (a row lock decides), which logs it once, sends
 *     its webhook event once and, for `lock`, sets the row's quota to 0;
 *     the others keep applying its action without logging it again;
 *   - the ends (a window without a trip), logged by the claiming host;
 *   - the fold: once per window, each active login's count of the window
 *     just completed (all hosts' rows) is folded into its baseline in the
 *     database, by one host;
 *   - the adoption: rows changed since the last look (baselines folded,
 *     episodes claimed elsewhere, an operator's clear) are taken into the
 *     cache at every cache.refresh_interval.
 * A database error here is logged (once a minute) and tried again at the
 * next step; it never holds up the writing of records.
 */
#ifndef RG_WATCHSYNC_H
#define RG_WATCHSYNC_H

#include <mysql.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct rg_config;
struct shm;

#define FEED_LAG_S 2        /* rows younger than this wait for the next feed: a commit may be in flight */
#define FOLD_DELAY_S 60     /* a window is folded this long after it ended: the last commits are in */

struct watchsync {
    const char *host;           /* "host/instance": episode_host */
    bool started;
    int64_t feed_from;          /* unix s: the next feed reads rows created from here */
    int64_t adopt_from;         /* unix s: rows updated from here are adopted */
    time_t next_feed, next_adopt, next_walk, last_error_log;
    time_t last_walk;           /* unix s of the last walk: one a second at most for opened episodes */
    bool walk_more;             /* the last walk was full (WALK_MAX): walk again the next second */
    int64_t folded;             /* the last window this host folded (its start) */
    uint32_t pending_seen;      /* shm watch_pending already served */
};

void watchsync_init(struct watchsync *ws, const char *host);

/* At start, before the workers answer: the signals of the current and the
 * previous window rebuilt from every host's rows, and every login's
 * baseline and open episode read, so that the first message after a
 * restart is decided as the last before it. The writer's feed goes on
 * from where this one stopped (shm watch_feed_from). */
bool watchsync_preload(MYSQL *db, struct shm *shm, const struct rg_config *cfg, const char *host, char *err,
                       size_t errsize);

/* One step: whatever is due. db is the writer's connection (autocommit
 * off: every unit is committed or rolled back here). */
void watchsync_step(struct watchsync *ws, MYSQL *db, struct shm *shm, const struct rg_config *cfg);

#endif
