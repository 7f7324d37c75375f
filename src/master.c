/*
 * master.c - owns the daemon's life cycle: start-up (pidfile, listeners,
 * shared memory, preload, privilege drop), the worker pool kept between
 * workers.min and workers.max with min_spare..max_spare idle workers (read
 * from the scoreboard; a worker that turns busy pokes the master so a new
 * spare is forked at once), the writer process, and the signals.
 *
 * Signal handlers only record the signal and write a byte to a self-pipe;
 * the main loop does the work. Children hold the read end of a lifeline
 * pipe whose write end only the master has, so they notice at once when
 * the master is gone, however it died.
 */
#include "master.h"
#include "notifier.h"
#include "cachesync.h"
#include "config.h"
#include "connlog.h"
#include "db.h"
#include "errqueue.h"
#include "sentrysend.h"
#include "listener.h"
#include "log.h"
#include "migrate.h"
#include "windows.h"
#include "period.h"
#include "pidfile.h"
#include "privileges.h"
#include "rateguard.h"
#include "safedir.h"
#include "shm.h"
#include "snapshot.h"
#include "spool.h"
#include "status.h"
#include "stress.h"
#include "util.h"
#include "worker.h"
#include "writer.h"

#include <errno.h>
#include <paths.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKER_STOP_DEADLINE_S 10   /* TERM to workers, then KILL */
#define WRITER_STOP_DEADLINE_S 60   /* time the writer gets to drain the queue */

static volatile sig_atomic_t got_term, got_hup, got_usr2, got_chld, got_winch;
static volatile sig_atomic_t got_usr1[STATUS_FORMATS];  /* the dumps asked for */
static int self_pipe[2] = {-1, -1};

static void on_signal(int sig, siginfo_t *si, void *context)
{
    int saved = errno;
    (void)context;
    if (sig == SIGRTMIN) {
        /* `rateguard status` queues the one format it prints (a real-time
         * signal: two commands at once are both delivered). */
        if (si->si_code == SI_QUEUE && si->si_value.sival_int >= 0 && si->si_value.sival_int < STATUS_FORMATS)
            got_usr1[si->si_value.sival_int] = 1;
        sig = 0;
    }
    switch (sig) {
    case SIGTERM: case SIGINT: got_term = 1; break;
    case SIGHUP: got_hup = 1; break;
    case SIGUSR1:               /* kill -USR1: every dump */
        for (int i = 0; i < STATUS_FORMATS; i++)
            got_usr1[i] = 1;
        break;
    case SIGUSR2: got_usr2 = 1; break;
    case SIGCHLD: got_chld = 1; break;
    case SIGWINCH: got_winch = 1; break;
    }
    if (self_pipe[1] >= 0 && write(self_pipe[1], "s", 1) < 0) {
        /* pipe full: the loop is already due to wake up */
    }
    errno = saved;
}

static void install_signals(void)
{
    struct sigaction sa = {.sa_sigaction = on_signal, .sa_flags = SA_RESTART | SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD, SIGWINCH, SIGRTMIN};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

struct master {
    struct rg_config *cfg;
    const char *config_path;
    struct listeners listeners;
    struct shm shm;
    int lifeline[2];
    int wake_fd;
    int pidfile_fd;
    bool foreground;
    time_t started;
    pid_t writer_pid;
    time_t writer_started, writer_backoff_until;
    int writer_backoff_s;
    pid_t notifier_pid;             /* 0 when none runs (or the webhook is off) */
    time_t notifier_started, notifier_backoff_until;
    int notifier_backoff_s;
    time_t spawn_backoff_until;     /* workers crashing: no spawning before this */
    int spawn_backoff_s;
    time_t next_reset;              /* quota.reset_schedule boundary, 0 = none */
    char queue_path[4200], spool_path[4200], ack_path[4200], notify_path[4200], writer_name[512];
    char snapshot_path[4200];
};

static void daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0)
        log_fatal(RG_EXIT_RUNTIME, "fork: %s", strerror(errno));
    if (pid > 0)
        _exit(RG_EXIT_OK);
    setsid();
    pid = fork();
    if (pid < 0)
        log_fatal(RG_EXIT_RUNTIME, "fork: %s", strerror(errno));
    if (pid > 0)
        _exit(RG_EXIT_OK);
    if (chdir("/") < 0)
        log_fatal(RG_EXIT_RUNTIME, "chdir(/): %s", strerror(errno));
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
}

