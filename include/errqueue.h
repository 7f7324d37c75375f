/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * errqueue.h - the daemon's own errors on their way to Sentry: a small
 * ring of pending events in an anonymous shared mapping (made by the
 * master before it forks, so every rateguard process has it), filled by
 * log_error() through a hook in log.c and drained by the notifier.
 *
 * Pushing never blocks on I/O and never fails loudly: it copies the line
 * under a robust mutex and returns. Rate limit at the source: the same
 * error (same printf format, and for a dead child the same signal) is
 * queued at most once per window (sentry.rate_limit, default 60 s); the
 * repeats in between are counted and the count travels with the next
 * event of that kind. A full ring drops the event and counts it.
 *
 * The events and the counters live in the mapping; nothing here frees
 * anything before errqueue_destroy() in the master.
 */
#ifndef RG_ERRQUEUE_H
#define RG_ERRQUEUE_H

#include <stdbool.h>
#include <stdint.h>

#define ERRQUEUE_SLOTS 64       /* pending events */
#define ERRQUEUE_KINDS 128      /* errors remembered for the rate limit */
#define ERRQUEUE_TEXT 1024      /* bytes of a message kept */
#define ERRQUEUE_FORMAT 256     /* bytes of a template kept */

/* One pending event, as copied out by errqueue_pop(). */
struct errqueue_event {
    int64_t time_us;
    uint64_t suppressed;        /* repeats not queued since the last event of this kind */
    int32_t pid, signal;
    char process[16];
    char format[ERRQUEUE_FORMAT];
    char text[ERRQUEUE_TEXT];
};

struct errqueue_stats {
    uint64_t queued, sent, suppressed, dropped, failed;
};

/* Master, before forking: map the ring (window: seconds between two
 * events of one kind) and install the log hook. False (logged) when the
 * memory cannot be had. */
bool errqueue_create(long window_s);
void errqueue_destroy(void);

/* Start or stop queueing (sentry.dsn set or not; a reload may change it),
 * and the rate-limit window. */
void errqueue_configure(bool enabled, long window_s);

/* This process's kind for the "process" tag (default "master"). */
void errqueue_set_process(const char *kind);

/* The next error logged by this process is about a child that died of
 * this signal: it becomes a tag and part of the fingerprint. */
void errqueue_next_signal(int sig);

/* What log_error() calls: queue (or count) one error line. */
void errqueue_push(const char *format, const char *text);

/* A fatal line (log_fatal: the process exits next, so nothing would drain
 * the ring): handed at once to the sender set here (sentrysend.c, which
 * sends it synchronously within sentry.timeout). Not rate-limited. */
void errqueue_set_fatal_sender(void (*send)(const struct errqueue_event *e));

/* Notifier: take the oldest pending event. False when none. */
bool errqueue_pop(struct errqueue_event *out);

/* Notifier: one event sent, or not. */
void errqueue_count(bool sent);

/* Counters for the status dump; false when there is no ring. */
bool errqueue_stats(struct errqueue_stats *out);

#endif
