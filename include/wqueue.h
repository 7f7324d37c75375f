/*
 * wqueue.h - the write-back queue: a byte ring buffer in shared memory of
 * variable-length records, appended by workers and drained by the writer.
 * A record leaves the queue only after the writer committed it, so a
 * writer that dies mid-transaction loses nothing.
 *
 * A message record carries everything the writer needs: the sender, the
 * counter deltas and the fields of its `messages` row.
 */
#ifndef RG_WQUEUE_H
#define RG_WQUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wqueue_shared {
    pthread_mutex_t lock;
    uint64_t capacity;          /* bytes of the ring */
    uint64_t head, tail;        /* monotonic byte positions */
    uint64_t records;           /* records between head and tail */
    uint64_t next_seq;          /* sequence number of the next record */
    uint32_t writer_sleeping;   /* the writer waits on wake_fd */
};

struct wqueue {
    struct wqueue_shared *sh;
    char *ring;
    int wake_fd;                /* eventfd the writer sleeps on */
    unsigned recovered;
};

/* A counted message, as queued. Strings are NUL-terminated, borrowed. */
struct msg_record {
    uint64_t seq;               /* set by wqueue_push */
    int64_t created_at;         /* unix time of the decision */
    uint32_t rcpt_count;        /* recipients of this message */
    uint32_t msg_delta, rcpt_delta;
    uint32_t quota_default;     /* quota of the row if the sender is new */
    uint8_t blocked;
    const char *sender, *msgid, *from_addr, *to_addr, *client_address, *client_name;
};

size_t wqueue_region_size(uint64_t capacity);
void wqueue_layout(struct wqueue *q, struct wqueue_shared *sh, void *region, uint64_t capacity,
                   bool init, int wake_fd);

/* Append a record (assigning rec->seq). False when the ring has no room. */
bool wqueue_push(struct wqueue *q, struct msg_record *rec);

/* Wake the writer if it sleeps (after a push, outside any lock). */
void wqueue_wake(struct wqueue *q);

/*
 * Writer side. A cursor walks records from the head without removing them;
 * wqueue_next copies the next one into buf (which then owns the strings)
 * (*used bytes of it) and returns false at the end or when buf is too small. wqueue_release drops everything before the
 * cursor once it is committed.
 */
struct wqueue_cursor {
    uint64_t pos;
    uint64_t count;
};

void wqueue_cursor_start(struct wqueue *q, struct wqueue_cursor *cur);
bool wqueue_next(struct wqueue *q, struct wqueue_cursor *cur, char *buf, size_t bufsize,
                 struct msg_record *rec, size_t *used);
void wqueue_release(struct wqueue *q, const struct wqueue_cursor *cur);

uint64_t wqueue_depth(struct wqueue *q);

/* Largest encoded record. */
#define WQUEUE_MAX_RECORD (70 * 1024)

#endif
