/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * wqueue.c - ring buffer of length-prefixed records in a shared file
 * mapping. Layout of a record: a fixed header (size, epoch, sequence,
 * numbers), then the six strings with their NULs, padded to 8 bytes.
 * Positions grow forever; the byte at position p lives at
 * ring[p % capacity]. It also owns the writer's wake-up protocol (the
 * writer_sleeping flag and the eventfd): workers, the writer and the
 * master only call it.
 */
#include "wqueue.h"
#include "cache.h"
#include "pmutex.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

struct record_header {
    uint32_t size;              /* whole record, padded */
    uint32_t rcpt_count;
    uint64_t epoch, seq;
    int64_t created_us;
    uint32_t msg_delta, rcpt_delta, quota_default;
    uint32_t quota, quota_reset, used;
    uint8_t blocked;
    uint8_t notified_set, notified_clear;   /* were padding (always 0) before: old files read as no change */
    uint8_t event;                          /* likewise: old files read as quota events */
    uint8_t pad[4];
};

#define N_STRINGS 6

static uint64_t header_checksum(const struct wqueue_shared *sh)
{
    uint64_t fields[4] = {sh->magic, sh->version, sh->capacity, sh->epoch};
    return fnv1a64(fields, sizeof(fields));
}

static void ring_read(struct wqueue *q, uint64_t pos, void *dst, size_t len)
{
    uint64_t cap = q->sh->capacity;
    size_t off = (size_t)(pos % cap);
    size_t first = len < cap - off ? len : (size_t)(cap - off);
    memcpy(dst, q->ring + off, first);
    memcpy((char *)dst + first, q->ring, len - first);
}

static void ring_write(struct wqueue *q, uint64_t pos, const void *src, size_t len)
{
    uint64_t cap = q->sh->capacity;
    size_t off = (size_t)(pos % cap);
    size_t first = len < cap - off ? len : (size_t)(cap - off);
    memcpy(q->ring + off, src, first);
    memcpy(q->ring, (const char *)src + first, len - first);
}

/* Everything a previous run left must add up before it is trusted. */
static bool check_existing(struct wqueue *q, uint64_t file_size, char *err, size_t errsize)
{
    struct wqueue_shared *sh = q->sh;
    if (sh->magic != WQUEUE_MAGIC || sh->version != WQUEUE_VERSION) {
        snprintf(err, errsize, "not a rateguard queue of version %d (magic %08x, version %u)",
                 WQUEUE_VERSION, sh->magic, sh->version);
        return false;
    }
    if (sh->checksum != header_checksum(sh) || sh->capacity + WQUEUE_DATA_OFFSET != file_size) {
        snprintf(err, errsize, "header damaged (checksum or size does not match)");
        return false;
    }
    if (sh->head > sh->tail || sh->tail - sh->head > sh->capacity) {
        snprintf(err, errsize, "positions damaged (head %llu, tail %llu)",
                 (unsigned long long)sh->head, (unsigned long long)sh->tail);
        return false;
    }
    uint64_t records = 0;
    static char buf[WQUEUE_MAX_RECORD];
    for (uint64_t pos = sh->head; pos < sh->tail; records++) {
        struct record_header h;
        struct msg_record rec;
        ring_read(q, pos, &h, sizeof(h));
        if (h.size < sizeof(h) + N_STRINGS || h.size > WQUEUE_MAX_RECORD || h.size % 8 != 0 ||
            pos + h.size > sh->tail || h.epoch != sh->epoch || h.seq >= sh->next_seq) {
            snprintf(err, errsize, "record at position %llu damaged", (unsigned long long)pos);
            return false;
        }
        ring_read(q, pos, buf, h.size);
        if (wqueue_decode(buf, h.size, &rec) != h.size) {
            snprintf(err, errsize, "record at position %llu damaged (strings)", (unsigned long long)pos);
            return false;
        }
        pos += h.size;
    }
    if (records != sh->records) {
        snprintf(err, errsize, "record count damaged (%llu found, %llu expected)",
                 (unsigned long long)records, (unsigned long long)sh->records);
        return false;
    }
    return true;
}

