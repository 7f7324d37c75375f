/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * master_recover.c - what a start takes over from the last run, and what
 * a stop leaves for the next one. At start: the database's rows and the
 * writer's progress (the cache is filled before serving), or, with the
 * database down, the counter snapshot and, after the replayed records, the
 * block journal. At stop: a fresh snapshot, and the
 * records not yet written, said aloud. The replay of those records into
 * the cache at the next start is master.c's (replay_queue, replay_spool).
 * Owns the snapshot file's use by the master (snapshot.c its format).
 */
#include "master_int.h"
#include "blockjournal.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "period.h"
#include "rateguard.h"
#include "snapshot.h"
#include "util.h"
#include "watchsync.h"

#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The database is down at start: the counter snapshot, if sound, stands
 * in for its rows until the writer reads them. One made before a
 * reset_schedule boundary is reset at the last boundary passed (and the
 * writer owes the database that reset). A reset made by `cleanup` or
 * `reset` meanwhile cannot be known before the database is back. */
static void load_snapshot(struct master *m)
{
    char err[1024];
    int64_t created_us = 0;
    uint32_t loaded = 0;

    switch (snapshot_load(&m->shm, m->snapshot_path, m->writer_name, &created_us, &loaded, err, sizeof(err))) {
    case SNAPSHOT_ABSENT:
        log_error("preload: no counter snapshot %s either; starting with an empty cache", m->snapshot_path);
        return;
    case SNAPSHOT_REFUSED:
        log_warning("preload: counter snapshot %s refused, not trusted: %s; starting with an empty cache",
                    m->snapshot_path, err);
        return;
    case SNAPSHOT_LOADED:
        break;
    }
    int64_t age_s = (clock_realtime_us() - created_us) / 1000000;
    log_notice("preload: the database is unreachable; %u sender(s) loaded from the counter snapshot %s, "
               "written %lld s ago; decisions go on from it until the database is back",
               loaded, m->snapshot_path, (long long)(age_s > 0 ? age_s : 0));
    /* The last boundary directly, not by stepping from created_us: one
     * step per hour from a forged far-past time kept the start busy for
     * hours (issue 25). */
    time_t b = period_last_boundary(m->cfg->reset_schedule, time(NULL));
    if (b == 0 || (int64_t)b * 1000000 <= created_us)
        return;
    uint32_t n = cachesync_period_reset(&m->shm, (int64_t)b * 1000000);
    m->shm.hdr->owed_reset_us = (int64_t)b * 1000000;
    log_notice("preload: the snapshot is older than the last period boundary (%s schedule): %u sender(s) reset; "
               "the database follows when it is back", m->cfg->quota.reset_schedule_text, n);
}

/* Fill the cache before serving: the database's rows. A database down at
 * start is not fatal: rateguard starts from the counter snapshot, or
 * empty. What a previous run had counted but not written yet is replayed
 * afterwards (master.c), past done. */
void master_recover_sync(struct master *m, struct progress done[WRITER_LANES])
{
    char err[1024];
    MYSQL *db = db_connect(m->cfg, err, sizeof(err));

    if (db == NULL) {
        log_error("preload: %s", err);
        load_snapshot(m);
        return;
    }
    /* The writer reads columns of every migration: an older schema would
     * fail each write, so say what to do instead. */
    unsigned version, latest = migrations[migrations_count - 1].version;
    if (migrate_current_version(db, &version, err, sizeof(err)) && version < latest)
        log_fatal(RG_EXIT_RUNTIME, "the database schema is at version %u, this rateguard needs %u: "
                  "run `rateguard migrate` first", version, latest);
    if (!cachesync_read_progress(db, m->writer_name, done, err, sizeof(err)))
        log_error("preload: %s", err);
    for (unsigned lane = 0; lane < WRITER_LANES; lane++)
        wqueue_raise_epoch(&m->shm.queue, done[lane].epoch);
    if (cachesync_preload(db, &m->shm))
        m->shm.hdr->db_read = 1;
    if (!cachesync_rebuild_windows(db, &m->shm, m->cfg, err, sizeof(err)))
        log_error("preload: %s; the windows start empty", err);
    if (!watchsync_preload(db, &m->shm, m->cfg, m->writer_name, err, sizeof(err)))
        log_error("preload: signals: %s; the writer rebuilds them", err);
    mysql_close(db);
}

void master_recover_journal(struct master *m)
{
    if (m->shm.hdr->db_read)
        return;                 /* the database's rows: every block is there */
    uint32_t skipped = 0;
    time_t b = period_last_boundary(m->cfg->reset_schedule, time(NULL));
    uint32_t n = blockjournal_apply(&m->shm, m->journal_path, (int64_t)b * 1000000, &skipped);
    if (n > 0)
        log_notice("preload: %u change(s) of block state from the journal %s applied on top", n, m->journal_path);
    if (skipped > 0)
        log_warning("preload: block journal %s: %u damaged or cut record(s) skipped", m->journal_path, skipped);
}

bool master_recover_save(struct master *m)
{
    char err[1024];

    /* The last counts, for a start while the database is down (not while
     * the cache still stands on an older snapshot: that one stays, with
     * its true age). */
    if (m->shm.hdr->db_read && !m->shm.hdr->cache_from_snapshot) {
        if (snapshot_write(&m->shm, m->snapshot_path, m->journal_path, m->writer_name, err, sizeof(err)))
            log_info("counter snapshot %s written (%u sender(s))", m->snapshot_path, m->shm.hdr->snapshot_senders);
        else
            log_error("counter snapshot: %s", err);
    }
    uint64_t left = wqueue_depth(&m->shm.queue);
    struct stat st;
    bool spooled = stat(m->spool_path, &st) == 0 && st.st_size > 0;
    if (left > 0 || spooled) {
        log_error("stopped with records not written to the database (%llu queued%s); "
                  "the next start writes them", (unsigned long long)left, spooled ? ", more spooled" : "");
        return false;
    }
    unlink(m->spool_path);
    return true;
}
