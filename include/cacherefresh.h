/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * cacherefresh.h - the writer's refresh of the cache from `ratelimits`
 * (every cache.refresh_interval seconds, and when a command asks), in
 * pages between its write rounds: quotas an operator edited, other hosts'
 * counts, rows made by hand, rows deleted.
 *
 * One statement reading every row held the writer for as long as the
 * table took to read: about a second with a million senders, every 10
 * seconds, during which no record was written (issue 32's bench-year).
 * A pass reads REFRESH_PAGE_ROWS rows at a time in the order of id, one
 * page per housekeeping step, so a write round runs between two pages.
 * When the last page is read, the cached senders the pass did not find
 * and whose rows are gone are dropped (cachesync_sweep_gone).
 */
#ifndef RG_CACHEREFRESH_H
#define RG_CACHEREFRESH_H

#include "shm.h"

#include <mysql.h>
#include <stdbool.h>
#include <stdint.h>

#define REFRESH_PAGE_ROWS 5000

struct cacherefresh {
    bool active;            /* a pass is under way */
    uint16_t round;         /* the pass's mark in the entries it finds */
    uint64_t after_id;      /* the next page begins after this id */
    uint64_t max_id;        /* the largest id when the pass began */
    uint32_t asked;         /* the refresh requests it serves (refresh_requests when it began) */
    unsigned long rows;     /* rows read by this pass */
    unsigned pages;
};

/* One page of the pass (a pass begun if none is: the domain defaults read
 * first, asked recorded). *done when the pass has read its last page and
 * swept. False with err on a database error: the pass goes on from the
 * same page at the next step. */
bool cacherefresh_step(struct cacherefresh *r, MYSQL *db, struct shm *shm, uint32_t asked, bool *done, char *err,
                       size_t errsize);

/* Forget the pass under way (a period reset: the next pass reads afresh). */
void cacherefresh_abort(struct cacherefresh *r);

#endif
