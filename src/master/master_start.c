/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * master_start.c - the daemon's start-up and its final release: the log,
 * the accounts, daemonizing, the directories (run, state, unix sockets),
 * the listeners, the privilege drop, the pidfile, then the shared memory
 * and the queues a previous run may have left, the pipes; at the end the
 * same released in reverse. Owns the pidfile and the order of the start:
 * what needs root comes before the drop, everything else after it.
 */
#include "master_int.h"
#include "config.h"
#include "errqueue.h"
#include "log.h"
#include "metricsd.h"
#include "pidfile.h"
#include "privileges.h"
#include "rateguard.h"
#include "safedir.h"
#include "sentry.h"
#include "sentrysend.h"
#include "watch.h"
#include "windows.h"

#include <errno.h>
#include <fcntl.h>
#include <paths.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* The log first, and what must be said while someone reads stderr. */
static void open_log(const struct rg_config *cfg, bool foreground, const char *config_path)
{
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
}

void master_start(struct master *m)
{
    const struct rg_config *cfg = m->cfg;
    uid_t uid;
    gid_t gid;
    pid_t other;

    open_log(cfg, m->foreground, m->config_path);
    if (!privileges_resolve(cfg->user, cfg->group, &uid, &gid))
        log_fatal(RG_EXIT_NO_USER, "cannot start: user or group missing");
    /* The unix socket's group: Postfix's, when the daemon has an account
     * of its own (docs/security.md). */
    gid_t socket_gid = gid;
    if (cfg->socket_group[0] && !privileges_resolve(cfg->user, cfg->socket_group, &uid, &socket_gid))
        log_fatal(RG_EXIT_NO_USER, "cannot start: socket_group missing");
    if (!m->foreground)
        daemonize();
    /* Signals are caught from the start: a status request or a stop that
     * arrives while we are still starting is served, not fatal. */
    master_sig_install();
    prepare_directories(cfg, uid, gid, socket_gid);

    /* Root only reads the pidfile (its directory belongs to the daemon's
     * user); it is written after the drop. */
    if ((other = pidfile_running(cfg->pidfile)) != 0)
        log_fatal(RG_EXIT_RUNNING, "already running (pid %ld, pidfile %s)", (long)other, cfg->pidfile);
    if (!listeners_open(cfg, uid, socket_gid, &m->listeners))
        log_fatal(RG_EXIT_BAD_LISTEN, "cannot listen on the configured addresses");
    m->metrics_fd = metricsd_listen(cfg, false);
    if (!log_file_owner(uid))
        log_fatal(RG_EXIT_RUNTIME, "cannot start: %s", log_file_refusal());
    privileges_drop(uid, gid);
    log_info("running as uid %d gid %d", (int)getuid(), (int)getgid());
    switch (pidfile_acquire(cfg->pidfile, &m->pidfile_fd, &other)) {
    case PIDFILE_RUNNING:
        log_fatal(RG_EXIT_RUNNING, "already running (pid %ld, pidfile %s)", (long)other, cfg->pidfile);
    case PIDFILE_ERROR:
        log_fatal(RG_EXIT_RUNTIME, "cannot write pidfile %s (its directory must be writable by user %s)",
                  cfg->pidfile, cfg->user);
    case PIDFILE_OK:
        break;
    }
}

/* The write-back queue and, with the webhook on, the webhook's. */
static void open_queues(struct master *m)
{
    const struct rg_config *cfg = m->cfg;
    char err[1024];

    switch (wqueue_open(&m->shm.queue, m->queue_path, (uint64_t)cfg->cache.queue_size << 20, err, sizeof(err))) {
    case WQUEUE_FAILED:
        log_fatal(RG_EXIT_RUNTIME, "cannot use the write-back queue: %s. The file is left as it is: "
                  "move it away to start without it (its records are then not written)", err);
    case WQUEUE_RECOVERED:
        log_notice("write-back queue %s reopened with %llu record(s) in it", m->queue_path,
                   (unsigned long long)wqueue_depth(&m->shm.queue));
        break;
    case WQUEUE_CREATED:
        break;
    }
    if (cfg->webhook.enabled) {
        config_state_path(cfg, ".webhook", m->notify_path, sizeof(m->notify_path));
        if (wqueue_open(&m->shm.notify, m->notify_path, 4u << 20, err, sizeof(err)) == WQUEUE_FAILED)
            log_fatal(RG_EXIT_RUNTIME, "cannot use the webhook queue: %s. The file is left as it is: "
                      "move it away to start without it (its notifications are then not sent)", err);
        if (wqueue_depth(&m->shm.notify) > 0)
            log_notice("webhook: %llu notification(s) from the previous run still to send",
                       (unsigned long long)wqueue_depth(&m->shm.notify));
    }
}

void master_open_state(struct master *m)
{
    const struct rg_config *cfg = m->cfg;
    char host[256] = "localhost", instance[64];

    /* Room for the sliding windows configured at start (a reload cannot
     * add more: the engine uses no more than there is room for). */
    uint32_t window_bytes = (uint32_t)(cfg->quota.windows.count * sizeof(struct window_counts));
    uint32_t watch_bytes = cfg->signals.enabled ? WATCH_SIZE : 0;
    if (!shm_create(&m->shm, (uint32_t)cfg->workers.max, (uint32_t)cfg->cache.entries, window_bytes + watch_bytes,
                    watch_bytes, (uint32_t)cfg->cache.domains))
        log_fatal(RG_EXIT_RUNTIME, "cannot create shared memory");
    m->shm.cache.extra_in_use = watch_entry_in_use;     /* inherited by every child */
    if (!errqueue_create(cfg->sentry.rate_limit))
        log_fatal(RG_EXIT_RUNTIME, "cannot create shared memory");
    master_sentry_announce(cfg);
    log_share_generation(&m->shm.hdr->log_generation);
    config_state_path(cfg, ".queue", m->queue_path, sizeof(m->queue_path));
    config_state_path(cfg, ".spool", m->spool_path, sizeof(m->spool_path));
    config_state_path(cfg, ".refreshed", m->ack_path, sizeof(m->ack_path));
    config_state_path(cfg, ".snapshot", m->snapshot_path, sizeof(m->snapshot_path));
    config_state_path(cfg, ".blocks", m->journal_path, sizeof(m->journal_path));
    config_instance_name(cfg, instance, sizeof(instance));
    gethostname(host, sizeof(host) - 1);
    snprintf(m->writer_name, sizeof(m->writer_name), "%.200s/%s", host, instance);
    open_queues(m);
}

void master_open_pipes(struct master *m)
{
    m->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (m->wake_fd < 0 || !master_sig_open() || pipe2(m->lifeline, O_CLOEXEC) < 0)
        log_fatal(RG_EXIT_RUNTIME, "eventfd/pipe: %s", strerror(errno));
    m->shm.queue.wake_fd = m->wake_fd;
}

/* Queue errors for Sentry when a DSN is set, and say where they go (the
 * key masked). */
void master_sentry_announce(const struct rg_config *cfg)
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

void master_finish(struct master *m)
{
    wqueue_close(&m->shm.queue, m->queue_path, true);
    wqueue_close(&m->shm.notify, m->notify_path, true);
    log_share_generation(NULL);
    errqueue_destroy();
    shm_destroy(&m->shm);
    pidfile_release(m->cfg->pidfile, m->pidfile_fd);
    if (m->metrics_fd >= 0)
        close(m->metrics_fd);
    log_notice("stopped");
    log_close();
    config_free(m->cfg);
    m->cfg = NULL;
}
