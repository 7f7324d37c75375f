/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * commands.c - operator commands run from the shell: migrate, cleanup,
 * reload-cache, status, and the per-sender show, reset and set-quota. Each connects, does its work, prints a one-line summary and
 * returns a documented exit code.
 */
#include "commands.h"
#include "cache.h"
#include "cachesync.h"
#include "config.h"
#include "db.h"
#include "json.h"
#include "log.h"
#include "migrate.h"
#include "pidfile.h"
#include "purge.h"
#include "report.h"
#include "rateguard.h"
#include "util.h"
#include "windows.h"
#include "writelane.h"

#include <errno.h>
#include <fcntl.h>
#include <mysql.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
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

#define STOP_DEADLINE_S 90      /* `rateguard stop` waits this long before SIGKILL */

/* Signal the running daemon (with a queued value when value >= 0) and
 * wait until it replaces path (rename: a new inode, or a new modification
 * time). */
static bool signal_and_wait(pid_t pid, int sig, int value, const char *path, int timeout_ms)
{
    struct stat before, now;
    bool had = stat(path, &before) == 0;

    if ((value >= 0 ? sigqueue(pid, sig, (union sigval){.sival_int = value}) : kill(pid, sig)) < 0) {
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
    if (!signal_and_wait(pid, SIGWINCH, -1, ack, 30000)) {
        log_error("%s: the running daemon (pid %ld) did not confirm re-reading the database within 30 s",
                  what, (long)pid);
        return failure_code;
    }
    log_info("%s: the running daemon (pid %ld) re-read every sender from the database", what, (long)pid);
    return RG_EXIT_OK;
}

/* The retention purge to its end, a chunk (one short transaction) after
 * another without pause; a conflict with another host's purge or writer
 * is tried again (a few hundred times at most). False with err set. */
#define CLEANUP_CONFLICTS_MAX 200

static bool purge_all(MYSQL *db, const struct rg_config *cfg, struct purge_run *run, char *err, size_t errsize)
{
    unsigned errnum = 0;
    unsigned long long n;
    int conflicts = 0;

    memset(run, 0, sizeof(*run));
    if (cfg->message_retention <= 0)
        return true;
    while (!purge_begin(db, cfg->message_retention, cfg->purge.chunk_rows, run, &errnum, err, errsize))
        if (!lanes_conflict_error(errnum) || ++conflicts > CLEANUP_CONFLICTS_MAX)
            return false;
    while (!run->done) {
        if (purge_chunk(db, run, &n, &errnum, err, errsize))
            continue;
        if (!lanes_conflict_error(errnum) || ++conflicts > CLEANUP_CONFLICTS_MAX)
            return false;
        usleep((useconds_t)(1000 + rand() % 20000));
    }
    return true;
}

/* The period reset (PolicydRateGuard's cleanup): in the database, counters
 * to zero, quota back to quota_reset unless locked, totals and updated_at
 * kept, reset_at now, committed; then messages older than midnight
 * message_retention days ago purged in chunks of purge.chunk_rows rows,
 * each its own transaction. Then a running daemon's cache follows at once. */
int command_cleanup(const struct rg_config *cfg)
{
    char err[1024];
    unsigned long long reset;
    struct purge_run run;
    MYSQL *db = db_connect(cfg, err, sizeof(err));

    if (db == NULL) {
        log_error("cleanup: %s", err);
        return RG_EXIT_CLEANUP;
    }
    mysql_autocommit(db, 0);
    int64_t now_us = clock_realtime_us();
    /* The report of the period that ends goes first; whatever becomes of
     * it, the reset is done (report.c). */
    int report_rc = cfg->report.enabled ? report_run(db, cfg, now_us, "cleanup") : RG_EXIT_OK;
    if (!cachesync_db_reset(db, now_us, cfg->purge.chunk_rows, &reset, err, sizeof(err))) {
        mysql_close(db);
        log_error("cleanup: %s", err);
        return RG_EXIT_CLEANUP;
    }
    bool purged = purge_all(db, cfg, &run, err, sizeof(err));
    mysql_close(db);
    if (purged)
        log_info("cleanup: %llu sender(s) reset, %llu message(s) purged in %llu chunk(s) of at most %ld", reset,
                 run.rows, run.chunks, cfg->purge.chunk_rows);
    else
        log_error("cleanup: %llu sender(s) reset; %s (%llu message(s) purged in %llu chunk(s) before it; the "
                  "next cleanup or writer start purges the rest)", reset, err, run.rows, run.chunks);
    int rc = refresh_running_daemon(cfg, "cleanup", RG_EXIT_CLEANUP);
    if (!purged || rc > 0)
        return purged ? rc : RG_EXIT_CLEANUP;
    return report_rc == RG_EXIT_OK ? RG_EXIT_OK : RG_EXIT_REPORT;
}

int command_signal(const struct rg_config *cfg, int sig, const char *what)
{
    pid_t pid = pidfile_running(cfg->pidfile);
    if (pid == 0) {
        fprintf(stderr, "rateguard: %s: not running (no daemon holds %s)\n", what, cfg->pidfile);
        return RG_EXIT_RUNNING;
    }
    if (kill(pid, sig) < 0) {
        fprintf(stderr, "rateguard: %s: kill(%ld): %s\n", what, (long)pid, strerror(errno));
        return RG_EXIT_RUNTIME;
    }
    return RG_EXIT_OK;
}

/* The process is gone, or a zombie: it holds no socket and no file any
 * more, whether or not its parent (init, for a daemon) has reaped it yet.
 * An init that reaps late (some containers' PID 1) would otherwise keep
 * `stop`, and a restart's new start, waiting. */
static bool process_ended(pid_t pid)
{
    if (kill(pid, 0) != 0)
        return true;
    char path[64], stat[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, stat, sizeof(stat) - 1);
    close(fd);
    if (n <= 0)
        return false;
    stat[n] = '\0';
    /* "pid (comm) S ...": the state follows the last ')' (comm may hold one) */
    const char *end = strrchr(stat, ')');
    return end != NULL && (end[1] == ' ') && (end[2] == 'Z' || end[2] == 'X');
}

int command_stop(const struct rg_config *cfg)
{
    pid_t pid = pidfile_running(cfg->pidfile);
    if (pid == 0) {
        fprintf(stderr, "rateguard: stop: not running\n");
        return RG_EXIT_OK;
    }
    if (kill(pid, SIGTERM) < 0) {
        fprintf(stderr, "rateguard: stop: kill(%ld): %s\n", (long)pid, strerror(errno));
        return RG_EXIT_RUNTIME;
    }
    /* The master gives its writer up to a minute to drain the queue, then
     * closes its sockets and lets go of the pidfile, the last thing it does. */
    for (int waited = 0; waited < STOP_DEADLINE_S * 100; waited++) {
        if (pidfile_running(cfg->pidfile) != pid) {
            /* then a moment for the process itself to end (a zombie
             * counts as ended: its parent may reap it late) */
            for (int i = 0; i < 200 && !process_ended(pid); i++)
                usleep(10000);
            return RG_EXIT_OK;
        }
        usleep(10000);
    }
    fprintf(stderr, "rateguard: stop: pid %ld did not stop within %d s, killing it\n", (long)pid, STOP_DEADLINE_S);
    kill(pid, SIGKILL);
    return RG_EXIT_RUNTIME;
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

/* A dump in the state directory: a regular file, never through a link. */
static FILE *open_dump(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    FILE *f;

    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (f = fdopen(fd, "r")) != NULL)
        return f;
    if (fd >= 0)
        close(fd);
    return NULL;
}

FILE *command_dump(const struct rg_config *cfg, pid_t pid, enum status_format format, unsigned rows)
{
    char path[4200];
    FILE *f;

    config_state_path(cfg, status_suffix(format), path, sizeof(path));
    if (!signal_and_wait(pid, SIGRTMIN, status_request(format, rows), path, 5000) || (f = open_dump(path)) == NULL) {
        fprintf(stderr, "rateguard: pid %ld did not write %s within 5 s\n", (long)pid, path);
        return NULL;
    }
    return f;
}

/* Have the running daemon write its dump in this format and open it. */
static FILE *fresh_dump(const struct rg_config *cfg, pid_t pid, enum status_format format)
{
    return command_dump(cfg, pid, format, 0);
}

int command_status(const struct rg_config *cfg, enum status_format format)
{
    pid_t pid = pidfile_running(cfg->pidfile);

    if (pid == 0) {
        fprintf(stderr, "rateguard: not running (no daemon holds %s)\n", cfg->pidfile);
        return RG_EXIT_RUNNING;
    }
    FILE *f = fresh_dump(cfg, pid, format);
    if (f == NULL)
        return RG_EXIT_RUNTIME;
    /* The dump is the daemon user's file, and a process of that user can
     * hold the pidfile: root's terminal gets no byte of it unescaped. */
    char *dump = NULL;
    size_t cap = 0;
    ssize_t len = getdelim(&dump, &cap, '\0', f);
    fclose(f);
    if (len < 0)
        len = 0;
    int rc = RG_EXIT_OK;
    if (format == STATUS_JSON) {
        char *checked = NULL;
        size_t checked_len = 0, bad_at = 0;
        FILE *m = open_memstream(&checked, &checked_len);
        bool ok = m != NULL && json_print_checked(m, dump, (size_t)len, &bad_at);
        if (m != NULL)
            fclose(m);
        if (ok) {
            fwrite(checked, 1, checked_len, stdout);
        } else {
            fprintf(stderr, "rateguard: status: the JSON dump is not JSON (byte 0x%02x at offset %zu); not printed\n",
                    (size_t)len > bad_at ? (unsigned char)dump[bad_at] : 0, bad_at);
            rc = RG_EXIT_RUNTIME;
        }
        free(checked);
    } else {
        text_print_escaped(stdout, dump ? dump : "", (size_t)len);
    }
    free(dump);
    return rc;
}

/* One sender as the database and the running daemon see it. */
struct sender_view {
    bool in_database, in_cache;
    char sender[1024], reset_at[32], updated_at[32];
    char msg_quota[16], rcpt_quota[16], block_action[32];   /* "" when NULL */
    unsigned long quota, quota_reset, locked, msg_counter, rcpt_counter, msg_total, rcpt_total;
    unsigned long unwritten_msg, unwritten_rcpt;
    size_t n_windows;                   /* sliding-window counts from the daemon */
    unsigned long windows[WINDOWS_MAX];
    bool has_signals;                   /* a login_signals row (signals { }) */
    unsigned long baseline, history, episode, since, last, sig_locked, cleared;
    char episode_host[256], evidence[256];
};

/* The login's row of login_signals (migration 008), if any. */
static bool read_signals_row(MYSQL *db, const char *sender, struct sender_view *v, char *err, size_t errsize)
{
    char cols[9][256], key[CACHE_KEY_SIZE];
    char *out[9];
    for (int i = 0; i < 9; i++)
        out[i] = cols[i];
    cache_make_key(sender, key);
    const char *params[] = {key};
    int found = db_query_row_params(db,
                                    "SELECT `baseline`, `history`, `episode`, `episode_since`, `episode_last`, "
                                    "`locked`, `cleared_at`, `episode_host`, `evidence` FROM `login_signals` "
                                    "WHERE `sender` = ?", params, 1, out, 9, sizeof(cols[0]), err, errsize);
    if (found <= 0)
        return found == 0;
    v->has_signals = true;
    unsigned long *nums[] = {&v->baseline, &v->history, &v->episode, &v->since, &v->last, &v->sig_locked, &v->cleared};
    for (int i = 0; i < 7; i++)
        *nums[i] = strtoul(cols[i], NULL, 10);
    str_copy(v->episode_host, cols[7], sizeof(v->episode_host));
    str_copy(v->evidence, cols[8], sizeof(v->evidence));
    return true;
}

/* "2026-12-06 10:00:00" local time of a unix second. */
static const char *unix_text(unsigned long t, char buf[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

/* show's lines about the signals: the baseline, the last episode, the lock. */
static void print_signals(const struct rg_config *cfg, const struct sender_view *v, bool json)
{
    char names[64] = "", since[32], last[32], shown[1024];
    bool open = v->episode && (unsigned long)time(NULL) < v->last + (unsigned long)cfg->signals.window;
    for (int i = 0, n = 0; i < 4; i++)
        if (v->episode & (1u << i))
            n += snprintf(names + n, sizeof(names) - (size_t)n, "%s%s", n ? "+" : "",
                          (const char *const[]){"spread", "countries", "rate", "probation"}[i]);
    if (json) {
        printf(",\"signals\":{\"baseline\":%.2f,\"history\":%lu,\"episode\":", v->baseline / 256.0, v->history);
        json_write_string(stdout, names);
        printf(",\"episode_open\":%s,\"since\":%lu,\"last_trip\":%lu,\"claimed_by\":", open ? "true" : "false",
               v->since, v->last);
        json_write_string(stdout, v->episode_host);
        fputs(",\"evidence\":", stdout);
        json_write_string(stdout, v->evidence);
        printf(",\"locked\":%s,\"cleared_at\":%lu}", v->sig_locked ? "true" : "false", v->cleared);
        return;
    }
    printf("baseline:    %.2f messages per %ld-second window over %lu window(s)%s\n", v->baseline / 256.0,
           cfg->signals.window, v->history, v->history < (unsigned long)cfg->signals.min_history ? " (probation)" : "");
    if (v->episode) {
        text_escape(shown, sizeof(shown), v->evidence, sizeof(v->evidence));
        printf("episode:     %s %s since %s, last trip %s (%s)\n", names, open ? "OPEN" : "ended",
               unix_text(v->since, since), unix_text(v->last, last), shown);
    }
    if (v->sig_locked)
        printf("locked:      quota 0 by the signals' lock action, until `rateguard clear`\n");
}

static bool read_sender_row(MYSQL *db, const char *sender, struct sender_view *v, char *err, size_t errsize)
{
    char cols[13][1024];
    char *out[13];
    for (int i = 0; i < 13; i++)
        out[i] = cols[i];
    const char *params[] = {sender};
    int found = db_query_row_params(db,
                                    "SELECT r.`sender`, r.`quota`, r.`quota_reset`, r.`quota_locked`, "
                                    "r.`msg_counter`, r.`rcpt_counter`, r.`msg_total`, r.`rcpt_total`, "
                                    "COALESCE(DATE_FORMAT(r.`reset_at`, '%Y-%m-%d %H:%i:%s'), ''), "
                                    "DATE_FORMAT(r.`updated_at`, '%Y-%m-%d %H:%i:%s'), "
                                    /* sender > domain: the limits that apply */
                                    "COALESCE(r.`msg_quota`, d.`msg_quota`), COALESCE(r.`rcpt_quota`, d.`rcpt_quota`), "
                                    "COALESCE(r.`block_action`, d.`block_action`) "
                                    "FROM `ratelimits` r LEFT JOIN `domain_quotas` d ON r.`sender` LIKE '%@%' "
                                    "AND d.`domain` = SUBSTRING_INDEX(r.`sender`, '@', -1) WHERE r.`sender` = ?",
                                    params, 1, out, 13, sizeof(cols[0]), err, errsize);
    if (found <= 0)
        return found == 0;
    v->in_database = true;
    str_copy(v->sender, cols[0], sizeof(v->sender));
    unsigned long *nums[] = {&v->quota, &v->quota_reset, &v->locked, &v->msg_counter,
                             &v->rcpt_counter, &v->msg_total, &v->rcpt_total};
    for (int i = 0; i < 7; i++)
        *nums[i] = strtoul(cols[i + 1], NULL, 10);
    str_copy(v->reset_at, cols[8], sizeof(v->reset_at));
    str_copy(v->updated_at, cols[9], sizeof(v->updated_at));
    str_copy(v->msg_quota, cols[10], sizeof(v->msg_quota));
    str_copy(v->rcpt_quota, cols[11], sizeof(v->rcpt_quota));
    str_copy(v->block_action, cols[12], sizeof(v->block_action));
    return true;
}

/* The sender's entry in the running daemon's JSON dump, whose one-line
 * entries status.c writes in a fixed order. */
static void read_cache_entry(const struct rg_config *cfg, pid_t pid, const char *sender, struct sender_view *v)
{
    char key[CACHE_KEY_SIZE], *needle = NULL, *line = NULL;
    size_t needle_len = 0, cap = 0;
    FILE *f = fresh_dump(cfg, pid, STATUS_JSON), *m;

    if (f == NULL)
        return;
    cache_make_key(sender, key);
    if ((m = open_memstream(&needle, &needle_len)) == NULL) {
        fclose(f);
        return;
    }
    fputs("{\"sender\":", m);
    json_write_string(m, key);
    fputc(',', m);
    fclose(m);
    /* The dump is one line; scan it for the entry (its fields in the order
     * status.c writes them). */
    if (getdelim(&line, &cap, '\0', f) > 0) {
        const char *at = strstr(line, needle);
        unsigned long *nums[] = {&v->quota, &v->quota_reset, &v->msg_counter, &v->rcpt_counter,
                                 &v->msg_total, &v->rcpt_total, &v->unwritten_msg, &v->unwritten_rcpt};
        char locked[8], blocked[8];
        if (at && sscanf(at + strlen(needle),
                         "\"quota\":%lu,\"quota_reset\":%lu,\"quota_locked\":%7[a-z],\"msg_counter\":%lu,"
                         "\"rcpt_counter\":%lu,\"msg_total\":%lu,\"rcpt_total\":%lu,\"blocked\":%7[a-z],"
                         "\"unwritten_msg\":%lu,\"unwritten_rcpt\":%lu",
                         nums[0], nums[1], locked, nums[2], nums[3], nums[4], nums[5], blocked, nums[6],
                         nums[7]) == 10) {
            v->in_cache = true;
            v->locked = strcmp(locked, "true") == 0;
            /* "windows":[a,b] may follow, inside this entry */
            const char *end = strchr(at, '}'), *w = strstr(at, "\"windows\":[");
            for (char *p = w && w < end ? (char *)w + 11 : NULL; p && v->n_windows < WINDOWS_MAX;) {
                v->windows[v->n_windows++] = strtoul(p, &p, 10);
                p = *p == ',' ? p + 1 : NULL;
            }
            if (!v->in_database)
                str_copy(v->sender, sender, sizeof(v->sender));
        }
    }
    free(line);
    free(needle);
    fclose(f);
}

int command_show(const struct rg_config *cfg, const char *sender, bool json)
{
    char err[1024];
    struct sender_view v;
    MYSQL *db = db_connect(cfg, err, sizeof(err));

    memset(&v, 0, sizeof(v));
    if (db == NULL) {
        log_error("show: %s", err);
        return RG_EXIT_RUNTIME;
    }
    bool ok = read_sender_row(db, sender, &v, err, sizeof(err)) && read_signals_row(db, sender, &v, err, sizeof(err));
    mysql_close(db);
    if (!ok) {
        log_error("show: %s", err);
        return RG_EXIT_RUNTIME;
    }
    pid_t pid = pidfile_running(cfg->pidfile);
    if (pid != 0)
        read_cache_entry(cfg, pid, sender, &v);     /* the counts the daemon decides on */
    if (!v.in_database && !v.in_cache) {
        fprintf(stderr, "rateguard: show: no sender '%s' in the database%s\n", sender,
                pid ? " or the running daemon's cache" : "");
        return RG_EXIT_UNKNOWN_PARAM;
    }
    /* Percent of the nearer limit (msg_quota/rcpt_quota where set, else quota). */
    unsigned long mq = v.msg_quota[0] ? strtoul(v.msg_quota, NULL, 10) : v.quota;
    unsigned long rq = v.rcpt_quota[0] ? strtoul(v.rcpt_quota, NULL, 10) : v.quota;
    double pm = mq ? 100.0 * (double)v.msg_counter / (double)mq : (v.msg_counter ? 100.0 : 0.0);
    double pr = rq ? 100.0 * (double)v.rcpt_counter / (double)rq : (v.rcpt_counter ? 100.0 : 0.0);
    double percent = pm > pr ? pm : pr;
    bool blocked = v.msg_counter > mq || v.rcpt_counter > rq;
    if (json) {
        fputs("{\"sender\":", stdout);
        json_write_string(stdout, v.sender);
        printf(",\"quota\":%lu,\"quota_reset\":%lu,\"quota_locked\":%s,\"msg_counter\":%lu,"
               "\"rcpt_counter\":%lu,\"msg_total\":%lu,\"rcpt_total\":%lu,\"percent_used\":%.1f,"
               "\"blocked\":%s,\"unwritten_msg\":%lu,\"unwritten_rcpt\":%lu,\"in_database\":%s,"
               "\"in_cache\":%s,\"reset_at\":",
               v.quota, v.quota_reset, v.locked ? "true" : "false", v.msg_counter, v.rcpt_counter,
               v.msg_total, v.rcpt_total, percent, blocked ? "true" : "false", v.unwritten_msg,
               v.unwritten_rcpt, v.in_database ? "true" : "false", v.in_cache ? "true" : "false");
        if (v.reset_at[0])
            json_write_string(stdout, v.reset_at);
        else
            fputs("null", stdout);
        printf(",\"msg_quota\":%s,\"rcpt_quota\":%s,\"block_action\":", v.msg_quota[0] ? v.msg_quota : "null",
               v.rcpt_quota[0] ? v.rcpt_quota : "null");
        if (v.block_action[0])
            json_write_string(stdout, v.block_action);
        else
            fputs("null", stdout);
        fputs(",\"windows\":[", stdout);
        for (size_t i = 0; i < v.n_windows && i < cfg->quota.windows.count; i++)
            printf("%s{\"limit\":%u,\"seconds\":%u,\"count\":%lu}", i ? "," : "", cfg->window_specs[i].limit,
                   cfg->window_specs[i].seconds, v.windows[i]);
        fputs("]", stdout);
        if (v.has_signals)
            print_signals(cfg, &v, true);
        fputs("}\n", stdout);
        return RG_EXIT_OK;
    }
    char shown[4 * sizeof(v.sender)];
    text_escape(shown, sizeof(shown), v.sender, sizeof(v.sender));
    printf("sender:      %s\n", shown);
    printf("quota:       %lu (restored to %lu by the period reset%s)\n", v.quota, v.quota_reset,
           v.locked ? "; locked: kept as it is" : "");
    if (v.msg_quota[0] || v.rcpt_quota[0])
        printf("limits:      %lu messages, %lu recipients per period\n", mq, rq);
    if (v.block_action[0]) {
        text_escape(shown, sizeof(shown), v.block_action, sizeof(v.block_action));
        printf("when blocked: %s\n", shown);
    }
    printf("messages:    %lu this period, %lu in total\n", v.msg_counter, v.msg_total);
    printf("recipients:  %lu this period, %lu in total\n", v.rcpt_counter, v.rcpt_total);
    printf("used:        %.1f%% of the quota%s\n", percent, blocked ? ", BLOCKED" : "");
    for (size_t i = 0; i < v.n_windows && i < cfg->quota.windows.count; i++) {
        uint32_t sec = cfg->window_specs[i].seconds;
        printf("window:      %lu of %u messages in the last %u %s\n", v.windows[i], cfg->window_specs[i].limit,
               sec % 86400 == 0 ? sec / 86400 : sec % 3600 == 0 ? sec / 3600 : sec % 60 == 0 ? sec / 60 : sec,
               sec % 86400 == 0 ? "d" : sec % 3600 == 0 ? "h" : sec % 60 == 0 ? "min" : "s");
    }
    if (v.has_signals)
        print_signals(cfg, &v, false);
    printf("last reset:  %s\n", v.reset_at[0] ? v.reset_at : "never");
    if (v.in_cache)
        printf("daemon:      cached, %lu message(s) and %lu recipient(s) not yet in the database\n",
               v.unwritten_msg, v.unwritten_rcpt);
    else
        printf("daemon:      %s\n", pid ? "not cached (loaded at its next message)" : "not running");
    if (!v.in_database)
        printf("database:    no row yet (the writer creates it)\n");
    return RG_EXIT_OK;
}

/* Run one statement on one sender's row, then make a running daemon's
 * cache follow. Returns the exit code; 1 when no row matched. */
static int change_sender(const struct rg_config *cfg, const char *what, const char *sql, const char *const *params,
                         size_t n, const char *sender, bool must_exist)
{
    char err[1024];
    unsigned long long affected = 0;
    MYSQL *db = db_connect(cfg, err, sizeof(err));

    if (db == NULL) {
        log_error("%s: %s", what, err);
        return RG_EXIT_RUNTIME;
    }
    bool ok = db_exec_params(db, sql, params, n, &affected, err, sizeof(err));
    mysql_close(db);
    if (!ok) {
        log_error("%s: %s", what, err);
        return RG_EXIT_RUNTIME;
    }
    if (must_exist && affected == 0) {
        fprintf(stderr, "rateguard: %s: no sender '%s' in the database\n", what, sender);
        return RG_EXIT_UNKNOWN_PARAM;
    }
    int rc = refresh_running_daemon(cfg, what, RG_EXIT_RUNTIME);
    return rc < 0 ? RG_EXIT_OK : rc;
}

int command_reset_sender(const struct rg_config *cfg, const char *sender)
{
    /* As the period reset does for every row: the records still queued
     * from before reset_at count in no period. */
    char sql[512];
    int64_t now = clock_realtime_us();
    snprintf(sql, sizeof(sql),
             "UPDATE `ratelimits` SET `msg_counter` = 0, `rcpt_counter` = 0, "
             "`quota` = IF(`quota_locked`, `quota`, `quota_reset`), `notified` = 0, `reset_at` = FROM_UNIXTIME(%lld.%06lld), "
             "`updated_at` = `updated_at` WHERE `sender` = ?",
             (long long)(now / 1000000), (long long)(now % 1000000));
    const char *params[] = {sender};
    int rc = change_sender(cfg, "reset", sql, params, 1, sender, true);
    if (rc == RG_EXIT_OK)
        log_info("reset: %s: period counters reset", sender);
    return rc;
}

int command_clear(const struct rg_config *cfg, const char *login)
{
    char key[CACHE_KEY_SIZE], err[1024];
    unsigned long long cleared = 0;
    cache_make_key(login, key);
    const char *both[] = {login, key}, *one[] = {key};
    MYSQL *db = db_connect(cfg, err, sizeof(err));

    if (db == NULL) {
        log_error("clear: %s", err);
        return RG_EXIT_RUNTIME;
    }
    /* Only a lock the signals set is undone: an operator's own stays. */
    bool ok = db_exec_params(db, "UPDATE `ratelimits` SET `quota` = `quota_reset`, `quota_locked` = 0 "
                             "WHERE `sender` = ? AND `quota` = 0 AND EXISTS (SELECT 1 FROM `login_signals` "
                             "WHERE `sender` = ? AND `locked` = 1)", both, 2, NULL, err, sizeof(err)) &&
              db_exec_params(db, "UPDATE `login_signals` SET `episode` = 0, `locked` = 0, "
                             "`cleared_at` = UNIX_TIMESTAMP() WHERE `sender` = ?", one, 1, &cleared, err, sizeof(err)) &&
              (mysql_commit(db) == 0 || (snprintf(err, sizeof(err), "commit: %s", mysql_error(db)), false));
    mysql_close(db);
    if (!ok) {
        log_error("clear: %s", err);
        return RG_EXIT_RUNTIME;
    }
    if (cleared == 0) {
        fprintf(stderr, "rateguard: clear: no signals kept for '%s' (it never had an episode or a baseline)\n", login);
        return RG_EXIT_UNKNOWN_PARAM;
    }
    log_info("clear: %s: hijacked-account episode and lock cleared", key);
    int rc = refresh_running_daemon(cfg, "clear", RG_EXIT_RUNTIME);
    return rc < 0 ? RG_EXIT_OK : rc;
}

int command_set_quota(const struct rg_config *cfg, const char *sender, uint32_t n, bool locked)
{
    char quota[16];
    snprintf(quota, sizeof(quota), "%u", n);
    const char *params[] = {sender, quota, quota, locked ? "1" : "0"};
    int rc = change_sender(cfg, "set-quota",
                           "INSERT INTO `ratelimits` (`sender`, `quota`, `quota_reset`, `quota_locked`) "
                           "VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE `quota` = VALUES(`quota`), "
                           "`quota_reset` = VALUES(`quota_reset`), `quota_locked` = VALUES(`quota_locked`)",
                           params, 4, sender, false);
    if (rc == RG_EXIT_OK)
        log_info("set-quota: %s: quota %u%s", sender, n, locked ? ", locked" : "");
    return rc;
}
