/*
 * wqueue.c - ring buffer of length-prefixed records. Layout of a record:
 * a fixed header (size, sequence, numbers), then the six strings with
 * their NULs, padded to 8 bytes. Positions grow forever; the byte at
 * position p lives at ring[p % capacity].
 */
#include "wqueue.h"
#include "shm.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

struct record_header {
    uint32_t size;              /* whole record, padded */
    uint32_t rcpt_count;
    uint64_t seq;
    int64_t created_at;
    uint32_t msg_delta, rcpt_delta, quota_default;
    uint8_t blocked;
    uint8_t pad[3];
};

#define N_STRINGS 6

size_t wqueue_region_size(uint64_t capacity)
{
    return (size_t)capacity;
}

void wqueue_layout(struct wqueue *q, struct wqueue_shared *sh, void *region, uint64_t capacity,
                   bool init, int wake_fd)
{
    q->sh = sh;
    q->ring = region;
    q->wake_fd = wake_fd;
    q->recovered = 0;
    if (init) {
        shm_mutex_init(&sh->lock);
        sh->capacity = capacity;
        sh->head = sh->tail = sh->records = 0;
        sh->next_seq = 1;
        sh->writer_sleeping = 0;
    }
}

static void ring_write(struct wqueue *q, uint64_t pos, const void *src, size_t len)
{
    uint64_t cap = q->sh->capacity;
    size_t off = (size_t)(pos % cap);
    size_t first = len < cap - off ? len : (size_t)(cap - off);
    memcpy(q->ring + off, src, first);
    memcpy(q->ring, (const char *)src + first, len - first);
}

static void ring_read(struct wqueue *q, uint64_t pos, void *dst, size_t len)
{
    uint64_t cap = q->sh->capacity;
    size_t off = (size_t)(pos % cap);
    size_t first = len < cap - off ? len : (size_t)(cap - off);
    memcpy(dst, q->ring + off, first);
    memcpy((char *)dst + first, q->ring, len - first);
}

bool wqueue_push(struct wqueue *q, struct msg_record *rec)
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
        return false;

    struct record_header h = {
        .size = (uint32_t)total, .rcpt_count = rec->rcpt_count, .created_at = rec->created_at,
        .msg_delta = rec->msg_delta, .rcpt_delta = rec->rcpt_delta,
        .quota_default = rec->quota_default, .blocked = rec->blocked,
    };

    shm_mutex_lock(&q->sh->lock, &q->recovered);
    struct wqueue_shared *sh = q->sh;
    if (sh->tail - sh->head + total > sh->capacity) {
        shm_mutex_unlock(&sh->lock);
        return false;
    }
    h.seq = rec->seq = sh->next_seq++;
    uint64_t pos = sh->tail;
    ring_write(q, pos, &h, sizeof(h));
    pos += sizeof(h);
    for (int i = 0; i < N_STRINGS; i++) {
        ring_write(q, pos, strs[i] ? strs[i] : "", lens[i]);
        pos += lens[i];
    }
    /* Publishing the new tail is the commit point of the append. */
    sh->records++;
    __atomic_store_n(&sh->tail, sh->tail + total, __ATOMIC_RELEASE);
    shm_mutex_unlock(&sh->lock);
    return true;
}

void wqueue_wake(struct wqueue *q)
{
    /* Pairs with the writer's "announce sleep, then look at the queue":
     * our record must be visible before we look at its flag. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&q->sh->writer_sleeping, __ATOMIC_SEQ_CST)) {
        uint64_t one = 1;
        if (write(q->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
            /* the writer also wakes on its own timer */
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
    size_t body = h.size - sizeof(h);
    if (h.size < sizeof(h) || body > bufsize)
        return false;
    ring_read(q, cur->pos + sizeof(h), buf, body);

    const char **strs[N_STRINGS] = {&rec->sender, &rec->msgid, &rec->from_addr, &rec->to_addr,
                                    &rec->client_address, &rec->client_name};
    char *p = buf;
    for (int i = 0; i < N_STRINGS; i++) {
        *strs[i] = p;
        p += strnlen(p, (size_t)(buf + body - p)) + 1;
    }
    rec->seq = h.seq;
    rec->created_at = h.created_at;
    rec->rcpt_count = h.rcpt_count;
    rec->msg_delta = h.msg_delta;
    rec->rcpt_delta = h.rcpt_delta;
    rec->quota_default = h.quota_default;
    rec->blocked = h.blocked;
    cur->pos += h.size;
    cur->count++;
    *used = body;
    return true;
}

void wqueue_release(struct wqueue *q, const struct wqueue_cursor *cur)
{
    shm_mutex_lock(&q->sh->lock, &q->recovered);
    q->sh->records -= cur->count;
    __atomic_store_n(&q->sh->head, cur->pos, __ATOMIC_RELEASE);
    shm_mutex_unlock(&q->sh->lock);
}

uint64_t wqueue_depth(struct wqueue *q)
{
    return __atomic_load_n(&q->sh->records, __ATOMIC_RELAXED);
}
