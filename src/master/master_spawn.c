/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * master_spawn.c - the master's children: forking workers (one per
 * scoreboard slot), the writer, the notifier and the metrics process; keeping the worker pool
 * between workers.min and workers.max with min_spare..max_spare idle (a
 * worker that turns busy pokes the master, so a new spare is forked at
 * once); reaping, with the back-off that keeps a crash loop from
 * fork-looping, by the exit-code protocol (rateguard.h: done, fatal,
 * sick); and stopping them all. Owns the scoreboard's slot states
 * as the master sees them and the pids and back-off state in struct master.
 *
 * Children hold the read end of the lifeline pipe whose write end only
 * the master has, so they notice at once when the master is gone,
 * however it died.
 */
#include "master_int.h"
#include "config.h"
#include "errqueue.h"
#include "log.h"
#include "metricsd.h"
#include "notifier.h"
#include "rateguard.h"
#include "util.h"
#include "worker.h"
#include "writer.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKER_STOP_DEADLINE_S 10   /* TERM to workers, then KILL */
#define WRITER_STOP_DEADLINE_S 60   /* time the writer gets to drain the queue */
#define BACKOFF_RESET_S 10          /* a helper that lived this long was no crash loop */
#define METRICS_RETRY_S 5           /* metrics.listen not bound: the next try */

/* In a fresh child: drop what only the master may hold. */
static void child_setup(struct master *m)
{
    close(m->lifeline[1]);
    close(master_sig_read_fd());
    close(m->pidfile_fd);
}

/* The metrics socket is the metrics process's alone. */
static void close_metrics_fd(struct master *m)
{
    if (m->metrics_fd >= 0)
        close(m->metrics_fd);
}

static void spawn_worker(struct master *m, uint32_t slot)
{
    struct worker_slot *ws = &m->shm.scoreboard.slot[slot];
    memset(ws, 0, sizeof(*ws));
    ws->state = SLOT_STARTING;
    pid_t pid = fork();
    if (pid < 0) {
        ws->state = SLOT_FREE;
        log_error("fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        child_setup(m);
        close_metrics_fd(m);
        errqueue_set_process("worker");
        struct worker_ctx ctx = {.cfg = m->cfg, .listeners = &m->listeners, .shm = &m->shm,
                                 .slot = slot, .lifeline_fd = m->lifeline[0],
                                 .master_poke_fd = master_sig_write_fd(), .journal_path = m->journal_path};
        worker_main(&ctx);
    }
    ws->pid = pid;
}

static __attribute__((noreturn)) void run_writer(struct master *m)
{
    errqueue_set_process("writer");
    struct writer_ctx ctx = {.cfg = m->cfg, .shm = &m->shm, .name = m->writer_name,
                             .spool_path = m->spool_path, .ack_path = m->ack_path,
                             .snapshot_path = m->snapshot_path, .journal_path = m->journal_path, .lifeline_fd = m->lifeline[0], .wake_fd = m->wake_fd};
    writer_main(&ctx);
}

static __attribute__((noreturn)) void run_notifier(struct master *m)
{
    errqueue_set_process("notifier");
    struct notifier_ctx ctx = {.cfg = m->cfg, .shm = &m->shm, .lifeline_fd = m->lifeline[0]};
    notifier_main(&ctx);
}

static __attribute__((noreturn)) void run_metricsd(struct master *m)
{
    errqueue_set_process("metrics");
    struct metricsd_ctx ctx = {.cfg = m->cfg, .shm = &m->shm, .listen_fd = m->metrics_fd,
                               .lifeline_fd = m->lifeline[0]};
    metricsd_main(&ctx);
}

/* Fork a helper process (writer, notifier): it serves no client, so it
 * holds neither the listening sockets nor the master's pipe. Returns its
 * pid, 0 if fork failed (logged; the pool loop tries again). */
static pid_t spawn_helper(struct master *m, void (*run)(struct master *))
{
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        return 0;
    }
    if (pid == 0) {
        child_setup(m);
        close(master_sig_write_fd());
        for (size_t i = 0; i < m->listeners.count; i++)
            close(m->listeners.fds[i]);
        if (run != run_metricsd)
            close_metrics_fd(m);
        run(m);
        _exit(RG_EXIT_RUNTIME);
    }
    return pid;
}

/* Backoffs, retries and deadlines here count on CLOCK_MONOTONIC, in whole
 * seconds: a step of the wall clock neither cuts them short nor stretches
 * them by its size. */
static time_t mono_s(void)
{
    return (time_t)(clock_monotonic_ms() / 1000);
}

static void spawn_writer(struct master *m)
{
    m->writer_pid = m->shm.hdr->writer_pid = spawn_helper(m, run_writer);
    m->writer_started = mono_s();
}

static void spawn_kept(struct master *m, struct helper_proc *h, void (*run)(struct master *))
{
    if (h->pid == 0 && mono_s() >= h->backoff_until) {
        h->pid = spawn_helper(m, run);
        h->started = mono_s();
    }
}