enum wqueue_open_result wqueue_open(struct wqueue *q, const char *path, uint64_t capacity,
                                    char *err, size_t errsize)
{
    struct stat st;
    bool existed = true;
    int fd = open(path, O_RDWR | O_CLOEXEC);

    memset(q, 0, sizeof(*q));
    q->wake_fd = -1;
    if (fd < 0 && errno == ENOENT) {
        existed = false;
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        /* Allocated now, not sparse: a full disk later must not turn a
         * worker's write into the mapping into SIGBUS. */
        int rc = fd >= 0 ? posix_fallocate(fd, 0, (off_t)(WQUEUE_DATA_OFFSET + capacity)) : 0;
        if (rc != 0) {
            snprintf(err, errsize, "posix_fallocate(%s): %s", path, strerror(rc));
            close(fd);
            unlink(path);
            return WQUEUE_FAILED;
        }
    }
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(err, errsize, "open(%s): %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return WQUEUE_FAILED;
    }
    if ((uint64_t)st.st_size < WQUEUE_DATA_OFFSET + 8) {
        snprintf(err, errsize, "%s: too short to be a rateguard queue", path);
        close(fd);
        return WQUEUE_FAILED;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        snprintf(err, errsize, "mmap(%s): %s", path, strerror(errno));
        return WQUEUE_FAILED;
    }
    q->sh = p;
    q->ring = (char *)p + WQUEUE_DATA_OFFSET;
    q->map_size = (size_t)st.st_size;

    if (existed) {
        char why[256];
        if (!check_existing(q, (uint64_t)st.st_size, why, sizeof(why))) {
            snprintf(err, errsize, "%s: %s", path, why);
            munmap(p, q->map_size);
            q->sh = NULL;
            return WQUEUE_FAILED;
        }
        if (q->sh->capacity != capacity && q->sh->records == 0) {
            /* Empty: take the configured size now. */
            munmap(p, q->map_size);
            q->sh = NULL;
            unlink(path);
            return wqueue_open(q, path, capacity, err, errsize);
        }
    } else {
        struct wqueue_shared *sh = q->sh;
        sh->magic = WQUEUE_MAGIC;
        sh->version = WQUEUE_VERSION;
        sh->capacity = capacity;
        sh->epoch = (uint64_t)clock_realtime_us();
        sh->checksum = header_checksum(sh);
        sh->head = sh->tail = sh->records = 0;
        sh->next_seq = 1;
    }
    /* Whoever held the lock is gone (we hold the pidfile): start afresh. */
    pmutex_init(&q->sh->lock);
    q->sh->writer_sleeping = 0;
    return existed ? WQUEUE_RECOVERED : WQUEUE_CREATED;
}

void wqueue_raise_epoch(struct wqueue *q, uint64_t above)
{
    if (q->sh->records != 0 || q->sh->epoch > above)
        return;
    q->sh->epoch = above + 1;
    q->sh->checksum = header_checksum(q->sh);
}

void wqueue_close(struct wqueue *q, const char *path, bool remove_if_empty)
{
    if (q->sh == NULL)
        return;
    bool empty = q->sh->records == 0;
    munmap(q->sh, q->map_size);
    q->sh = NULL;
    if (remove_if_empty && empty)
        unlink(path);
}

size_t wqueue_encode(const struct msg_record *rec, char *buf)
{
    const char *strs[N_STRINGS] = {rec->sender, rec->msgid, rec->from_addr, rec->to_addr,
                                   rec->client_address, rec->client_name};
    size_t lens[N_STRINGS], total = sizeof(struct record_header);

    for (int i = 0; i < N_STRINGS; i++) {
        lens[i] = strlen(strs[i] ? strs[i] : "") + 1;
        total += lens[i];
    }
    total = (total + 7) & ~(size_t)7;
    if (total > WQUEUE_MAX_RECORD)
        return 0;
    struct record_header h = {
        .size = (uint32_t)total, .rcpt_count = rec->rcpt_count, .epoch = rec->epoch, .seq = rec->seq,
        .created_us = rec->created_us, .msg_delta = rec->msg_delta, .rcpt_delta = rec->rcpt_delta,
        .quota_default = rec->quota_default, .quota = rec->quota, .quota_reset = rec->quota_reset,
        .used = rec->used, .blocked = rec->blocked, .notified_set = rec->notified_set,
        .notified_clear = rec->notified_clear, .event = rec->event,
    };
    memcpy(buf, &h, sizeof(h));
    size_t off = sizeof(h);
    for (int i = 0; i < N_STRINGS; i++) {
        memcpy(buf + off, strs[i] ? strs[i] : "", lens[i]);
        off += lens[i];
    }
    memset(buf + off, 0, total - off);
    return total;
}