/* Create path (and missing parents) as a directory; the last component
 * gets mode and, when we are root, the daemon's owner. An existing
 * directory is left as it is. A link planted on the way stops the start:
 * root must not chown where the daemon's user points it (safedir.c). */
static void ensure_dir(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    char err[4400];
    int created;

    switch (safedir_make(path, mode, uid, gid, &created, err, sizeof(err))) {
    case SAFEDIR_REFUSED:
        log_fatal(RG_EXIT_RUNTIME, "cannot start: %s", err);
    case SAFEDIR_ERROR:
        log_error("%s", err);
        return;
    case SAFEDIR_OK:
        break;
    }
    if (created)
        log_info("created directory %s", path);
}

/* The run directory (pidfile), the state directory and the directories of
 * unix sockets (e.g. /var/spool/postfix/rateguard for a chrooted smtpd),
 * owned by the daemon's account so that it can use them after the drop. */
static void prepare_directories(const struct rg_config *cfg, uid_t uid, gid_t gid, gid_t socket_gid)
{
    char dir[4096];

    snprintf(dir, sizeof(dir), "%s", cfg->pidfile);
    *strrchr(dir, '/') = '\0';
    if (dir[0])
        ensure_dir(dir, 0755, uid, gid);
    ensure_dir(cfg->state_dir, 0750, uid, gid);
    for (size_t i = 0; i < cfg->listen.count; i++)
        if (cfg->listen_addrs[i].kind == LISTEN_UNIX) {
            snprintf(dir, sizeof(dir), "%s", cfg->listen_addrs[i].path);
            *strrchr(dir, '/') = '\0';
            if (dir[0])
                ensure_dir(dir, 0750, uid, socket_gid);
        }
}

/* In a fresh child: drop what only the master may hold. */
static void child_setup(struct master *m)
{
    close(m->lifeline[1]);
    close(self_pipe[0]);
    close(m->pidfile_fd);
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
        errqueue_set_process("worker");
        struct worker_ctx ctx = {.cfg = m->cfg, .listeners = &m->listeners, .shm = &m->shm,
                                 .slot = slot, .lifeline_fd = m->lifeline[0],
                                 .master_poke_fd = self_pipe[1]};
        worker_main(&ctx);
    }
    ws->pid = pid;
}

static __attribute__((noreturn)) void run_writer(struct master *m)
{
    errqueue_set_process("writer");
    struct writer_ctx ctx = {.cfg = m->cfg, .shm = &m->shm, .name = m->writer_name,
                             .spool_path = m->spool_path, .ack_path = m->ack_path,
                             .snapshot_path = m->snapshot_path, .lifeline_fd = m->lifeline[0], .wake_fd = m->wake_fd};
    writer_main(&ctx);
}

static __attribute__((noreturn)) void run_notifier(struct master *m)
{
    errqueue_set_process("notifier");
    struct notifier_ctx ctx = {.cfg = m->cfg, .shm = &m->shm, .lifeline_fd = m->lifeline[0]};
    notifier_main(&ctx);
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
        close(self_pipe[1]);
        for (size_t i = 0; i < m->listeners.count; i++)
            close(m->listeners.fds[i]);
        run(m);
        _exit(RG_EXIT_RUNTIME);
    }
    return pid;
}

static void spawn_writer(struct master *m)
{
    m->writer_pid = m->shm.hdr->writer_pid = spawn_helper(m, run_writer);
    m->writer_started = time(NULL);
}