/* Sentry and the scheduled report need the notifier even without the
 * webhook (sentrysend.c, report.c). */
static bool notifier_wanted(const struct rg_config *cfg)
{
    return cfg->sentry_dsn.key[0] != '\0' || cfg->report.enabled;
}

/* Workers that count towards the pool (not asked to retire), and how
 * many of them are idle or about to be. */
static void pool_count(struct master *m, uint32_t *running, uint32_t *idle)
{
    struct scoreboard *sb = &m->shm.scoreboard;
    *running = *idle = 0;
    for (uint32_t i = 0; i < sb->sh->slots; i++) {
        uint8_t st = __atomic_load_n(&sb->slot[i].state, __ATOMIC_ACQUIRE);
        if (st == SLOT_FREE || sb->slot[i].retire)
            continue;
        (*running)++;
        if (st == SLOT_IDLE || st == SLOT_STARTING)
            (*idle)++;
    }
}

/* No worker idle and none may be started now (workers.max reached, or
 * spawning slowed down after crashes). */
bool master_pool_saturated(struct master *m)
{
    uint32_t running, idle;
    pool_count(m, &running, &idle);
    return idle == 0 && (running >= (uint32_t)m->cfg->workers.max || mono_s() < m->spawn_backoff_until);
}

/* Keep workers.min running and min_spare..max_spare idle, within
 * workers.max. Extra idle workers are asked to retire. */
void master_pool_maintain(struct master *m)
{
    const struct rg_config *cfg = m->cfg;
    struct scoreboard *sb = &m->shm.scoreboard;
    uint32_t running, idle;

    pool_count(m, &running, &idle);
    if (mono_s() >= m->spawn_backoff_until) {
        for (uint32_t i = 0; i < sb->sh->slots && running < (uint32_t)cfg->workers.max &&
                             (running < (uint32_t)cfg->workers.min || idle < (uint32_t)cfg->workers.min_spare);
             i++) {
            if (sb->slot[i].state != SLOT_FREE)
                continue;
            spawn_worker(m, i);
            running++;
            idle++;
        }
    }
    for (uint32_t i = 0; i < sb->sh->slots && idle > (uint32_t)cfg->workers.max_spare &&
                         running > (uint32_t)cfg->workers.min;
         i++) {
        if (sb->slot[i].state == SLOT_IDLE && !sb->slot[i].retire) {
            sb->slot[i].retire = 1;
            idle--;
            running--;
        }
    }
    if (m->writer_pid == 0 && mono_s() >= m->writer_backoff_until)
        spawn_writer(m);
    if (m->shm.notify.sh || notifier_wanted(m->cfg))
        spawn_kept(m, &m->notifier, run_notifier);
    /* The port may be held a moment by the metrics process of a master
     * that was killed, or by another program: tried again, quietly. */
    if (m->metrics_fd < 0 && m->cfg->metrics_listen.salen && mono_s() >= m->metrics_retry_at) {
        m->metrics_retry_at = mono_s() + METRICS_RETRY_S;
        m->metrics_fd = metricsd_listen(m->cfg, true);
    }
    if (m->metrics_fd >= 0) {
        spawn_kept(m, &m->metricsd, run_metricsd);
        m->shm.hdr->metrics_pid = m->metricsd.pid;
    }
}

/* The delay before the next spawn: 1, 2, 4 ... 30 s while deaths follow
 * each other; a child that had lived or served before dying starts the
 * series afresh (or a daemon would wait 30 s after every later death). */
static int backoff(int *seconds, time_t *until, bool lived)
{
    if (lived)
        *seconds = 0;
    *seconds = *seconds ? *seconds * 2 : 1;
    if (*seconds > 30)
        *seconds = 30;
    *until = mono_s() + *seconds;
    return *seconds;
}

enum child_verdict master_child_verdict(int status)
{
    if (WIFSIGNALED(status))
        return CHILD_CRASHED;
    switch (WEXITSTATUS(status)) {
    case RG_CHILD_DONE:
        return CHILD_RETIRED;
    case RG_CHILD_FATAL:
        return CHILD_FATAL;
    case RG_CHILD_SICK:
    default:
        return CHILD_SICK;
    }
}

/* A child that died sick or crashed: the delay before its successor. A
 * child dying before it did any work is a crash loop in the making: slow
 * respawning down (1, 2, 4 ... 30 s). */
static int respawn_delay(struct master *m, bool is_writer, struct helper_proc *helper, bool served)
{
    time_t now = mono_s();
    if (is_writer)
        return backoff(&m->writer_backoff_s, &m->writer_backoff_until, now - m->writer_started >= BACKOFF_RESET_S);
    if (helper)
        return backoff(&helper->backoff_s, &helper->backoff_until, now - helper->started >= BACKOFF_RESET_S);
    if (!served)
        return backoff(&m->spawn_backoff_s, &m->spawn_backoff_until, false);
    m->spawn_backoff_s = 0;
    return 0;
}

