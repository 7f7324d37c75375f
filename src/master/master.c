/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * master.c - the master process's life: master_run starts the daemon
 * (master_start.c), takes over what the last run left (master_recover.c,
 * and here the replay of its unwritten records into the cache), runs the
 * main loop until TERM, and stops it. The loop acts on what the signal
 * handlers recorded (master_sig.c): children reaped (master_spawn.c),
 * HUP (master_reload.c), log reopening, status dumps, refresh requests;
 * and on the quota.reset_schedule boundaries. Owns the loop and the
 * order of start and stop.
 */
#include "master.h"
#include "master_int.h"
#include "cachesync.h"
#include "config.h"
#include "connlog.h"
#include "listener.h"
#include "log.h"
#include "period.h"
#include "rateguard.h"
#include "spool.h"
#include "status.h"
#include "stress.h"
#include "util.h"
#include "wqueue.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Count the queued records of a previous run into the cache (those the
 * database does not have yet), so that decisions include them. */
static uint64_t replay_queue(struct master *m, const struct progress done[WRITER_LANES])
{
    static char buf[WQUEUE_MAX_RECORD];
    struct wqueue_cursor cur;
    struct msg_record rec;
    size_t len;
    uint64_t n = 0;

    wqueue_cursor_start(&m->shm.queue, &cur);
    while (wqueue_next(&m->shm.queue, &cur, buf, sizeof(buf), &rec, &len))
        if (!progress_covers_record(done, &rec)) {
            cachesync_replay_record(&m->shm, m->cfg, &rec);
            n++;
        }
    return n;
}

/* The same for the spool file: records moved there out of a full queue. */
static uint64_t replay_spool(struct master *m, const struct progress done[WRITER_LANES])
{
    static char buf[WQUEUE_MAX_RECORD];
    struct spool sp;
    struct spool_cursor cur;
    struct msg_record rec;
    size_t len;
    uint64_t n = 0;

    spool_init(&sp, m->spool_path);
    if (!spool_open_readonly(&sp))
        return 0;
    spool_cursor_start(&sp, &cur, true);
    while (spool_next(&sp, &cur, buf, sizeof(buf), &rec, &len))
        if (!progress_covers_record(done, &rec)) {
            cachesync_replay_record(&m->shm, m->cfg, &rec);
            n++;
        }
    off_t left = spool_cursor_left(&sp, &cur);
    if (left > 0)
        log_warning("recovery: %lld byte(s) at the end of %s are not a whole record; ignored", (long long)left,
                    m->spool_path);
    spool_cursor_end(&cur);
    spool_close(&sp);
    return n;
}

/* What a previous run had counted but not written yet (past the writer's
 * progress done), counted into the cache so that decisions include it. */
static void replay_previous_run(struct master *m, const struct progress done[WRITER_LANES])
{
    uint64_t n = replay_spool(m, done) + replay_queue(m, done);
    if (n > 0)
        log_notice("recovery: %llu record(s) counted by the previous run are not in the database yet; "
                   "they are counted in the cache and written now", (unsigned long long)n);
}

/* quota.reset_schedule: the cache here; the writer keeps the same
 * schedule and resets the database before it writes anything newer. */
static void scheduled_reset(struct master *m)
{
    int64_t boundary_us = (int64_t)m->next_reset * 1000000;
    uint32_t n = cachesync_period_reset(&m->shm, boundary_us);
    m->reset_done = m->next_reset;

    wqueue_wake_writer(&m->shm.queue);
    log_notice("period reset (%s schedule): %u cached sender(s) reset; the database follows",
               m->cfg->quota.reset_schedule_text, n);
    m->next_reset = period_next_reset(m->cfg->reset_schedule, time(NULL), m->reset_done);
}

/* SIGWINCH (rateguard cleanup, rateguard reload-cache): the writer
 * re-reads every row, then acknowledges. */
static void request_refresh(struct master *m)
{
    __atomic_fetch_add(&m->shm.hdr->refresh_requests, 1, __ATOMIC_RELEASE);
    wqueue_wake_writer(&m->shm.queue);
}

/* What the signal handlers recorded since the last turn, and the clock. */
static void handle_events(struct master *m)
{
    bool dumps[STATUS_FORMATS];
    unsigned top_rows;

    if (master_sig_take(MASTER_EV_CHLD))
        master_reap(m);
    if (master_sig_take(MASTER_EV_HUP))
        master_reload(m);
    if (master_sig_take(MASTER_EV_REOPEN_LOGS)) {
        log_bump_generation();
        log_notice("log file reopened");
    }
    if (master_sig_take_dumps(dumps, &top_rows))
        status_write(m->cfg, &m->shm, m->started, dumps, top_rows);
    if (master_sig_take(MASTER_EV_REFRESH))
        request_refresh(m);
    if (m->next_reset && time(NULL) >= m->next_reset)
        scheduled_reset(m);
}

/* Until TERM (or a child's fatal exit): keep the pool, sleep in poll on
 * the self-pipe, act. */
static void main_loop(struct master *m)
{
    struct stress stress = {0};
    struct pollfd *p = xcalloc(m->listeners.count + 1, sizeof(*p));

    while (!master_sig_stop_requested() && !m->stopping) {
        /* A saturated pool also watches the listeners, to see at once a
         * connection that finds no worker; in stress it looks often. */
        master_pool_maintain(m);
        nfds_t n = 1;
        p[0] = (struct pollfd){.fd = master_sig_read_fd(), .events = POLLIN};
        if (!stress.active && master_pool_saturated(m))
            for (size_t i = 0; i < m->listeners.count; i++)
                p[n++] = (struct pollfd){.fd = m->listeners.fds[i], .events = POLLIN};
        if (poll(p, n, stress.active ? STRESS_CHECK_MS : 1000) > 0 && p[0].revents)
            master_sig_drain();
        stress_update(&stress, &m->shm, &m->listeners, master_pool_saturated(m));
        connlog_flush(&m->shm, false);
        handle_events(m);
    }
    free(p);
}

int master_run(struct rg_config *cfg, bool foreground, const char *config_path)
{
    struct master m = {.cfg = cfg, .config_path = config_path, .pidfile_fd = -1, .metrics_fd = -1, .foreground = foreground};
    struct progress done[WRITER_LANES] = {{0, 0}};

    master_start(&m);
    master_open_state(&m);
    master_recover_sync(&m, done);
    replay_previous_run(&m, done);
    master_recover_journal(&m);
    master_open_pipes(&m);
    m.started = time(NULL);
    m.shm.hdr->started = (int64_t)m.started;
    m.next_reset = period_next_boundary(cfg->reset_schedule, m.started);
    log_notice("rateguard %s started (pid %ld, workers %ld..%ld, cache %ld entries)", RATEGUARD_VERSION,
               (long)getpid(), cfg->workers.min, cfg->workers.max, cfg->cache.entries);

    main_loop(&m);

    log_notice("stopping");
    master_stop_children(&m);
    connlog_flush(&m.shm, true);    /* the workers are gone: what they left out */
    listeners_close(m.cfg, &m.listeners, true);
    bool all_written = master_recover_save(&m);
    master_finish(&m);
    return all_written && !m.stopping ? RG_EXIT_OK : RG_EXIT_RUNTIME;
}
