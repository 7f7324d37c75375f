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

#include <mysql.h>
#include <stdio.h>
#include <string.h>

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

int command_status(const struct rg_config *cfg, bool json)
{
    pid_t pid = pidfile_running(cfg->pidfile);

    (void)json;
    if (pid == 0) {
        fprintf(stderr, "rateguard: not running (no daemon holds %s)\n", cfg->pidfile);
        return RG_EXIT_RUNNING;
    }
    printf("rateguard running, pid %ld\n", (long)pid);
    return RG_EXIT_OK;
}