void master_child_exited(struct master *m, pid_t pid, int status)
{
    struct scoreboard *sb = &m->shm.scoreboard;
    bool is_writer = pid == m->writer_pid;
    struct helper_proc *helper = pid == m->notifier.pid ? &m->notifier : pid == m->metricsd.pid ? &m->metricsd : NULL;
    bool served = false;

    if (is_writer)
        m->writer_pid = 0;
    if (helper)
        helper->pid = 0;
    for (uint32_t i = 0; i < sb->sh->slots; i++)
        if (sb->slot[i].pid == pid) {
            served = sb->slot[i].connections > 0;
            memset(&sb->slot[i], 0, sizeof(sb->slot[i]));
        }
    const char *who = is_writer                  ? "writer"
                      : helper == &m->notifier   ? "notifier"
                      : helper == &m->metricsd   ? "metrics process"
                                                 : "worker";
    char how[64];
    switch (master_child_verdict(status)) {
    case CHILD_RETIRED:
        return;
    case CHILD_FATAL:
        log_error("%s %ld exited with status %d (fatal: its configuration or environment is unusable); "
                  "stopping the daemon", who, (long)pid, WEXITSTATUS(status));
        m->stopping = true;
        m->writer_fatal = m->writer_fatal || is_writer;
        return;
    case CHILD_CRASHED:
        errqueue_next_signal(WTERMSIG(status));    /* a tag of the Sentry event */
        snprintf(how, sizeof(how), "killed by signal %d%s", WTERMSIG(status), WCOREDUMP(status) ? " (core dumped)" : "");
        break;
    case CHILD_SICK:
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
        break;
    }
    int delay = respawn_delay(m, is_writer, helper, served);
    if (delay > 0)
        log_error("%s %ld %s; the next one starts in %d s", who, (long)pid, how, delay);
    else
        log_error("%s %ld %s", who, (long)pid, how);
}

void master_reap(struct master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        master_child_exited(m, pid, status);
}

static unsigned live_workers(struct master *m)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < m->shm.scoreboard.sh->slots; i++)
        if (m->shm.scoreboard.slot[i].pid > 0)
            n++;
    return n;
}

/* Workers, notifier and metrics process: TERM, the deadline, then KILL. */
static void stop_workers(struct master *m)
{
    struct scoreboard *sb = &m->shm.scoreboard;
    time_t deadline = mono_s() + WORKER_STOP_DEADLINE_S;

    for (uint32_t i = 0; i < sb->sh->slots; i++)
        if (sb->slot[i].pid > 0)
            kill(sb->slot[i].pid, SIGTERM);
    struct helper_proc *helpers[] = {&m->notifier, &m->metricsd};
    for (size_t i = 0; i < 2; i++)
        if (helpers[i]->pid > 0)
            kill(helpers[i]->pid, SIGTERM);     /* pending notifications stay queued */
    while ((live_workers(m) > 0 || m->notifier.pid > 0 || m->metricsd.pid > 0) && mono_s() < deadline) {
        master_reap(m);
        if (live_workers(m) > 0 || m->notifier.pid > 0 || m->metricsd.pid > 0)
            usleep(10000);
    }
    for (size_t i = 0; i < 2; i++)
        if (helpers[i]->pid > 0) {
            log_warning("%s did not stop within %d s, killing it",
                        helpers[i] == &m->notifier ? "notifier" : "metrics process", WORKER_STOP_DEADLINE_S);
            kill(helpers[i]->pid, SIGKILL);
            waitpid(helpers[i]->pid, NULL, 0);
            helpers[i]->pid = 0;
        }
    for (uint32_t i = 0; i < sb->sh->slots; i++)
        if (sb->slot[i].pid > 0) {
            log_warning("worker %ld did not stop within %d s, killing it", (long)sb->slot[i].pid,
                        WORKER_STOP_DEADLINE_S);
            kill(sb->slot[i].pid, SIGKILL);
        }
    while (live_workers(m) > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0)
            break;
        master_child_exited(m, pid, status);
    }
}

/* TERM: workers first (each finishes the request in hand), then the
 * writer drains the queue. KILL only past the deadlines. */
void master_stop_children(struct master *m)
{
    stop_workers(m);
    if (m->writer_pid == 0 && !m->writer_fatal && wqueue_depth(&m->shm.queue) > 0)
        spawn_writer(m);
    if (m->writer_pid > 0) {
        kill(m->writer_pid, SIGTERM);
        time_t deadline = mono_s() + WRITER_STOP_DEADLINE_S;
        while (m->writer_pid > 0 && mono_s() < deadline) {
            master_reap(m);
            if (m->writer_pid > 0)
                usleep(10000);
        }
        if (m->writer_pid > 0) {
            log_warning("writer did not finish within %d s, killing it", WRITER_STOP_DEADLINE_S);
            kill(m->writer_pid, SIGKILL);
            waitpid(m->writer_pid, NULL, 0);
        }
    }
    close(m->lifeline[1]);
}
