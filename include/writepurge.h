/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * writepurge.h - the writer's retention purge, paced between its rounds:
 * one chunk (purge.h) per step at most, and purge.pause milliseconds
 * between two chunks, so that records go on being written while millions
 * of rows are deleted.
 *
 * A purge is started when the writer starts (which finishes one a crash
 * or a SIGKILL interrupted: the predicate is idempotent, so nothing needs
 * remembering) and at every reset_schedule boundary; a start while one
 * runs begins it again with the new cutoff (which covers the old one).
 * With message_retention = 0 there is none.
 */
#ifndef RG_WRITEPURGE_H
#define RG_WRITEPURGE_H

#include "config.h"
#include "purge.h"
#include "shm.h"

#include <mysql.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The writer's purge state, owned by struct writer. */
struct writepurge {
    bool pending;               /* a purge is to begin or goes on */
    bool begun;                 /* its cutoff is known (run is valid) */
    int64_t next_ms;            /* monotonic: no chunk before */
    struct purge_run run;
};

/* Ask for a purge, from a new cutoff (a no-op with message_retention = 0). */
void writepurge_start(struct writepurge *wp, const struct rg_config *cfg);

/* At most one chunk, if one is due. A conflict (a deadlock, a Galera
 * certification failure) is counted and tried again after a pause; false
 * with err set when the database failed otherwise (the purge stays
 * pending: the writer's outage handling reconnects, and it goes on). */
bool writepurge_step(struct writepurge *wp, MYSQL *db, struct shm *shm, const struct rg_config *cfg, char *err,
                     size_t errsize);

/* Milliseconds until the next chunk is due (0: now), -1 when none is. */
int writepurge_due_in_ms(const struct writepurge *wp);

#endif
