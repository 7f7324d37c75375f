/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * connlog.h - the shared, rate-limited log of connection problems
 * (refusals, timeouts, malformed input): one line per kind a minute
 * whichever worker sees it, the rest counted and summed up in one line
 * "N more like this in the last 60 s". A local user opening thousands of
 * connections can thus add only a bounded number of lines to the log.
 */
#ifndef RG_CONNLOG_H
#define RG_CONNLOG_H

#include <stdbool.h>
#include <stdint.h>

struct shm;

#define CONNLOG_INTERVAL 60     /* seconds */

enum connlog_kind {
    CONNLOG_NOT_ALLOWED_CLIENT,     /* outside allowed_clients */
    CONNLOG_OVER_CLIENT_LIMIT,      /* over workers.max_per_client */
    CONNLOG_USER_NOT_ALLOWED,       /* a local peer's account outside allowed_users */
    CONNLOG_PEER_LOOKUP,            /* the owner of a local peer could not be looked up (an error) */
    CONNLOG_READ_TIMEOUT,           /* workers.read_timeout inside a request */
    CONNLOG_STRESS_TIMEOUT,         /* workers.stress_read_timeout */
    CONNLOG_CLOSED_IN_REQUEST,
    CONNLOG_IO_ERROR,               /* read or write failed */
    CONNLOG_METRICS_REFUSED,        /* /metrics: outside metrics.allowed_clients (metricsd.c) */
    CONNLOG_MALFORMED,              /* last: one slot per reason (hashed), see below */
    CONNLOG_KINDS
};

/* Malformed requests are limited per reason, so each reason the parser
 * gives (a fixed set of seven) gets its line: a reason takes the first
 * free slot for good; were they all taken, the last is shared. */
#define CONNLOG_MALFORMED_SLOTS 8
#define CONNLOG_SLOTS (CONNLOG_MALFORMED + CONNLOG_MALFORMED_SLOTS)

/* One slot in shared memory (struct shm_header). */
struct connlog_slot {
    uint64_t since;         /* monotonic second + 1 the current interval began, 0 = none */
    uint64_t suppressed;    /* lines not written in it */
    uint64_t tag;           /* malformed slots: hash of the reason, 0 = free */
    char detail[48];        /* and the reason, for the summary line */
};

/* True when a line of this kind is to be written now (the first in its
 * interval); false when it is only counted. detail: the malformed
 * request's reason, NULL for other kinds. Logs the summary of a previous
 * interval first when it is still owed. */
bool connlog_take(struct shm *shm, enum connlog_kind kind, const char *detail);

/* Write the summary of every interval that has ended (all: of every
 * interval, ended or not: at stop). Called by the master each second. */
void connlog_flush(struct shm *shm, bool all);

#endif
