/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * stress.h - the worker pool's stress mode, after Postfix's (STRESS_README):
 * when no worker is idle, none can be added and connections wait in the
 * listen backlog, the master turns stress on in shared memory and wakes
 * the busy workers; they then close connections idle after a reply and
 * cut every other wait to workers.stress_read_timeout (worker.c). Stress
 * ends once no connection has waited for STRESS_CALM_MS.
 */
#ifndef RG_STRESS_H
#define RG_STRESS_H

#include <stdbool.h>
#include <stdint.h>

struct listeners;
struct shm;

#define STRESS_CALM_MS 1000     /* no waiting connection this long: stress over */
#define STRESS_CHECK_MS 100     /* how often the master looks while in stress */

/* The master's view of the current episode. */
struct stress {
    bool active;
    int64_t began_ms, calm_since_ms;    /* monotonic */
    uint64_t idle_closed_before, timeouts_before;
};

/* True when a connection waits to be accepted on any listener. */
bool stress_connections_waiting(const struct listeners *ls);

/* Called by the master's loop after it has tended the pool; saturated:
 * no worker is idle and no more may be started. Turns stress on (logged
 * once, counted, busy workers woken) or off (logged once with what it
 * closed). */
void stress_update(struct stress *st, struct shm *shm, const struct listeners *ls, bool saturated);

#endif