static void spawn_notifier(struct master *m)
{
    m->notifier_pid = spawn_helper(m, run_notifier);
    m->notifier_started = time(NULL);
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
static bool pool_saturated(struct master *m)
{
    uint32_t running, idle;
    pool_count(m, &running, &idle);
    return idle == 0 && (running >= (uint32_t)m->cfg->workers.max || time(NULL) < m->spawn_backoff_until);
}

/* Keep workers.min running and min_spare..max_spare idle, within
 * workers.max. Extra idle workers are asked to retire. */
static void pool_maintain(struct master *m)
{
    const struct rg_config *cfg = m->cfg;
    struct scoreboard *sb = &m->shm.scoreboard;
    uint32_t running, idle;

    pool_count(m, &running, &idle);
    if (time(NULL) >= m->spawn_backoff_until) {
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
    if (m->writer_pid == 0 && time(NULL) >= m->writer_backoff_until)
        spawn_writer(m);
    if ((m->shm.notify.sh || notifier_wanted(m->cfg)) && m->notifier_pid == 0 &&
        time(NULL) >= m->notifier_backoff_until)
        spawn_notifier(m);
}

#define BACKOFF_RESET_S 10     /* a helper that lived this long was no crash loop */

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
    *until = time(NULL) + *seconds;
    return *seconds;
}

/* Book-keeping for one child that exited. */
static void child_exited(struct master *m, pid_t pid, int status)
{
    struct scoreboard *sb = &m->shm.scoreboard;
    bool is_writer = pid == m->writer_pid, is_notifier = pid == m->notifier_pid;
    bool served = false;

    if (is_writer)
        m->writer_pid = 0;
    if (is_notifier)
        m->notifier_pid = 0;
    for (uint32_t i = 0; i < sb->sh->slots; i++)
        if (sb->slot[i].pid == pid) {
            served = sb->slot[i].connections > 0;
            memset(&sb->slot[i], 0, sizeof(sb->slot[i]));
        }
    const char *who = is_writer ? "writer" : is_notifier ? "notifier" : "worker";
    char how[64];
    if (WIFSIGNALED(status)) {
        errqueue_next_signal(WTERMSIG(status));    /* a tag of the Sentry event */
        snprintf(how, sizeof(how), "killed by signal %d%s", WTERMSIG(status), WCOREDUMP(status) ? " (core dumped)" : "");
    } else if (WEXITSTATUS(status) != RG_EXIT_OK)
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
    else
        return;
    /* A child dying before it did any work is a crash loop in the
     * making: slow respawning down (1, 2, 4 ... 30 s). */
    time_t now = time(NULL);
    int delay = 0;
    if (is_writer)
        delay = backoff(&m->writer_backoff_s, &m->writer_backoff_until, now - m->writer_started >= BACKOFF_RESET_S);
    else if (is_notifier)
        delay = backoff(&m->notifier_backoff_s, &m->notifier_backoff_until,
                        now - m->notifier_started >= BACKOFF_RESET_S);
    else if (!served)
        delay = backoff(&m->spawn_backoff_s, &m->spawn_backoff_until, false);
    else
        m->spawn_backoff_s = 0;
    if (delay > 0)
        log_error("%s %ld %s; the next one starts in %d s", who, (long)pid, how, delay);
    else
        log_error("%s %ld %s", who, (long)pid, how);
}

static void reap_children(struct master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        child_exited(m, pid, status);
}

static unsigned live_workers(struct master *m)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < m->shm.scoreboard.sh->slots; i++)
        if (m->shm.scoreboard.slot[i].pid > 0)
            n++;
    return n;
}

/* TERM: workers first (each finishes the request in hand), then the
 * writer drains the queue. KILL only past the deadlines. */
