/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * report.c - collecting, formatting and handing over the report of the
 * senders blocked in a period (see report.h). The SQL reads; smtp.c
 * sends; the pending files carry a scheduled report from the writer
 * (which holds the database) to the notifier (which may wait on SMTP).
 */
#include "report.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "rateguard.h"
#include "smtp.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define PENDING_RETRY_S 300
#define PENDING_TRIES 12

bool report_collect(MYSQL *db, const struct rg_config *cfg, int64_t boundary_us, struct report *out, char *err,
                    size_t errsize)
{
    char sql[1400], at[64];
    memset(out, 0, sizeof(*out));
    out->end_s = boundary_us / 1000000;
    snprintf(at, sizeof(at), "FROM_UNIXTIME(%lld.%06lld)", (long long)(boundary_us / 1000000),
             (long long)(boundary_us % 1000000));
    /* A row is in the period that ends when the reset at this boundary
     * would touch it; its blocked messages are those since its last reset. */
    snprintf(sql, sizeof(sql),
             "SELECT r.`sender`, r.`quota`, r.`msg_counter`, r.`rcpt_counter`, "
             "CAST(UNIX_TIMESTAMP(MIN(m.`created_at`)) AS SIGNED), "
             "COALESCE(CAST(UNIX_TIMESTAMP(r.`reset_at`) AS SIGNED), 0) "
             "FROM `ratelimits` r JOIN `messages` m ON m.`ratelimit_id` = r.`id` AND m.`blocked` = 1 "
             "AND (r.`reset_at` IS NULL OR m.`created_at` >= r.`reset_at`) AND m.`created_at` < %s "
             "WHERE r.`reset_at` IS NULL OR r.`reset_at` < %s "
             "GROUP BY r.`id`, r.`sender`, r.`quota`, r.`msg_counter`, r.`rcpt_counter`, r.`reset_at` "
             "ORDER BY MIN(m.`created_at`), r.`sender`", at, at);
    if (mysql_real_query(db, sql, strlen(sql)) != 0) {
        snprintf(err, errsize, "report: %s", mysql_error(db));
        return false;
    }
    MYSQL_RES *res = mysql_store_result(db);
    if (res == NULL) {
        snprintf(err, errsize, "report: %s", mysql_error(db));
        return false;
    }
    size_t n = (size_t)mysql_num_rows(res);
    out->rows = xcalloc(n + 1, sizeof(*out->rows));
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
        struct report_row *r = &out->rows[out->count++];
        log_safe_copy(r->sender, sizeof(r->sender), row[0] ? row[0] : "", 200);
        r->quota = strtoul(row[1] ? row[1] : "0", NULL, 10);
        r->messages = strtoul(row[2] ? row[2] : "0", NULL, 10);
        r->recipients = strtoul(row[3] ? row[3] : "0", NULL, 10);
        r->first_block_s = strtoll(row[4] ? row[4] : "0", NULL, 10);
        r->period_start_s = strtoll(row[5] ? row[5] : "0", NULL, 10);
        snprintf(r->webhook, sizeof(r->webhook), "%s", cfg->webhook.enabled ? "no record" : "off");
    }
    mysql_free_result(res);
    return true;
}

void report_free(struct report *r)
{
    free(r->rows);
    r->rows = NULL;
    r->count = 0;
}

static void webhook_log_path(const struct rg_config *cfg, char *buf, size_t size)
{
    config_state_path(cfg, ".webhook-sent", buf, size);
}

