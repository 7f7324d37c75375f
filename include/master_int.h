/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * master_int.h - what the master's files share, and nobody else: struct
 * master (the running daemon's state) and each file's entry points.
 *
 *   master.c          master_run: start, the main loop, stop; the
 *                     replay of a previous run's records; the reset
 *                     schedule and the refresh requests
 *   master_start.c    start-up (log, accounts, daemonizing, directories,
 *                     listeners, privilege drop, pidfile, shared memory,
 *                     queues, pipes) and the final release of it all
 *   master_sig.c      signal handlers, the self-pipe, the pending events
 *   master_spawn.c    the pool: spawning workers, writer, notifier and
 *                     the metrics process,
 *                     reaping (the child exit-code protocol, rateguard.h),
 *                     back-off, stopping the children
 *   master_reload.c   HUP: a new configuration built from the old
 *   master_recover.c  what a start takes over from the last run (the
 *                     database's rows or the counter snapshot) and what a
 *                     stop leaves for the next one
 *
 * Ownership: one struct master lives in master_run's frame; its cfg is
 * owned (replaced by master_reload, freed by master_finish).
 */
#ifndef RG_MASTER_INT_H
#define RG_MASTER_INT_H

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "cachesync.h"
#include "listener.h"
#include "shm.h"
#include "status.h"

struct rg_config;

/* A helper process the master keeps running (a new one after a
 * back-off when it dies). */
struct helper_proc {
    pid_t pid;                      /* 0 when none runs */
    time_t started, backoff_until;
    int backoff_s;
};

struct master {
    struct rg_config *cfg;
    const char *config_path;
    struct listeners listeners;
    struct shm shm;
    int lifeline[2];
    int wake_fd;
    int pidfile_fd;
    bool foreground;
    bool stopping;                  /* a child exited RG_CHILD_FATAL: stop the daemon */
    bool writer_fatal;              /* and it was the writer: none is started to drain */
    time_t started;
    pid_t writer_pid;
    time_t writer_started, writer_backoff_until;
    int writer_backoff_s;
    struct helper_proc notifier;    /* none runs when the webhook, Sentry and the report are off */
    struct helper_proc metricsd;    /* none runs without metrics_fd */
    int metrics_fd;                 /* metrics.listen bound, -1: none (off, or tried again each few s) */
    time_t metrics_retry_at;
    time_t spawn_backoff_until;     /* workers crashing: no spawning before this */
    int spawn_backoff_s;
    time_t next_reset;              /* quota.reset_schedule boundary, 0 = none */
    time_t reset_done;              /* the last boundary the cache was reset at, 0 = none */
    char queue_path[4200], spool_path[4200], ack_path[4200], notify_path[4200], writer_name[512];
    char snapshot_path[4200], journal_path[4200];
};

/* ---- master_start.c ---- */

/* Root's part of the start (log, accounts, daemonizing, directories,
 * listeners), the privilege drop and the pidfile. Fatal on failure. */
void master_start(struct master *m);

/* Shared memory, the Sentry queue and the write-back and webhook queues
 * (reopened with what the last run left in them). Fatal on failure. */
void master_open_state(struct master *m);

/* The writer's eventfd, the self-pipe and the lifeline. Fatal on failure. */
void master_open_pipes(struct master *m);

/* Where errors go (Sentry, when a DSN is set), said once; at start and
 * at each reload. */
void master_sentry_announce(const struct rg_config *cfg);

/* Release what master_start and master_open_state took, the cfg too. */
void master_finish(struct master *m);

/* ---- master_sig.c ---- */

enum master_event { MASTER_EV_HUP, MASTER_EV_REOPEN_LOGS, MASTER_EV_CHLD, MASTER_EV_REFRESH, MASTER_EVENTS };

/* Catch the master's signals (handlers only set flags; the self-pipe,
 * once open, wakes the loop). */
void master_sig_install(void);

/* Open the self-pipe; false with errno set on failure. */
bool master_sig_open(void);

/* The self-pipe's ends: the loop polls the read end; workers write a
 * byte to the write end when they turn busy. */
int master_sig_read_fd(void);
int master_sig_write_fd(void);

/* Empty the self-pipe after the loop woke up. */
void master_sig_drain(void);

/* TERM or INT arrived (never cleared). */
bool master_sig_stop_requested(void);

/* Whether ev arrived since the last call; clears it. */
bool master_sig_take(enum master_event ev);

/* The status dumps asked for since the last call (USR1, `rateguard
 * status`, `rateguard top`), cleared, and the most rows a top dump was
 * asked for in *top_rows; true if any. */
bool master_sig_take_dumps(bool dumps[STATUS_FORMATS], unsigned *top_rows);

/* ---- master_spawn.c ---- */

/* Keep the pool within workers.min..max with min_spare..max_spare idle;
 * start the writer and the notifier when they are due. */
void master_pool_maintain(struct master *m);

/* No worker idle and none may be started now. */
bool master_pool_saturated(struct master *m);

/* Reap every child that exited and act on its exit code. */
void master_reap(struct master *m);

/* How a child ended, by the exit-code protocol (rateguard.h). */
enum child_verdict { CHILD_RETIRED, CHILD_FATAL, CHILD_SICK, CHILD_CRASHED };
enum child_verdict master_child_verdict(int wait_status);

/* Act on one child's end (wait_status from waitpid): free its slot or
 * pid, and by the verdict nothing, a back-off, or m->stopping. */
void master_child_exited(struct master *m, pid_t pid, int wait_status);

/* TERM the workers and the notifier, then the writer (which drains the
 * queue), each KILLed past its deadline; close the lifeline. */
void master_stop_children(struct master *m);

/* ---- master_reload.c ---- */

/* HUP: a valid new configuration replaces the old one (its restart-only
 * settings kept); the children are recycled to pick it up. */
void master_reload(struct master *m);

/* ---- master_recover.c ---- */

/* Fill the cache before serving: the database's rows (done receives the
 * writer's progress), or the counter snapshot when it is down. Fatal on a
 * schema older than this binary's. */
void master_recover_sync(struct master *m, struct progress done[WRITER_LANES]);

/* After the replay of the previous run's records, at a start with the
 * database down: the block journal on top (blockjournal.h). */
void master_recover_journal(struct master *m);

/* At stop: the counter snapshot, and whether records are left for the
 * next start (logged). Returns true when everything was written. */
bool master_recover_save(struct master *m);

#endif
