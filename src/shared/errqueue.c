/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * errqueue.c - the shared ring of pending Sentry events and the rate limit
 * by kind (see errqueue.h). The lock is held for memcpy only: no I/O, no
 * logging (this code runs inside log_error()).
 */
#include "errqueue.h"
#include "log.h"
#include "pmutex.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct kind {
    uint64_t fingerprint;       /* 0: free */
    int64_t last_s;             /* monotonic seconds of the last event queued */
    uint64_t suppressed;
};

struct errqueue_shared {
    pthread_mutex_t lock;
    uint32_t enabled;
    int64_t window_s;
    uint64_t head, tail;        /* positions; slot = position % ERRQUEUE_SLOTS */
    struct errqueue_stats stats;
    struct kind kinds[ERRQUEUE_KINDS];
    struct errqueue_event events[ERRQUEUE_SLOTS];
};

static struct errqueue_shared *ring;
static char process_kind[16] = "master";
static int next_signal;

static void (*fatal_sender)(const struct errqueue_event *e);

void errqueue_set_fatal_sender(void (*send)(const struct errqueue_event *e))
{
    fatal_sender = send;
}

static void hook(int level, const char *format, const char *text)
{
    if (level != LOG_CRIT) {
        errqueue_push(format, text);
        return;
    }
    if (fatal_sender == NULL || ring == NULL || !__atomic_load_n(&ring->enabled, __ATOMIC_ACQUIRE))
        return;
    static struct errqueue_event e;
    memset(&e, 0, sizeof(e));
    e.time_us = clock_realtime_us();
    e.pid = (int32_t)getpid();
    e.signal = -1;      /* marks a fatal line */
    str_copy(e.process, process_kind, sizeof(e.process));
    str_copy(e.format, format, sizeof(e.format));
    str_copy(e.text, text, sizeof(e.text));
    fatal_sender(&e);
}

bool errqueue_create(long window_s)
{
    void *p = mmap(NULL, sizeof(struct errqueue_shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        log_error("mmap(%zu bytes for the Sentry queue): %s", sizeof(struct errqueue_shared), strerror(errno));
        return false;
    }
    ring = p;
    pmutex_init(&ring->lock);
    ring->window_s = window_s;
    log_set_error_hook(hook);
    return true;
}

void errqueue_destroy(void)
{
    if (ring == NULL)
        return;
    log_set_error_hook(NULL);
    munmap(ring, sizeof(*ring));
    ring = NULL;
}

void errqueue_configure(bool enabled, long window_s)
{
    if (ring == NULL)
        return;
    __atomic_store_n(&ring->enabled, enabled ? 1u : 0u, __ATOMIC_RELEASE);
    __atomic_store_n(&ring->window_s, (int64_t)window_s, __ATOMIC_RELEASE);
}

void errqueue_set_process(const char *kind)
{
    str_copy(process_kind, kind, sizeof(process_kind));
}

void errqueue_next_signal(int sig)
{
    next_signal = sig;
}

static int64_t monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

/* The kind's slot; a new kind takes a free slot or the stalest one. */
static struct kind *kind_slot(uint64_t fp)
{
    struct kind *oldest = &ring->kinds[0];
    for (unsigned i = 0; i < ERRQUEUE_KINDS; i++) {
        struct kind *k = &ring->kinds[(fp + i) % ERRQUEUE_KINDS];
        if (k->fingerprint == fp)
            return k;
        if (k->fingerprint == 0) {
            k->fingerprint = fp;
            k->last_s = INT64_MIN;
            k->suppressed = 0;
            return k;
        }
        if (k->last_s < oldest->last_s)
            oldest = k;
    }
    oldest->fingerprint = fp;
    oldest->last_s = INT64_MIN;
    oldest->suppressed = 0;
    return oldest;
}

void errqueue_push(const char *format, const char *text)
{
    int sig = next_signal;
    next_signal = 0;
    if (ring == NULL || !__atomic_load_n(&ring->enabled, __ATOMIC_ACQUIRE))
        return;

    uint64_t fp = fnv1a64(format, strlen(format)) ^ ((uint64_t)(unsigned)sig * 0x9e3779b97f4a7c15ull);
    if (fp == 0)
        fp = 1;
    int64_t now = monotonic_s();
    unsigned recovered = 0;
    pmutex_lock(&ring->lock, &recovered);
    struct kind *k = kind_slot(fp);
    if (k->last_s != INT64_MIN && now - k->last_s < ring->window_s) {
        k->suppressed++;
        ring->stats.suppressed++;
    } else if (ring->tail - ring->head >= ERRQUEUE_SLOTS) {
        /* Full (Sentry unreachable and slow): this one is lost, counted;
         * the next of its kind is tried again. */
        ring->stats.dropped++;
    } else {
        struct errqueue_event *e = &ring->events[ring->tail % ERRQUEUE_SLOTS];
        e->time_us = clock_realtime_us();
        e->suppressed = k->suppressed;
        e->pid = (int32_t)getpid();
        e->signal = sig;
        str_copy(e->process, process_kind, sizeof(e->process));
        str_copy(e->format, format, sizeof(e->format));
        str_copy(e->text, text, sizeof(e->text));
        k->suppressed = 0;
        k->last_s = now;
        ring->tail++;
        ring->stats.queued++;
    }
    pmutex_unlock(&ring->lock);
}

bool errqueue_pop(struct errqueue_event *out)
{
    bool got = false;
    unsigned recovered = 0;
    if (ring == NULL || __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE) == __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE))
        return false;
    pmutex_lock(&ring->lock, &recovered);
    if (ring->head != ring->tail) {
        *out = ring->events[ring->head % ERRQUEUE_SLOTS];
        ring->head++;
        got = true;
    }
    pmutex_unlock(&ring->lock);
    return got;
}

void errqueue_count(bool sent)
{
    if (ring == NULL)
        return;
    if (sent)
        __atomic_fetch_add(&ring->stats.sent, 1, __ATOMIC_RELAXED);
    else
        __atomic_fetch_add(&ring->stats.failed, 1, __ATOMIC_RELAXED);
}

bool errqueue_stats(struct errqueue_stats *out)
{
    unsigned recovered = 0;
    if (ring == NULL)
        return false;
    pmutex_lock(&ring->lock, &recovered);
    *out = ring->stats;
    pmutex_unlock(&ring->lock);
    return true;
}
