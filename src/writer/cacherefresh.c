/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * cacherefresh.c - the writer's paged refresh of the cache (cacherefresh.h):
 * owns the pass's state, one page per step. The statements are
 * cachesync.c's.
 */
#include "cacherefresh.h"
#include "cachesync.h"
#include "log.h"

bool cacherefresh_step(struct cacherefresh *r, MYSQL *db, struct shm *shm, uint32_t asked, bool *done, char *err,
                       size_t errsize)
{
    *done = false;
    if (!r->active) {
        uint64_t min_id, max_id;
        if (!cachesync_load_domains(db, shm, err, errsize) || !cachesync_id_range(db, &min_id, &max_id, err, errsize))
            return false;
        r->active = true;
        r->round = (uint16_t)(r->round + 1 ? r->round + 1 : 1);
        r->after_id = 0;
        r->max_id = max_id;
        r->asked = asked;
        r->rows = 0;
        r->pages = 0;
    }
    unsigned long read;
    uint64_t last;
    if (!cachesync_refresh_page(db, shm, r->after_id, REFRESH_PAGE_ROWS, r->round, &read, &last, err, errsize))
        return false;
    r->after_id = last;
    r->rows += read;
    r->pages++;
    if (read == REFRESH_PAGE_ROWS)
        return true;
    uint32_t dropped;
    if (!cachesync_sweep_gone(db, shm, r->round, r->max_id, &dropped, err, errsize))
        return false;
    if (dropped)
        log_info("refresh: %u sender(s) deleted from the database dropped from the cache", dropped);
    log_debug("writer: refresh: %lu row(s) read in %u page(s)", r->rows, r->pages);
    r->active = false;
    *done = true;
    return true;
}

void cacherefresh_abort(struct cacherefresh *r)
{
    r->active = false;
}