size_t wqueue_decode(char *buf, size_t len, struct msg_record *rec)
{
    struct record_header h;

    if (len < sizeof(h))
        return 0;
    memcpy(&h, buf, sizeof(h));
    if (h.size < sizeof(h) + N_STRINGS || h.size > len || h.size > WQUEUE_MAX_RECORD)
        return 0;
    const char **strs[N_STRINGS] = {&rec->sender, &rec->msgid, &rec->from_addr, &rec->to_addr,
                                    &rec->client_address, &rec->client_name};
    char *p = buf + sizeof(h), *end = buf + h.size;
    for (int i = 0; i < N_STRINGS; i++) {
        char *nul = memchr(p, '\0', (size_t)(end - p));
        if (nul == NULL)
            return 0;
        *strs[i] = p;
        p = nul + 1;
    }
    rec->epoch = h.epoch;
    rec->seq = h.seq;
    rec->created_us = h.created_us;
    rec->rcpt_count = h.rcpt_count;
    rec->msg_delta = h.msg_delta;
    rec->rcpt_delta = h.rcpt_delta;
    rec->quota_default = h.quota_default;
    rec->quota = h.quota;
    rec->quota_reset = h.quota_reset;
    rec->used = h.used;
    rec->blocked = h.blocked;
    rec->notified_set = h.notified_set & (NOTIFIED_BLOCK | NOTIFIED_WARNING);
    rec->notified_clear = h.notified_clear & (NOTIFIED_BLOCK | NOTIFIED_WARNING);
    rec->event = h.event == NOTIFY_EPISODE ? NOTIFY_EPISODE : 0;
    return h.size;
}

/* Take the lock; if its holder died, the record count may be off by the
 * record it was publishing: count again between head and tail. */
static void queue_lock(struct wqueue *q)
{
    unsigned before = q->recovered;
    pmutex_lock(&q->sh->lock, &q->recovered);
    if (q->recovered == before)
        return;
    uint64_t records = 0;
    for (uint64_t pos = q->sh->head; pos < q->sh->tail; records++) {
        struct record_header h;
        ring_read(q, pos, &h, sizeof(h));
        pos += h.size;
    }
    q->sh->records = records;
}

/* Make this process's mapping of the ring writable where an append at pos
 * of len bytes would go, outside the lock: the first write to a page of a
 * shared file mapping faults in each process (and again after writeback has
 * cleaned it), and a fault inside the lock keeps every other worker
 * waiting. An atomic add of zero changes no byte, whoever owns it. */
static void ring_prefault(struct wqueue *q, uint64_t pos, size_t len)
{
    uint64_t cap = q->sh->capacity;
    for (uint64_t p = pos, end = pos + len; p < end; p = (p | 4095) + 1)
        __atomic_fetch_add((unsigned char *)q->ring + (size_t)(p % cap), 0, __ATOMIC_RELAXED);
}

