/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * metrics.h - the daemon's figures, read from the shared segment: the
 * worker pool's states, the request counters as every dump names them,
 * and the whole Prometheus text exposition (served on /metrics by
 * metricsd.c, written to .status.prom by status.c). Reads only atomics
 * and, for the optional blocked senders, the cache under its locks.
 */
#ifndef RG_METRICS_H
#define RG_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"      /* METRICS_BLOCKED_SENDERS_MAX */

struct shm;

/* The worker slots by state. */
struct pool_counts {
    unsigned busy, idle, running;
};
struct pool_counts metrics_pool_counts(struct shm *shm);

/* The request counters: their names ("served", "counted", ...) and
 * values, in one order for the text, JSON and Prometheus forms. */
size_t metrics_request_count(void);
const char *metrics_request_name(size_t i);
unsigned long long metrics_request_value(struct shm *shm, size_t i);

/* The age of the oldest record waiting for the writer (microseconds), 0
 * when none waits: the writer's lag. */
int64_t metrics_write_lag_us(struct shm *shm);

/* The signals' names in the order of shm_stats.signal_episodes. */
extern const char *const metrics_signal_names[4];

/* The Prometheus text format (0.0.4): HELP and TYPE for every family, no
 * label per sender except, when blocked_senders > 0, that many senders
 * refused in this period, most messages first. */
void metrics_write_prometheus(FILE *f, struct shm *shm, unsigned blocked_senders);

#endif