void report_note_webhook(const struct rg_config *cfg, const char *sender, bool notified)
{
    char path[4200], line[400], safe[300];
    webhook_log_path(cfg, path, sizeof(path));
    log_safe_copy(safe, sizeof(safe), sender, 255);
    int len = snprintf(line, sizeof(line), "%lld %s %s\n", (long long)time(NULL), notified ? "notified" : "failed",
                       safe);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0 || write(fd, line, (size_t)len) != len)
        log_warning("report: cannot record the webhook outcome in %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

void report_webhook_status(const struct rg_config *cfg, struct report *r)
{
    char path[4200], *line = NULL;
    size_t cap = 0;
    if (!cfg->webhook.enabled)
        return;
    webhook_log_path(cfg, path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    /* The latest outcome in the sender's period wins (a retry that
     * succeeded after a restart, say). */
    while (getline(&line, &cap, f) > 0) {
        long long t;
        char status[16], sender[300];
        if (sscanf(line, "%lld %15s %299s", &t, status, sender) != 3)
            continue;
        for (size_t i = 0; i < r->count; i++)
            if (strcasecmp(r->rows[i].sender, sender) == 0 && t >= r->rows[i].period_start_s && t <= r->end_s + 3600)
                snprintf(r->rows[i].webhook, sizeof(r->rows[i].webhook), "%s", status);
    }
    free(line);
    fclose(f);
}

static void local_time(int64_t s, const char *fmt, char *out, size_t size)
{
    time_t t = (time_t)s;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, size, fmt, &tm);
}

char *report_body(const struct report *r, const char *host, const char *instance)
{
    char *buf = NULL, end[32];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        log_panic("open_memstream: %s", strerror(errno));
    int w = 6;
    for (size_t i = 0; i < r->count; i++)
        if ((int)strlen(r->rows[i].sender) > w)
            w = (int)strlen(r->rows[i].sender);
    local_time(r->end_s, "%Y-%m-%d %H:%M:%S", end, sizeof(end));
    fprintf(f, "Senders blocked in the period ending %s (host %s, %s)\n\n", end, host, instance);
    if (r->count == 0)
        fputs("No sender was blocked in this period.\n", f);
    else {
        fprintf(f, "%-*s  %10s  %10s  %10s  %-19s  %s\n", w, "Sender", "Quota", "Messages", "Recipients",
                "First block", "Webhook");
        for (size_t i = 0; i < r->count; i++) {
            char first[32];
            const struct report_row *row = &r->rows[i];
            local_time(row->first_block_s, "%Y-%m-%d %H:%M:%S", first, sizeof(first));
            fprintf(f, "%-*s  %10lu  %10lu  %10lu  %-19s  %s\n", w, row->sender, row->quota, row->messages,
                    row->recipients, first, row->webhook);
        }
        fprintf(f, "\n%zu sender(s) blocked.\n", r->count);
    }
    fclose(f);
    return buf;
}

void report_sender(const struct rg_config *cfg, const char *host, char *out, size_t size)
{
    if (cfg->report.from[0])
        snprintf(out, size, "%s", cfg->report.from);
    else
        snprintf(out, size, "rateguard@%s", host);
}

char *report_message(const struct rg_config *cfg, const struct report *r, const char *host, int64_t now_us)
{
    char instance[64], date[64], from[300], *out = NULL;
    size_t len = 0;
    unsigned char rnd[8] = {0};
    config_instance_name(cfg, instance, sizeof(instance));
    report_sender(cfg, host, from, sizeof(from));
    local_time(now_us / 1000000, "%a, %d %b %Y %H:%M:%S %z", date, sizeof(date));
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        memcpy(rnd, &now_us, sizeof(rnd));
    char *body = report_body(r, host, instance);
    FILE *f = open_memstream(&out, &len);
    if (f == NULL)
        log_panic("open_memstream: %s", strerror(errno));
    fprintf(f, "From: %s\r\nTo: ", from);
    for (size_t i = 0; i < cfg->report.to.count; i++)
        fprintf(f, "%s%s", i ? ", " : "", cfg->report.to.items[i]);
    fprintf(f, "\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%02x%02x%02x%02x%02x%02x%02x%02x.%lld@%s>\r\n",
            cfg->report.subject, date, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7],
            (long long)(now_us / 1000000), host);
    fputs("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
          "Auto-Submitted: auto-generated\r\n\r\n", f);
    for (char *line = body, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        fprintf(f, "%.*s\r\n", (int)(nl - line), line);
    }
    fclose(f);
    free(body);
    return out;
}

static void host_name(char *out, size_t size)
{
    if (gethostname(out, size - 1) != 0 || out[0] == '\0')
        snprintf(out, size, "localhost");
    out[size - 1] = '\0';
}

int report_run(MYSQL *db, const struct rg_config *cfg, int64_t boundary_us, const char *label)
{
    char err[1024], host[256];
    struct report r;
    if (!report_collect(db, cfg, boundary_us, &r, err, sizeof(err))) {
        log_error("%s: %s", label, err);
        return RG_EXIT_RUNTIME;
    }
    report_webhook_status(cfg, &r);
    host_name(host, sizeof(host));
    char *msg = report_message(cfg, &r, host, clock_realtime_us()), from[300];
    report_sender(cfg, host, from, sizeof(from));
    bool sent = smtp_send(cfg, from, msg, err, sizeof(err));
    free(msg);
    if (!sent)
        log_error("%s: the report (%zu blocked sender(s)) could not be sent through %s: %s", label, r.count,
                  cfg->report.smtp_server, err);
    else
        log_info("%s: report of %zu blocked sender(s) sent to %s through %s", label, r.count,
                 cfg->report.to.items[0], cfg->report.smtp_server);
    report_free(&r);
    return sent ? RG_EXIT_OK : RG_EXIT_REPORT;
}

