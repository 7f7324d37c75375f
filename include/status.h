/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * status.h - the status dump: on SIGUSR1 the master writes the cache
 * table and the daemon's counters to state_dir/<instance>.status.txt,
 * .status.json, the figures to .status.prom, the senders refused now to
 * .blocked.txt and .blocked.json (each replaced
 * atomically); `rateguard status` queues the signal with the one format it
 * wants (so metrics never cost a dump of every sender), waits for the new
 * file and prints it.
 */
#ifndef RG_STATUS_H
#define RG_STATUS_H

#include <stdbool.h>
#include <time.h>

struct rg_config;
struct shm;

/* The blocked formats list only the senders whose next message would be
 * refused (`rateguard blocked`). */
enum status_format { STATUS_TEXT, STATUS_JSON, STATUS_PROMETHEUS, STATUS_BLOCKED_TEXT, STATUS_BLOCKED_JSON,
                     STATUS_FORMATS };

/* Write the dump files whose format is set in wanted[]. Returns false
 * (logged) on failure. */
bool status_write(const struct rg_config *cfg, struct shm *shm, time_t started, const bool wanted[STATUS_FORMATS]);

/* The dump file's name suffix of a format (".status.txt", ...). */
const char *status_suffix(enum status_format format);

#endif