static void stop_children(struct master *m)
{
    struct scoreboard *sb = &m->shm.scoreboard;
    time_t deadline = time(NULL) + WORKER_STOP_DEADLINE_S;

    for (uint32_t i = 0; i < sb->sh->slots; i++)
        if (sb->slot[i].pid > 0)
            kill(sb->slot[i].pid, SIGTERM);
    if (m->notifier_pid > 0)
        kill(m->notifier_pid, SIGTERM);     /* pending notifications stay queued */
    while ((live_workers(m) > 0 || m->notifier_pid > 0) && time(NULL) < deadline) {
        reap_children(m);
        if (live_workers(m) > 0 || m->notifier_pid > 0)
            usleep(10000);
    }
    if (m->notifier_pid > 0) {
        log_warning("notifier did not stop within %d s, killing it", WORKER_STOP_DEADLINE_S);
        kill(m->notifier_pid, SIGKILL);
        waitpid(m->notifier_pid, NULL, 0);
        m->notifier_pid = 0;
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
        child_exited(m, pid, status);
    }

    if (m->writer_pid == 0 && wqueue_depth(&m->shm.queue) > 0)
        spawn_writer(m);
    if (m->writer_pid > 0) {
        kill(m->writer_pid, SIGTERM);
        deadline = time(NULL) + WRITER_STOP_DEADLINE_S;
        while (m->writer_pid > 0 && time(NULL) < deadline) {
            reap_children(m);
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

/* Queue errors for Sentry when a DSN is set, and say where they go (the
 * key masked). */
static void sentry_announce(const struct rg_config *cfg)
{
    char masked[1200];
    bool on = cfg->sentry_dsn.key[0] != '\0';
    errqueue_configure(on, cfg->sentry.rate_limit);
    sentrysend_fatal_to(cfg);      /* a fatal line of the master is sent before it exits */
    if (on) {
        sentry_dsn_masked(&cfg->sentry_dsn, masked, sizeof(masked));
        log_notice("sentry: errors are sent to %s (environment %s, at most one per kind every %ld s)", masked,
                   cfg->sentry.environment, cfg->sentry.rate_limit);
    }
}

/* HUP: a valid new configuration replaces the old one; workers and the
 * writer are recycled so they pick it up (a busy worker when its
 * connection next goes idle). Settings sized at start need a restart. */
static bool same_windows(const struct rg_config *a, const struct rg_config *b)
{
    if (a->quota.windows.count != b->quota.windows.count)
        return false;
    for (size_t i = 0; i < a->quota.windows.count; i++)
        if (a->window_specs[i].limit != b->window_specs[i].limit || a->window_specs[i].seconds != b->window_specs[i].seconds)
            return false;
    return true;
}

static void reload(struct master *m)
{
    char err[1024];
    int code;
    struct rg_config *fresh = config_load(m->config_path, err, sizeof(err), &code);

    if (fresh == NULL) {
        log_error("reload: %s; keeping the running configuration", err);
        return;
    }
    if (fresh->cache.entries != m->cfg->cache.entries || fresh->workers.max != m->cfg->workers.max ||
        fresh->cache.domains != m->cfg->cache.domains)
        log_warning("reload: cache.entries, cache.domains and workers.max take effect at the next restart");
    if (!same_windows(fresh, m->cfg)) {
        /* The counters in shared memory are laid out for the old windows. */
        log_warning("reload: quota.windows takes effect at the next restart");
        struct str_list windows = fresh->quota.windows;
        fresh->quota.windows = m->cfg->quota.windows;
        m->cfg->quota.windows = windows;
        memcpy(fresh->window_specs, m->cfg->window_specs, sizeof(fresh->window_specs));
    }
    fresh->cache.domains = m->cfg->cache.domains;
    if (fresh->listen.count != m->cfg->listen.count)
        log_warning("reload: listen addresses take effect at the next restart");
    if (strcmp(fresh->pidfile, m->cfg->pidfile) != 0 || strcmp(fresh->state_dir, m->cfg->state_dir) != 0 ||
        strcmp(fresh->user, m->cfg->user) != 0 || strcmp(fresh->group, m->cfg->group) != 0)
        log_warning("reload: pidfile, state_dir, user and group take effect at the next restart");
    /* Keep what the running process was built around. */
    fresh->cache.entries = m->cfg->cache.entries;
    fresh->workers.max = m->cfg->workers.max;
    struct str_list listen = fresh->listen;
    fresh->listen = m->cfg->listen;
    m->cfg->listen = listen;
    struct listen_addr *addrs = fresh->listen_addrs;
    fresh->listen_addrs = m->cfg->listen_addrs;
    m->cfg->listen_addrs = addrs;
    char *keep[] = {fresh->pidfile, fresh->state_dir, fresh->user, fresh->group};
    fresh->pidfile = m->cfg->pidfile;
    fresh->state_dir = m->cfg->state_dir;
    fresh->user = m->cfg->user;
    fresh->group = m->cfg->group;
    m->cfg->pidfile = keep[0];
    m->cfg->state_dir = keep[1];
    m->cfg->user = keep[2];
    m->cfg->group = keep[3];
    if (!log_open(fresh, m->foreground))
        log_error("reload: %s", log_file_refusal());
    log_share_generation(&m->shm.hdr->log_generation);
    sentry_announce(fresh);
    m->next_reset = period_next_boundary(fresh->reset_schedule, time(NULL));
    struct rg_config *old = m->cfg;
    m->cfg = fresh;
    for (uint32_t i = 0; i < m->shm.scoreboard.sh->slots; i++)
        if (m->shm.scoreboard.slot[i].pid > 0)
            m->shm.scoreboard.slot[i].retire = 1;
    if (m->writer_pid > 0)
        kill(m->writer_pid, SIGTERM);
    if (m->notifier_pid > 0)
        kill(m->notifier_pid, SIGTERM);
    if (fresh->webhook.enabled && m->shm.notify.sh == NULL)
        log_warning("reload: enabling the webhook takes effect at the next restart");
    config_free(old);
    log_notice("reload: configuration re-read from %s", m->config_path);
}

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

/* Fill the cache before serving: the database's rows, then what a previous
 * run had counted but not written yet. A database down at start is not
 * fatal: rateguard starts from the counter snapshot, or empty. */
static void startup_sync(struct master *m)
{
    char err[1024];
    struct progress done[WRITER_LANES] = {{0, 0}};
    MYSQL *db = db_connect(m->cfg, err, sizeof(err));

    if (db != NULL) {
        /* The writer reads columns of every migration: an older schema
         * would fail each write, so say what to do instead. */
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
        mysql_close(db);
    } else {
        log_error("preload: %s", err);
        load_snapshot(m);
    }
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

    wqueue_wake_writer(&m->shm.queue);
    log_notice("period reset (%s schedule): %u cached sender(s) reset; the database follows",
               m->cfg->quota.reset_schedule_text, n);
    m->next_reset = period_next_boundary(m->cfg->reset_schedule, time(NULL));
}

/* SIGWINCH (rateguard cleanup, rateguard reload-cache): the writer
 * re-reads every row, then acknowledges. */
static void request_refresh(struct master *m)
{
    __atomic_fetch_add(&m->shm.hdr->refresh_requests, 1, __ATOMIC_RELEASE);
    wqueue_wake_writer(&m->shm.queue);
}

int master_run(struct rg_config *cfg, bool foreground, const char *config_path)
{
    struct master m = {.cfg = cfg, .config_path = config_path, .pidfile_fd = -1, .foreground = foreground};
    char err[1024], host[256] = "localhost", instance[64];
    uid_t uid;
    gid_t gid;
    pid_t other;

    /* Before anything else, a log file planted by the daemon's user stops
     * the start (exit 6, like a pidfile in the wrong place): root does not
     * append to it, and running on without the file would hide why. */
    if (!log_open(cfg, foreground))
        log_fatal(RG_EXIT_RUNTIME, "cannot start: %s", log_file_refusal());
    /* Said once, on stderr, while someone can still read it: a daemon that
     * logs nowhere looks like one that has nothing to say. */
    if (!log_reaches_anyone())
        fprintf(stderr, "rateguard: warning: nothing will be logged: %s and no log file is set "
                        "(log { file = \"/var/log/rateguard/rateguard.log\" } or a running syslog)\n",
                cfg->log.syslog ? "syslog (" _PATH_LOG ") cannot be reached" : "syslog is off");
    struct stat cst;
    if ((cfg->database.password[0] || cfg->webhook.secret[0]) && stat(config_path, &cst) == 0 &&
        (cst.st_mode & S_IROTH))
        log_warning("%s is readable by every user and holds the database password or the webhook "
                    "secret: chmod o-r it (e.g. 0640 root:%s)", config_path, cfg->group);
    if (!privileges_resolve(cfg->user, cfg->group, &uid, &gid))
        log_fatal(RG_EXIT_NO_USER, "cannot start: user or group missing");
    /* The unix socket's group: Postfix's, when the daemon has an account
     * of its own (README, Security). */
    gid_t socket_gid = gid;
    if (cfg->socket_group[0] && !privileges_resolve(cfg->user, cfg->socket_group, &uid, &socket_gid))
        log_fatal(RG_EXIT_NO_USER, "cannot start: socket_group missing");
    if (!foreground)
        daemonize();
    /* Signals are caught from the start: a status request or a stop that
     * arrives while we are still starting is served, not fatal. */
    install_signals();
    prepare_directories(cfg, uid, gid, socket_gid);

    /* Root only reads the pidfile (its directory belongs to the daemon's
     * user); it is written after the drop. */
    if ((other = pidfile_running(cfg->pidfile)) != 0)
        log_fatal(RG_EXIT_RUNNING, "already running (pid %ld, pidfile %s)", (long)other, cfg->pidfile);
    if (!listeners_open(cfg, uid, socket_gid, &m.listeners))
        log_fatal(RG_EXIT_BAD_LISTEN, "cannot listen on the configured addresses");
    if (!log_file_owner(uid))
        log_fatal(RG_EXIT_RUNTIME, "cannot start: %s", log_file_refusal());
    privileges_drop(uid, gid);
    log_info("running as uid %d gid %d", (int)getuid(), (int)getgid());
    switch (pidfile_acquire(cfg->pidfile, &m.pidfile_fd, &other)) {
    case PIDFILE_RUNNING:
        log_fatal(RG_EXIT_RUNNING, "already running (pid %ld, pidfile %s)", (long)other, cfg->pidfile);
    case PIDFILE_ERROR:
        log_fatal(RG_EXIT_RUNTIME, "cannot write pidfile %s (its directory must be writable by user %s)",
                  cfg->pidfile, cfg->user);
    case PIDFILE_OK:
        break;
    }

    /* Room for the sliding windows configured at start (a reload cannot
     * add more: the engine uses no more than there is room for). */
    uint32_t window_bytes = (uint32_t)(cfg->quota.windows.count * sizeof(struct window_counts));
    if (!shm_create(&m.shm, (uint32_t)cfg->workers.max, (uint32_t)cfg->cache.entries, window_bytes,
                    (uint32_t)cfg->cache.domains))
        log_fatal(RG_EXIT_RUNTIME, "cannot create shared memory");
    m.shm.cache.extra_in_use = windows_in_use;     /* inherited by every child */
    if (!errqueue_create(cfg->sentry.rate_limit))
        log_fatal(RG_EXIT_RUNTIME, "cannot create shared memory");
    sentry_announce(cfg);
    log_share_generation(&m.shm.hdr->log_generation);
    config_state_path(cfg, ".queue", m.queue_path, sizeof(m.queue_path));
    config_state_path(cfg, ".spool", m.spool_path, sizeof(m.spool_path));
    config_state_path(cfg, ".refreshed", m.ack_path, sizeof(m.ack_path));
    config_state_path(cfg, ".snapshot", m.snapshot_path, sizeof(m.snapshot_path));
    config_instance_name(cfg, instance, sizeof(instance));
    gethostname(host, sizeof(host) - 1);
    snprintf(m.writer_name, sizeof(m.writer_name), "%.200s/%s", host, instance);
    switch (wqueue_open(&m.shm.queue, m.queue_path, (uint64_t)cfg->cache.queue_size << 20, err, sizeof(err))) {
    case WQUEUE_FAILED:
        log_fatal(RG_EXIT_RUNTIME, "cannot use the write-back queue: %s. The file is left as it is: "
                  "move it away to start without it (its records are then not written)", err);
    case WQUEUE_RECOVERED:
        log_notice("write-back queue %s reopened with %llu record(s) in it", m.queue_path,
                   (unsigned long long)wqueue_depth(&m.shm.queue));
        break;
    case WQUEUE_CREATED:
        break;
    }
    if (cfg->webhook.enabled) {
        config_state_path(cfg, ".webhook", m.notify_path, sizeof(m.notify_path));
        if (wqueue_open(&m.shm.notify, m.notify_path, 4u << 20, err, sizeof(err)) == WQUEUE_FAILED)
            log_fatal(RG_EXIT_RUNTIME, "cannot use the webhook queue: %s. The file is left as it is: "
                      "move it away to start without it (its notifications are then not sent)", err);
        if (wqueue_depth(&m.shm.notify) > 0)
            log_notice("webhook: %llu notification(s) from the previous run still to send",
                       (unsigned long long)wqueue_depth(&m.shm.notify));
    }
    startup_sync(&m);

    m.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (m.wake_fd < 0 || pipe2(self_pipe, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(m.lifeline, O_CLOEXEC) < 0)
        log_fatal(RG_EXIT_RUNTIME, "eventfd/pipe: %s", strerror(errno));
    m.shm.queue.wake_fd = m.wake_fd;
    m.started = time(NULL);
    m.next_reset = period_next_boundary(cfg->reset_schedule, m.started);
    log_notice("rateguard %s started (pid %ld, workers %ld..%ld, cache %ld entries)", RATEGUARD_VERSION,
               (long)getpid(), cfg->workers.min, cfg->workers.max, cfg->cache.entries);

    struct stress stress = {0};
    struct pollfd *p = xcalloc(m.listeners.count + 1, sizeof(*p));
    while (!got_term) {
        /* A saturated pool also watches the listeners, to see at once a
         * connection that finds no worker; in stress it looks often. */
        pool_maintain(&m);
        nfds_t n = 1;
        p[0] = (struct pollfd){.fd = self_pipe[0], .events = POLLIN};
        if (!stress.active && pool_saturated(&m))
            for (size_t i = 0; i < m.listeners.count; i++)
                p[n++] = (struct pollfd){.fd = m.listeners.fds[i], .events = POLLIN};
        if (poll(p, n, stress.active ? STRESS_CHECK_MS : 1000) > 0 && p[0].revents) {
            char drain[256];
            while (read(self_pipe[0], drain, sizeof(drain)) > 0)
                ;
        }
        stress_update(&stress, &m.shm, &m.listeners, pool_saturated(&m));
        connlog_flush(&m.shm, false);
        if (got_chld) {
            got_chld = 0;
            reap_children(&m);
        }
        if (got_hup) {
            got_hup = 0;
            reload(&m);
        }
        if (got_usr2) {
            got_usr2 = 0;
            log_bump_generation();
            log_notice("log file reopened");
        }
        bool dumps[STATUS_FORMATS], any = false;
        for (int i = 0; i < STATUS_FORMATS; i++) {
            dumps[i] = false;
            if (got_usr1[i]) {
                got_usr1[i] = 0;
                dumps[i] = any = true;
            }
        }
        if (any)
            status_write(m.cfg, &m.shm, m.started, dumps);
        if (got_winch) {
            got_winch = 0;
            request_refresh(&m);
        }
        if (m.next_reset && time(NULL) >= m.next_reset)
            scheduled_reset(&m);
    }

    free(p);
    log_notice("stopping");
    stop_children(&m);
    connlog_flush(&m.shm, true);    /* the workers are gone: what they left out */
    listeners_close(m.cfg, &m.listeners, true);
    /* The last counts, for a start while the database is down (not while
     * the cache still stands on an older snapshot: that one stays, with
     * its true age). */
    if (m.shm.hdr->db_read && !m.shm.hdr->cache_from_snapshot) {
        if (snapshot_write(&m.shm, m.snapshot_path, m.writer_name, err, sizeof(err)))
            log_info("counter snapshot %s written (%u sender(s))", m.snapshot_path, m.shm.hdr->snapshot_senders);
        else
            log_error("counter snapshot: %s", err);
    }
    uint64_t left = wqueue_depth(&m.shm.queue);
    struct stat st;
    bool spooled = stat(m.spool_path, &st) == 0 && st.st_size > 0;
    if (left > 0 || spooled)
        log_error("stopped with records not written to the database (%llu queued%s); "
                  "the next start writes them", (unsigned long long)left, spooled ? ", more spooled" : "");
    else
        unlink(m.spool_path);
    wqueue_close(&m.shm.queue, m.queue_path, true);
    wqueue_close(&m.shm.notify, m.notify_path, true);
    log_share_generation(NULL);
    errqueue_destroy();
    shm_destroy(&m.shm);
    pidfile_release(m.cfg->pidfile, m.pidfile_fd);
    log_notice("stopped");
    log_close();
    config_free(m.cfg);
    return left > 0 || spooled ? RG_EXIT_RUNTIME : RG_EXIT_OK;
}
