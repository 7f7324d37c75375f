/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * status.h - the status dump: on SIGUSR1 the master writes the cache
 * table and the daemon's counters to state_dir/<instance>.status.txt,
 * .status.json, the figures to .status.prom, the senders refused now to
 * .blocked.txt and .blocked.json, the figures and the first senders of
 * `rateguard top` to .top-messages.txt, .top-quota.txt, .top-blocked.txt
 * (each replaced atomically); `rateguard status` queues the signal with
 * the one format it wants (so metrics never cost a dump of every sender),
 * waits for the new file and prints it.
 */
#ifndef RG_STATUS_H
#define RG_STATUS_H

#include <stdbool.h>
#include <time.h>

struct rg_config;
struct shm;

/* The blocked formats list only the senders whose next message would be
 * refused (`rateguard blocked`). The top formats (`rateguard top`) hold
 * the daemon's figures and at most top_rows senders, first by messages
 * in the last minute, by use of the nearest limit, or blocked first: one
 * file per ordering, so that two tops in different orderings never read
 * each other's. */
enum status_format { STATUS_TEXT, STATUS_JSON, STATUS_PROMETHEUS, STATUS_BLOCKED_TEXT, STATUS_BLOCKED_JSON,
                     STATUS_TOP_MESSAGES, STATUS_TOP_QUOTA, STATUS_TOP_BLOCKED, STATUS_FORMATS };

#define STATUS_TOP_ROWS_MAX 200         /* senders one top dump lists at most */
#define STATUS_TOP_ROWS_DEFAULT 20      /* ... when kill -USR1 asks for every dump */
#define STATUS_TOP_VERSION 1            /* the first line of a top dump: "top 1 ORDER ROWS" */

/* The value `rateguard` queues with SIGRTMIN: the format in the low byte,
 * the rows a top dump should list above it (0 for the other formats). */
static inline int status_request(enum status_format format, unsigned rows)
{
    return (int)format | (int)((rows > STATUS_TOP_ROWS_MAX ? STATUS_TOP_ROWS_MAX : rows) << 8);
}

/* Write the dump files whose format is set in wanted[]; a top dump lists
 * top_rows senders (1 to STATUS_TOP_ROWS_MAX). Returns false (logged) on
 * failure. */
bool status_write(const struct rg_config *cfg, struct shm *shm, time_t started, const bool wanted[STATUS_FORMATS],
                  unsigned top_rows);

/* The dump file's name suffix of a format (".status.txt", ...). */
const char *status_suffix(enum status_format format);

#endif