void report_prepare_pending(MYSQL *db, const struct rg_config *cfg, int64_t boundary_us)
{
    char err[1024], host[256], path[4300], tmp[4400], suffix[64];
    struct report r;
    if (!report_collect(db, cfg, boundary_us, &r, err, sizeof(err))) {
        log_error("scheduled report: %s; no report for this period", err);
        return;
    }
    report_webhook_status(cfg, &r);
    host_name(host, sizeof(host));
    char *msg = report_message(cfg, &r, host, clock_realtime_us());
    snprintf(suffix, sizeof(suffix), ".report-%012lld", (long long)(boundary_us / 1000000));
    config_state_path(cfg, suffix, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    bool ok = f && fputs(msg, f) >= 0;
    if (f && fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, path) != 0)
        ok = false;
    if (!ok) {
        log_error("scheduled report: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    } else
        log_info("scheduled report: %zu blocked sender(s), queued for sending in %s", r.count, path);
    free(msg);
    report_free(&r);
}

void report_send_pending(const struct rg_config *cfg)
{
    static int64_t next_try_ms;
    static int tries;
    char pattern[4300], err[1024], host[256], from[300];
    glob_t g;

    if (clock_monotonic_ms() < next_try_ms)
        return;
    next_try_ms = clock_monotonic_ms() + 1000;      /* look once a second */
    config_state_path(cfg, ".report-[0-9]*[0-9]", pattern, sizeof(pattern));
    if (glob(pattern, 0, NULL, &g) != 0)
        return;
    const char *path = g.gl_pathv[0];               /* sorted: the oldest period first */
    FILE *f = fopen(path, "r");
    char *msg = NULL;
    size_t cap = 0;
    ssize_t len = f ? getdelim(&msg, &cap, '\0', f) : -1;
    if (f)
        fclose(f);
    if (len <= 0) {
        log_warning("report: cannot read %s: %s", path, strerror(errno));
        free(msg);
        globfree(&g);
        return;
    }
    host_name(host, sizeof(host));
    report_sender(cfg, host, from, sizeof(from));
    if (!cfg->report.enabled || cfg->report.to.count == 0) {
        log_warning("report: %s not sent: report.enabled is off now", path);
        char aside[4400];
        snprintf(aside, sizeof(aside), "%s.unsent", path);
        rename(path, aside);
    } else if (smtp_send(cfg, from, msg, err, sizeof(err))) {
        log_info("report: %s sent to %s through %s", path, cfg->report.to.items[0], cfg->report.smtp_server);
        unlink(path);
        tries = 0;
    } else if (++tries >= PENDING_TRIES) {
        char aside[4400];
        snprintf(aside, sizeof(aside), "%s.failed", path);
        rename(path, aside);
        log_error("report: giving up on %s after %d attempts (%s); left as %s", path, tries, err, aside);
        tries = 0;
    } else {
        log_error("report: sending %s through %s failed: %s; retry in %d s", path, cfg->report.smtp_server, err,
                  PENDING_RETRY_S);
        next_try_ms = clock_monotonic_ms() + PENDING_RETRY_S * 1000;
    }
    free(msg);
    globfree(&g);
}

int report_command(const struct rg_config *cfg, bool to_stdout)
{
    char err[1024], host[256], instance[64];
    if (!to_stdout && cfg->report.to.count == 0) {
        fprintf(stderr, "rateguard: report: report.to is empty: nowhere to send it (--stdout prints it)\n");
        return RG_EXIT_CONFIG;
    }
    MYSQL *db = db_connect(cfg, err, sizeof(err));
    if (db == NULL) {
        log_error("report: %s", err);
        return RG_EXIT_RUNTIME;
    }
    int rc = RG_EXIT_OK;
    if (to_stdout) {
        struct report r;
        if (report_collect(db, cfg, clock_realtime_us(), &r, err, sizeof(err))) {
            report_webhook_status(cfg, &r);
            host_name(host, sizeof(host));
            config_instance_name(cfg, instance, sizeof(instance));
            char *body = report_body(&r, host, instance);
            fputs(body, stdout);
            free(body);
            report_free(&r);
        } else {
            log_error("report: %s", err);
            rc = RG_EXIT_RUNTIME;
        }
    } else
        rc = report_run(db, cfg, clock_realtime_us(), "report");
    mysql_close(db);
    return rc;
}
