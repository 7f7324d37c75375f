/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * stress.c - deciding when the worker pool is under stress, and telling
 * the workers. Owns the stress flag in the shared header and the episode
 * log lines; what a worker does under stress is in worker.c.
 *
 * Each worker holds one connection, so a client that opens connections
 * and stalls (or a Postfix host with more smtpd processes than
 * workers.max) can hold every worker while others wait in the backlog.
 * Waiting connections are what matters: a full pool with an empty backlog
 * is a busy daemon, not a stressed one.
 */
#include "stress.h"
#include "listener.h"
#include "log.h"
#include "shm.h"
#include "util.h"

#include <poll.h>
#include <signal.h>
#include <time.h>

bool stress_connections_waiting(const struct listeners *ls)
{
    struct pollfd p[16];
    for (size_t done = 0; done < ls->count; done += 16) {
        size_t n = ls->count - done < 16 ? ls->count - done : 16;
        for (size_t i = 0; i < n; i++)
            p[i] = (struct pollfd){.fd = ls->fds[done + i], .events = POLLIN};
        if (poll(p, n, 0) > 0)
            return true;
    }
    return false;
}

/* Busy workers may sit in a wait of up to a second: SIGUSR1 ends it so
 * they apply the stress rules at once. */
static void wake_busy_workers(struct shm *shm)
{
    for (uint32_t i = 0; i < shm->scoreboard.sh->slots; i++) {
        struct worker_slot *ws = &shm->scoreboard.slot[i];
        if (ws->pid > 0 && __atomic_load_n(&ws->state, __ATOMIC_ACQUIRE) == SLOT_BUSY)
            kill(ws->pid, SIGUSR1);
    }
}

void stress_update(struct stress *st, struct shm *shm, const struct listeners *ls, bool saturated)
{
    bool pressed = saturated && stress_connections_waiting(ls);
    int64_t now = clock_monotonic_ms();

    if (pressed && !st->active) {
        st->active = true;
        st->began_ms = now;
        st->idle_closed_before = STAT_GET(shm, stress_idle_closed);
        st->timeouts_before = STAT_GET(shm, stress_timeouts);
        shm->hdr->stress_since = time(NULL);
        __atomic_store_n(&shm->hdr->stress, 1, __ATOMIC_RELEASE);
        STAT_ADD(shm, stress_episodes, 1);
        wake_busy_workers(shm);
        log_warning("stress: every worker is busy and connections are waiting: closing idle connections "
                    "after their reply and giving each workers.stress_read_timeout to send a request "
                    "(raise workers.max if this is regular load)");
    }
    if (!st->active)
        return;
    if (pressed) {
        st->calm_since_ms = 0;
        return;
    }
    if (st->calm_since_ms == 0)
        st->calm_since_ms = now;
    if (now - st->calm_since_ms < STRESS_CALM_MS)
        return;
    __atomic_store_n(&shm->hdr->stress, 0, __ATOMIC_RELEASE);
    shm->hdr->stress_since = 0;
    st->active = false;
    log_notice("stress: over after %.1f s; %llu idle connection(s) closed, %llu timed out",
               (double)(st->calm_since_ms - st->began_ms) / 1000.0,
               (unsigned long long)(STAT_GET(shm, stress_idle_closed) - st->idle_closed_before),
               (unsigned long long)(STAT_GET(shm, stress_timeouts) - st->timeouts_before));
    st->calm_since_ms = 0;
}
