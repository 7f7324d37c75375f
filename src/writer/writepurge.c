/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * writepurge.c - the writer's paced retention purge (writepurge.h): owns
 * the pacing of the chunks, their counts in the shared statistics and the
 * purge's log lines. The statements are purge.c's.
 */
#include "writepurge.h"
#include "log.h"
#include "util.h"
#include "writelane.h"

#include <stdio.h>
#include <stdlib.h>

void writepurge_start(struct writepurge *wp, const struct rg_config *cfg)
{
    if (cfg->message_retention <= 0)
        return;
    wp->pending = true;
    wp->begun = false;
    wp->next_ms = 0;
}

/* A failed step: a conflict waits a pause and a few random milliseconds
 * (two hosts that collided do not collide again at once); anything else is
 * the caller's outage. */
static bool step_failed(struct writepurge *wp, struct shm *shm, const struct rg_config *cfg, unsigned errnum,
                        const char *err)
{
    if (!lanes_conflict_error(errnum))
        return false;
    STAT_ADD(shm, db_conflicts, 1);
    log_debug("writer: purge: conflict, the chunk is tried again: %s", err);
    wp->next_ms = clock_monotonic_ms() + cfg->purge.pause + 1 + rand() % 20;
    return true;
}

bool writepurge_step(struct writepurge *wp, MYSQL *db, struct shm *shm, const struct rg_config *cfg, char *err,
                     size_t errsize)
{
    unsigned errnum = 0;
    unsigned long long n;

    if (!wp->pending || clock_monotonic_ms() < wp->next_ms)
        return true;
    if (!wp->begun) {
        if (!purge_begin(db, cfg->message_retention, cfg->purge.chunk_rows, &wp->run, &errnum, err, errsize))
            return step_failed(wp, shm, cfg, errnum, err);
        wp->begun = true;
        log_debug("writer: purge of the messages created before %s begins", wp->run.cutoff);
    }
    wp->run.chunk_rows = cfg->purge.chunk_rows;     /* a reload applies it to the next chunk */
    if (!purge_chunk(db, &wp->run, &n, &errnum, err, errsize))
        return step_failed(wp, shm, cfg, errnum, err);
    STAT_ADD(shm, db_purged_rows, n);
    STAT_ADD(shm, db_purge_chunks, 1);
    wp->next_ms = clock_monotonic_ms() + cfg->purge.pause;
    if (wp->run.done) {
        wp->pending = false;
        if (wp->run.rows > 0)
            log_notice("writer: purge: %llu message(s) created before %s deleted in %llu chunk(s)", wp->run.rows,
                       wp->run.cutoff, wp->run.chunks);
    }
    return true;
}

int writepurge_due_in_ms(const struct writepurge *wp)
{
    if (!wp->pending)
        return -1;
    int64_t left = wp->next_ms - clock_monotonic_ms();
    return left > 0 ? (int)(left < 1000 ? left : 1000) : 0;
}
