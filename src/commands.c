/*
 * commands.c - operator commands run from the shell: migrate, cleanup and
 * status. Each connects, does its work, prints a one-line summary and
 * returns a documented exit code.
 */
#include "commands.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "pidfile.h"
#include "rateguard.h"

#include <errno.h>
#include <mysql.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
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

/* The period reset, done in the database (PolicydRateGuard's cleanup):
 * counters to zero, quota back to quota_reset unless locked, totals and
 * updated_at kept; messages older than midnight message_retention days
 * ago purged. */
int command_cleanup(const struct rg_config *cfg)
{
    char err[1024], sql[512];
    MYSQL *db = db_connect(cfg, err, sizeof(err));

    if (db == NULL) {
        log_error("cleanup: %s", err);
        return RG_EXIT_CLEANUP;
    }
    bool ok = db_exec(db,
                      "UPDATE `ratelimits` SET `msg_counter` = 0, `rcpt_counter` = 0, "
                      "`quota` = IF(`quota_locked`, `quota`, `quota_reset`), `updated_at` = `updated_at`",
                      err, sizeof(err));
    my_ulonglong reset = ok ? mysql_affected_rows(db) : 0, purged = 0;
    if (ok && cfg->message_retention > 0) {
        snprintf(sql, sizeof(sql),
                 "DELETE FROM `messages` WHERE `created_at` < CURDATE() - INTERVAL %ld DAY",
                 cfg->message_retention);
        ok = db_exec(db, sql, err, sizeof(err));
        purged = ok ? mysql_affected_rows(db) : 0;
    }
    mysql_close(db);
    if (!ok) {
        log_error("cleanup: %s", err);
        return RG_EXIT_CLEANUP;
    }
    log_info("cleanup: %llu sender(s) reset, %llu message(s) purged",
             (unsigned long long)reset, (unsigned long long)purged);
    return RG_EXIT_OK;
}

/* Ask the master for a dump (SIGUSR1) and print it once the new file
 * is in place (it is renamed over the old one: a new inode). */
int command_status(const struct rg_config *cfg, bool json)
{
    char path[4200];
    struct stat before, now;
    pid_t pid = pidfile_running(cfg->pidfile);

    if (pid == 0) {
        fprintf(stderr, "rateguard: not running (no daemon holds %s)\n", cfg->pidfile);
        return RG_EXIT_RUNNING;
    }
    snprintf(path, sizeof(path), "%s/%s", cfg->state_dir, json ? "status.json" : "status.txt");
    bool had = stat(path, &before) == 0;
    if (kill(pid, SIGUSR1) < 0) {
        fprintf(stderr, "rateguard: kill(%ld, SIGUSR1): %s\n", (long)pid, strerror(errno));
        return RG_EXIT_RUNTIME;
    }
    for (int waited_ms = 0; waited_ms < 5000; waited_ms += 10) {
        if (stat(path, &now) == 0 && (!had || now.st_ino != before.st_ino ||
                                      now.st_mtim.tv_nsec != before.st_mtim.tv_nsec ||
                                      now.st_mtim.tv_sec != before.st_mtim.tv_sec)) {
            FILE *f = fopen(path, "r");
            if (f == NULL)
                break;
            char buf[65536];
            size_t n;
            while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
                fwrite(buf, 1, n, stdout);
            fclose(f);
            return RG_EXIT_OK;
        }
        usleep(10000);
    }
    fprintf(stderr, "rateguard: pid %ld did not write %s within 5 s\n", (long)pid, path);
    return RG_EXIT_RUNTIME;
}
