/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * connlog.c - one log line per kind of connection problem a minute,
 * across all workers, and a count of the lines left out.
 *
 * Each kind has a slot in shared memory: the second its interval began
 * and how many lines were left out since. The first event of an interval
 * wins a compare-and-swap on `since` and is logged; the others add one to
 * `suppressed`. Whoever sees the interval over first (the master's flush
 * each second, or the first event of the next interval) takes the count
 * with an atomic exchange and writes the summary, so a count is written
 * once; an event racing the exchange can only move into the neighbouring
 * interval's count, never be lost or counted twice.
 */
#include "connlog.h"
#include "log.h"
#include "shm.h"
#include "util.h"

#include <string.h>
#include <time.h>

static const char *const kind_names[CONNLOG_KINDS] = {
    [CONNLOG_NOT_ALLOWED_CLIENT] = "client not in allowed_clients, connection refused",
    [CONNLOG_OVER_CLIENT_LIMIT] = "client over workers.max_per_client, connection refused",
    [CONNLOG_USER_NOT_ALLOWED] = "local user not in allowed_users, connection refused",
    [CONNLOG_PEER_LOOKUP] = "owner of a local connection unknown, connection refused",
    [CONNLOG_READ_TIMEOUT] = "read timeout in a request",
    [CONNLOG_STRESS_TIMEOUT] = "no complete request within workers.stress_read_timeout",
    [CONNLOG_CLOSED_IN_REQUEST] = "connection closed inside a request",
    [CONNLOG_IO_ERROR] = "read or write error on a connection",
    [CONNLOG_METRICS_REFUSED] = "/metrics connection from outside metrics.allowed_clients",
    [CONNLOG_MALFORMED] = "malformed request",
};

static uint64_t now_mark(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec + 1;     /* never 0, which means "no interval" */
}

/* The slot of a kind; a malformed request's reason finds its slot or
 * claims a free one (and writes its text there once). The text is copied
 * byte by byte with atomic stores: a summary written meanwhile may show
 * part of it, never undefined behaviour. */
static size_t slot_of(struct shm *shm, enum connlog_kind kind, const char *detail)
{
    if (kind != CONNLOG_MALFORMED)
        return (size_t)kind;
    const char *d = detail ? detail : "";
    uint64_t h = fnv1a64(d, strlen(d)) | 1;     /* never 0, which means "free" */
    size_t last = CONNLOG_MALFORMED + CONNLOG_MALFORMED_SLOTS - 1;
    for (size_t i = CONNLOG_MALFORMED; i <= last; i++) {
        struct connlog_slot *s = &shm->hdr->connlog[i];
        uint64_t tag = __atomic_load_n(&s->tag, __ATOMIC_ACQUIRE);
        if (tag == 0 && __atomic_compare_exchange_n(&s->tag, &tag, h, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            for (size_t k = 0; k + 1 < sizeof(s->detail) && d[k]; k++)
                __atomic_store_n(&s->detail[k], d[k], __ATOMIC_RELAXED);
            return i;
        }
        if (tag == h)
            return i;
    }
    return last;
}

static enum connlog_kind kind_of(size_t slot)
{
    return slot >= CONNLOG_MALFORMED ? CONNLOG_MALFORMED : (enum connlog_kind)slot;
}

/* The lines left out of a slot's interval, taken once. */
static void write_summary(struct connlog_slot *s, enum connlog_kind kind)
{
    uint64_t n = __atomic_exchange_n(&s->suppressed, 0, __ATOMIC_RELAXED);
    if (n == 0)
        return;
    char detail[sizeof(s->detail) + 3] = "";
    if (kind == CONNLOG_MALFORMED) {
        detail[0] = ' ';
        detail[1] = '(';
        size_t k = 0;
        while (k + 1 < sizeof(s->detail) && (detail[k + 2] = __atomic_load_n(&s->detail[k], __ATOMIC_RELAXED)))
            k++;
        detail[k + 2] = ')';
        detail[k + 3] = '\0';
    }
    log_msg(kind == CONNLOG_PEER_LOOKUP ? LOG_ERR : LOG_WARNING,
            "%s%s: %llu more like this in the last %d s (one line per kind a minute; status counts them all)",
            kind_names[kind], detail, (unsigned long long)n, CONNLOG_INTERVAL);
}

bool connlog_take(struct shm *shm, enum connlog_kind kind, const char *detail)
{
    struct connlog_slot *s = &shm->hdr->connlog[slot_of(shm, kind, detail)];
    uint64_t now = now_mark();
    uint64_t since = __atomic_load_n(&s->since, __ATOMIC_ACQUIRE);

    if (since == 0 || now - since >= CONNLOG_INTERVAL) {
        if (__atomic_compare_exchange_n(&s->since, &since, now, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            write_summary(s, kind);
            return true;
        }
        /* another worker began the new interval just now */
    }
    __atomic_fetch_add(&s->suppressed, 1, __ATOMIC_RELAXED);
    return false;
}

void connlog_flush(struct shm *shm, bool all)
{
    uint64_t now = now_mark();
    for (size_t i = 0; i < CONNLOG_SLOTS; i++) {
        struct connlog_slot *s = &shm->hdr->connlog[i];
        uint64_t since = __atomic_load_n(&s->since, __ATOMIC_ACQUIRE);
        if (since == 0 || (!all && now - since < CONNLOG_INTERVAL))
            continue;
        write_summary(s, kind_of(i));
        /* Ended: the next event logs at once. A worker that began a new
         * interval meanwhile keeps it (the swap fails). */
        __atomic_compare_exchange_n(&s->since, &since, 0, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    }
}
