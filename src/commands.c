/*
 * commands.c - operator commands run from the shell: migrate, cleanup and
 * status. Each connects, does its work, prints a one-line summary and
 * returns a documented exit code.
 */
#include "commands.h"
#include "cachesync.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "pidfile.h"
#include "rateguard.h"
#include "util.h"

#include <errno.h>
#include <mysql.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int command_migrate(const struct rg_config *cfg)
{
    char err[1024];
    unsigned applied, version;
    MYSQL *db = db_connect(cfg, err, sizeof(err));

    if (db == NULL) {
        log_error("migrate: %s", err);
        return RG_EXIT_RUNTIME;
    }
    bool ok = migrate_apply(db, &applied, err, sizeof(err)) &&
              migrate_current_version(db, &version, err, sizeof(err));
    mysql_close(db);
    if (!ok) {
        log_error("migrate: %s", err);
        return RG_EXIT_RUNTIME;
    }
    printf("migrate: %u migration%s applied, schema version %u\n", applied, applied == 1 ? "" : "s",
           version);
    return RG_EXIT_OK;
}

/* Signal the running daemon and wait until it replaces path (rename:
 * a new inode, or a new modification time). */
static bool signal_and_wait(pid_t pid, int sig, const char *path, int timeout_ms)
{
    struct stat before, now;
    bool had = stat(path, &before) == 0;

    if (kill(pid, sig) < 0) {
        fprintf(stderr, "rateguard: kill(%ld): %s\n", (long)pid, strerror(errno));
        return false;
    }
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (stat(path, &now) == 0 &&
            (!had || now.st_ino != before.st_ino || now.st_mtim.tv_sec != before.st_mtim.tv_sec ||
             now.st_mtim.tv_nsec != before.st_mtim.tv_nsec))
            return true;
        usleep(10000);
    }
    return false;
}

/* Have a running daemon re-read every sender (SIGWINCH); wait for it. */
static int refresh_running_daemon(const struct rg_config *cfg, const char *what, int failure_code)
{
    char ack[4200];
    pid_t pid = pidfile_running(cfg->pidfile);

    if (pid == 0)
        return -1;
    config_state_path(cfg, ".refreshed", ack, sizeof(ack));
    if (!signal_and_wait(pid, SIGWINCH, ack, 30000)) {
        log_error("%s: the running daemon (pid %ld) did not confirm re-reading the database within 30 s",
                  what, (long)pid);
        return failure_code;
    }
    log_info("%s: the running daemon (pid %ld) re-read every sender from the database", what, (long)pid);
    return RG_EXIT_OK;
}

/* The period reset (PolicydRateGuard's cleanup): in the database, counters
 * to zero, quota back to quota_reset unless locked, totals and updated_at
 * kept, reset_at now; messages older than midnight message_retention days
 * ago purged. Then a running daemon's cache follows at once. */
int command_cleanup(const struct rg_config *cfg)
{
    char err[1024];
    unsigned long long reset, purged;
    MYSQL *db = db_connect(cfg, err, sizeof(err));

    if (db == NULL) {
        log_error("cleanup: %s", err);
        return RG_EXIT_CLEANUP;
    }
    mysql_autocommit(db, 0);
    bool ok = cachesync_db_reset(db, clock_realtime_us(), cfg->message_retention, &reset, &purged, err, sizeof(err));
    mysql_close(db);
    if (!ok) {
        log_error("cleanup: %s", err);
        return RG_EXIT_CLEANUP;
    }
    log_info("cleanup: %llu sender(s) reset, %llu message(s) purged", reset, purged);
    int rc = refresh_running_daemon(cfg, "cleanup", RG_EXIT_CLEANUP);
    return rc < 0 ? RG_EXIT_OK : rc;
}

int command_reload_cache(const struct rg_config *cfg)
{
    int rc = refresh_running_daemon(cfg, "reload-cache", RG_EXIT_RUNTIME);
    if (rc < 0) {
        fprintf(stderr, "rateguard: not running (no daemon holds %s)\n", cfg->pidfile);
        return RG_EXIT_RUNNING;
    }
    return rc;
}

/* Ask the master for a dump (SIGUSR1) and print it once the new file
 * is in place. */
int command_status(const struct rg_config *cfg, bool json)
{
    char path[4200];
    pid_t pid = pidfile_running(cfg->pidfile);

    if (pid == 0) {
        fprintf(stderr, "rateguard: not running (no daemon holds %s)\n", cfg->pidfile);
        return RG_EXIT_RUNNING;
    }
    config_state_path(cfg, json ? ".status.json" : ".status.txt", path, sizeof(path));
    FILE *f;
    if (!signal_and_wait(pid, SIGUSR1, path, 5000) || (f = fopen(path, "r")) == NULL) {
        fprintf(stderr, "rateguard: pid %ld did not write %s within 5 s\n", (long)pid, path);
        return RG_EXIT_RUNTIME;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, stdout);
    fclose(f);
    return RG_EXIT_OK;
}
