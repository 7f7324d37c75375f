/*
 * master.c - owns the daemon's life cycle. Signal handlers only record the
 * signal and write a byte to a self-pipe; the main loop does the work.
 * Children hold the read end of a lifeline pipe whose write end only the
 * master has, so they notice at once when the master is gone, however it
 * died.
 */
#include "master.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "pidfile.h"
#include "privileges.h"
#include "rateguard.h"
#include "util.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STOP_DEADLINE_S 10      /* TERM to children, then KILL after this */

static volatile sig_atomic_t got_term, got_hup, got_usr1, got_usr2, got_chld;
static int self_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    switch (sig) {
    case SIGTERM: case SIGINT: got_term = 1; break;
    case SIGHUP: got_hup = 1; break;
    case SIGUSR1: got_usr1 = 1; break;
    case SIGUSR2: got_usr2 = 1; break;
    case SIGCHLD: got_chld = 1; break;
    }
    if (write(self_pipe[1], "x", 1) < 0) {
        /* pipe full: the loop is already due to wake up */
    }
    errno = saved;
}

static void install_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

struct pool {
    pid_t *pids;            /* workers.max slots, 0 = free */
    size_t size;
    size_t running;
    time_t backoff_until;   /* no spawning before this (crash loop) */
    int backoff_s;
};

struct master {
    struct rg_config *cfg;
    const char *config_path;
    struct listeners listeners;
    struct pool pool;
    int lifeline[2];
    int pidfile_fd;
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

static void spawn_worker(struct master *m, size_t slot)
{
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        close(m->lifeline[1]);
        close(self_pipe[0]);
        close(self_pipe[1]);
        close(m->pidfile_fd);
        struct worker_ctx ctx = {.cfg = m->cfg, .listeners = &m->listeners,
                                 .lifeline_fd = m->lifeline[0]};
        worker_main(&ctx);
    }
    m->pool.pids[slot] = pid;
    m->pool.running++;
}

/* Keep workers.min workers running, unless children crash in a loop. */
static void pool_fill(struct master *m)
{
    if (time(NULL) < m->pool.backoff_until)
        return;
    for (size_t i = 0; i < m->pool.size && m->pool.running < (size_t)m->cfg->workers.min; i++)
        if (m->pool.pids[i] == 0)
            spawn_worker(m, i);
}

static void reap_children(struct master *m)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < m->pool.size; i++)
            if (m->pool.pids[i] == pid) {
                m->pool.pids[i] = 0;
                m->pool.running--;
            }
        if (WIFSIGNALED(status)) {
            log_error("worker %ld killed by signal %d%s", (long)pid, WTERMSIG(status),
                      WCOREDUMP(status) ? " (core dumped)" : "");
        } else if (WEXITSTATUS(status) != RG_EXIT_OK) {
            log_error("worker %ld exited with status %d", (long)pid, WEXITSTATUS(status));
        } else
            continue;
        /* Abnormal exits slow respawning down: 1, 2, 4 ... 30 s. */
        m->pool.backoff_s = m->pool.backoff_s ? m->pool.backoff_s * 2 : 1;
        if (m->pool.backoff_s > 30)
            m->pool.backoff_s = 30;
        m->pool.backoff_until = time(NULL) + m->pool.backoff_s - 1;
    }
}

static void stop_children(struct master *m)
{
    time_t deadline = time(NULL) + STOP_DEADLINE_S;

    close(m->lifeline[1]);      /* idle workers see it at once */
    m->lifeline[1] = -1;
    for (size_t i = 0; i < m->pool.size; i++)
        if (m->pool.pids[i] > 0)
            kill(m->pool.pids[i], SIGTERM);
    while (m->pool.running > 0 && time(NULL) < deadline) {
        reap_children(m);
        if (m->pool.running > 0)
            usleep(20000);
    }
    for (size_t i = 0; i < m->pool.size; i++)
        if (m->pool.pids[i] > 0) {
            log_warning("worker %ld did not stop within %d s, killing it", (long)m->pool.pids[i],
                        STOP_DEADLINE_S);
            kill(m->pool.pids[i], SIGKILL);
        }
    while (m->pool.running > 0 && waitpid(-1, NULL, 0) > 0)
        m->pool.running--;
}

/* HUP: parse the file again; keep the running config if the new one is bad. */
static void reload(struct master *m)
{
    char err[1024];
    int code;
    struct rg_config *fresh = config_load(m->config_path, err, sizeof(err), &code);

    if (fresh == NULL) {
        log_error("reload: %s; keeping the running configuration", err);
        return;
    }
    log_notice("reload: configuration re-read from %s (listen addresses and user need a restart)",
               m->config_path);
    config_free(fresh);
}

int master_run(struct rg_config *cfg, bool foreground, const char *config_path)
{
    struct master m = {.cfg = cfg, .config_path = config_path, .pidfile_fd = -1};
    uid_t uid;
    gid_t gid;
    pid_t other;

    log_open(cfg, foreground);
    if (!privileges_resolve(cfg->user, cfg->group, &uid, &gid))
        log_fatal(RG_EXIT_NO_USER, "cannot start: user or group missing");
    if (!foreground)
        daemonize();

    switch (pidfile_acquire(cfg->pidfile, &m.pidfile_fd, &other)) {
    case PIDFILE_RUNNING:
        log_fatal(RG_EXIT_RUNNING, "already running (pid %ld, pidfile %s)", (long)other, cfg->pidfile);
    case PIDFILE_ERROR:
        log_fatal(RG_EXIT_RUNTIME, "cannot write pidfile %s", cfg->pidfile);
    case PIDFILE_OK:
        break;
    }
    if (!listeners_open(cfg, uid, gid, &m.listeners)) {
        pidfile_release(cfg->pidfile, m.pidfile_fd);
        log_fatal(RG_EXIT_BAD_LISTEN, "cannot listen on the configured addresses");
    }
    privileges_drop(uid, gid);

    if (pipe2(self_pipe, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(m.lifeline, O_CLOEXEC) < 0)
        log_fatal(RG_EXIT_RUNTIME, "pipe: %s", strerror(errno));
    install_signals();
    m.pool.size = (size_t)cfg->workers.max;
    m.pool.pids = xcalloc(m.pool.size, sizeof(pid_t));
    log_notice("rateguard %s started (pid %ld, %ld workers)", RATEGUARD_VERSION, (long)getpid(),
               cfg->workers.min);

    while (!got_term) {
        pool_fill(&m);
        struct pollfd p = {.fd = self_pipe[0], .events = POLLIN};
        if (poll(&p, 1, 1000) > 0) {
            char drain[64];
            while (read(self_pipe[0], drain, sizeof(drain)) > 0)
                ;
        }
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
            log_reopen();
        }
        if (got_usr1)
            got_usr1 = 0;
    }

    log_notice("stopping");
    stop_children(&m);
    listeners_close(cfg, &m.listeners, true);
    pidfile_release(cfg->pidfile, m.pidfile_fd);
    free(m.pool.pids);
    log_notice("stopped");
    log_close();
    config_free(cfg);
    return RG_EXIT_OK;
}
