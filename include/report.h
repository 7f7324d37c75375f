/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * report.h - the e-mail report of the senders blocked in the period that
 * ends (policyd-rate-limit's `report`): who, quota, messages, recipients,
 * when first blocked, whether the webhook was notified. Collected from the
 * database just before a period reset (`rateguard cleanup`, the writer at
 * a quota.reset_schedule boundary, or `rateguard report` on demand),
 * formatted as one RFC 5322 message and sent with smtp.c.
 *
 * "Webhook" comes from state_dir/<instance>.webhook-sent, one line per
 * QUOTA_LIMIT_REACHED notification the notifier of this host finished
 * ("<unix time> notified|failed <sender>"): see docs/notifications.md, "The report".
 *
 * Ownership: report_collect() fills a struct the caller frees with
 * report_free(); report_message() returns a string the caller frees.
 */
#ifndef RG_REPORT_H
#define RG_REPORT_H

#include <mysql.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rg_config;

struct report_row {
    char sender[256];
    unsigned long quota, messages, recipients;
    int64_t first_block_s;      /* unix seconds of the first blocked message of the period */
    int64_t period_start_s;     /* the sender's last reset, 0 if never */
    char webhook[16];           /* notified, failed, no record, off */
};

struct report {
    struct report_row *rows;
    size_t count;
    int64_t end_s;              /* the end of the period reported */
};

/* The senders blocked since their last reset and before boundary_us, in
 * the order they were first blocked. False with err on a database error. */
bool report_collect(MYSQL *db, const struct rg_config *cfg, int64_t boundary_us, struct report *out, char *err,
                    size_t errsize);
void report_free(struct report *r);

/* Fill rows' webhook column from the notifier's record (pure but for
 * reading that file; a missing file means no record). */
void report_webhook_status(const struct rg_config *cfg, struct report *r);

/* The whole message, headers and body, CRLF line ends. host names this
 * machine (From default, Message-ID); now_us is the Date. */
char *report_message(const struct rg_config *cfg, const struct report *r, const char *host, int64_t now_us);

/* The body only (what `rateguard report --stdout` prints), LF line ends. */
char *report_body(const struct report *r, const char *host, const char *instance);

/* report.from, or rateguard@<host> when unset, into out. */
void report_sender(const struct rg_config *cfg, const char *host, char *out, size_t size);

/* Collect (boundary now), format and send: what `rateguard cleanup` does
 * before its reset and `rateguard report` does on demand. Returns 0 when
 * sent, RG_EXIT_RUNTIME when it could not be collected, RG_EXIT_REPORT
 * when it could not be sent (each logged). */
int report_run(MYSQL *db, const struct rg_config *cfg, int64_t boundary_us, const char *why_label);

/* The writer, at a scheduled boundary: collect and leave the message in
 * state_dir/<instance>.report-<boundary> for the notifier to send.
 * Logged; never fails the reset. */
void report_prepare_pending(MYSQL *db, const struct rg_config *cfg, int64_t boundary_us);

/* The notifier: send the pending reports whose time has come; a failure
 * is retried every 5 minutes, 12 times, then the file is renamed
 * *.failed and left for the administrator. */
void report_send_pending(const struct rg_config *cfg);

/* `rateguard report [--stdout]`: the period so far, printed (body only)
 * or sent. 0 done, RG_EXIT_RUNTIME database, RG_EXIT_CONFIG report.to
 * empty, RG_EXIT_REPORT not sent. */
int report_command(const struct rg_config *cfg, bool to_stdout);

/* The notifier, after a QUOTA_LIMIT_REACHED notification finished. */
void report_note_webhook(const struct rg_config *cfg, const char *sender, bool notified);

#endif