bool wqueue_push(struct wqueue *q, struct msg_record *rec)
{
    static char buf[WQUEUE_MAX_RECORD];     /* one per process: workers are single-threaded */

    size_t total = wqueue_encode(rec, buf);     /* epoch and seq: set under the lock */
    if (total == 0)
        return false;
    ring_prefault(q, __atomic_load_n(&q->sh->tail, __ATOMIC_ACQUIRE), total);
    queue_lock(q);
    struct wqueue_shared *sh = q->sh;
    if (sh->tail - sh->head + total > sh->capacity) {
        pmutex_unlock(&sh->lock);
        return false;
    }
    rec->epoch = sh->epoch;
    rec->seq = sh->next_seq++;
    memcpy(buf + offsetof(struct record_header, epoch), &rec->epoch, sizeof(rec->epoch));
    memcpy(buf + offsetof(struct record_header, seq), &rec->seq, sizeof(rec->seq));
    ring_write(q, sh->tail, buf, total);
    /* Publishing the new tail is the commit point of the append. */
    sh->records++;
    __atomic_store_n(&sh->tail, sh->tail + total, __ATOMIC_RELEASE);
    pmutex_unlock(&sh->lock);
    return true;
}

/* A wake-up on the eventfd: counted by the kernel until the writer reads it. */
static void poke(struct wqueue *q)
{
    uint64_t one = 1;
    if (write(q->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        /* the writer also wakes on its own timer */
    }
}

void wqueue_wake(struct wqueue *q)
{
    /* Pairs with the writer's "announce sleep, then look at the queue":
     * our record must be visible before we look at its flag. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&q->sh->writer_sleeping, __ATOMIC_SEQ_CST))
        poke(q);
}

void wqueue_wake_writer(struct wqueue *q)
{
    poke(q);
}

bool wqueue_writer_sleep(struct wqueue *q)
{
    /* Announce the sleep before the last look, so a push after the look
     * is sure to see it and poke us. */
    __atomic_store_n(&q->sh->writer_sleeping, 1, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (wqueue_bytes(q) > 0) {
        __atomic_store_n(&q->sh->writer_sleeping, 0, __ATOMIC_SEQ_CST);
        return false;
    }
    return true;
}

void wqueue_writer_awake(struct wqueue *q, bool poked)
{
    __atomic_store_n(&q->sh->writer_sleeping, 0, __ATOMIC_SEQ_CST);
    if (poked) {
        uint64_t v;
        if (read(q->wake_fd, &v, sizeof(v)) < 0) {
            /* already consumed by an earlier wake-up */
        }
    }
}

void wqueue_cursor_start(struct wqueue *q, struct wqueue_cursor *cur)
{
    cur->pos = __atomic_load_n(&q->sh->head, __ATOMIC_ACQUIRE);
    cur->count = 0;
}

bool wqueue_next(struct wqueue *q, struct wqueue_cursor *cur, char *buf, size_t bufsize,
                 struct msg_record *rec, size_t *used)
{
    struct record_header h;
    uint64_t tail = __atomic_load_n(&q->sh->tail, __ATOMIC_ACQUIRE);

    if (cur->pos >= tail)
        return false;
    ring_read(q, cur->pos, &h, sizeof(h));
    if (h.size > bufsize)
        return false;
    ring_read(q, cur->pos, buf, h.size);
    if (wqueue_decode(buf, h.size, rec) == 0)
        return false;
    cur->pos += h.size;
    cur->count++;
    *used = h.size;
    return true;
}

void wqueue_release(struct wqueue *q, const struct wqueue_cursor *cur)
{
    queue_lock(q);
    q->sh->records -= cur->count;
    __atomic_store_n(&q->sh->head, cur->pos, __ATOMIC_RELEASE);
    pmutex_unlock(&q->sh->lock);
}

int64_t wqueue_oldest_us(struct wqueue *q)
{
    struct record_header h = {0};
    queue_lock(q);
    if (q->sh->head < q->sh->tail)
        ring_read(q, q->sh->head, &h, sizeof(h));
    pmutex_unlock(&q->sh->lock);
    return h.created_us;
}

uint64_t wqueue_depth(struct wqueue *q)
{
    return __atomic_load_n(&q->sh->records, __ATOMIC_RELAXED);
}

uint64_t wqueue_bytes(struct wqueue *q)
{
    return __atomic_load_n(&q->sh->tail, __ATOMIC_ACQUIRE) - __atomic_load_n(&q->sh->head, __ATOMIC_ACQUIRE);
}
