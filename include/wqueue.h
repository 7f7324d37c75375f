/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * wqueue.h - the write-back queue: a byte ring of variable-length records
 * in a file-backed shared mapping (state_dir/rateguard-<instance>.queue),
 * appended by workers and drained by the writer. Being a file, it outlives
 * a crash of the whole daemon (and a reboot): the next start finds every
 * record the killed daemon had answered for and writes it.
 *
 * A record leaves the queue only after the writer committed it. Records
 * are numbered (epoch, seq): the epoch is the creation time of the queue
 * file in microseconds, seq counts up; the writer records the last number
 * it committed in the same transaction, so a replay is never counted twice.
 */
#ifndef RG_WQUEUE_H
#define RG_WQUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WQUEUE_MAGIC 0x52475751u        /* "RGWQ" */
#define WQUEUE_VERSION 1

/* The file's header; the ring follows at WQUEUE_DATA_OFFSET. */
struct wqueue_shared {
    uint32_t magic, version;
    uint64_t capacity;          /* bytes of the ring */
    uint64_t epoch;             /* microseconds when the file was made */
    uint64_t checksum;          /* of the four fields above */
    pthread_mutex_t lock;
    uint64_t head, tail;        /* monotonic byte positions */
    uint64_t records;           /* records between head and tail */
    uint64_t next_seq;          /* sequence number of the next record */
    uint32_t writer_sleeping;   /* the writer waits on wake_fd (only wqueue.c touches it) */
};

#define WQUEUE_DATA_OFFSET 4096

struct wqueue {
    struct wqueue_shared *sh;
    char *ring;
    size_t map_size;
    int wake_fd;                /* eventfd the writer sleeps on (the master makes it before fork) */
    unsigned recovered;
};

/* A counted message, as queued. Strings are NUL-terminated, borrowed. */
struct msg_record {
    uint64_t epoch, seq;        /* set by wqueue_push */
    int64_t created_us;         /* unix time of the decision, microseconds */
    uint32_t rcpt_count;        /* recipients of this message */
    uint32_t msg_delta, rcpt_delta;
    uint32_t quota_default;     /* quota of the row if the sender is new */
    uint32_t quota, quota_reset, used;  /* notifications: the sender's state after this message */
    uint8_t blocked;
    /* NOTIFIED_* bits this message set (its notification was queued) or
     * cleared (an accepted message: a raised quota may be notified again);
     * the writer applies them to ratelimits.notified. Records of queue
     * files written before they existed read as 0: no change. */
    uint8_t notified_set, notified_clear;
    /* Webhook queue only: 0, a quota event (blocked says which), or
     * NOTIFY_EPISODE, a hijacked-account episode (watch.h), whose signals,
     * action and evidence travel in from_addr, client_name and to_addr. */
    uint8_t event;
    const char *sender, *msgid, *from_addr, *to_addr, *client_address, *client_name;
};

#define NOTIFY_EPISODE 1

enum wqueue_open_result { WQUEUE_CREATED, WQUEUE_RECOVERED, WQUEUE_FAILED };

/*
 * Map the queue file at path, creating it (capacity bytes of ring) if it
 * does not exist. An existing file is checked (magic, version, checksum,
 * positions, every record's size) and kept with its records; one that
 * fails a check is refused, never trusted: WQUEUE_FAILED with the reason
 * in err. Only one process may open it (the pidfile lock guarantees it).
 */
enum wqueue_open_result wqueue_open(struct wqueue *q, const char *path, uint64_t capacity,
                                    char *err, size_t errsize);

/* An empty queue whose epoch is not above `above` (the clock went back
 * since the last run) takes above + 1, so its records are never mistaken
 * for ones already written. */
void wqueue_raise_epoch(struct wqueue *q, uint64_t above);

/* Unmap; with remove_if_empty, delete the file when no record is left. */
void wqueue_close(struct wqueue *q, const char *path, bool remove_if_empty);

/* Append a record (assigning rec->epoch and rec->seq). False when the
 * ring has no room. */
bool wqueue_push(struct wqueue *q, struct msg_record *rec);

/*
 * The wake-up protocol, all of it here. The writer announces its sleep
 * before its last look at the queue; a worker pushes, then looks at the
 * announcement: one of them sees the other, so a record never waits for
 * the writer's timer.
 */
/* Wake the writer if it sleeps (after a push, outside any lock). */
void wqueue_wake(struct wqueue *q);

/* Wake the writer whether it sleeps or not, records or none: it has
 * something else to do (the master: a refresh asked for, a period
 * reset). */
void wqueue_wake_writer(struct wqueue *q);

/* The writer, before it sleeps on wake_fd: announce the sleep, then look.
 * False when records wait (do not sleep: the announcement is withdrawn). */
bool wqueue_writer_sleep(struct wqueue *q);

/* The writer, after its sleep (or a wait that did not announce one): no
 * longer asleep; with `poked`, the wake-up is consumed from wake_fd. */
void wqueue_writer_awake(struct wqueue *q, bool poked);

/*
 * Reading. A cursor walks records from the head without removing them;
 * wqueue_next copies the next one into buf (which then owns the strings,
 * *used bytes of it) and returns false at the end or when buf is too
 * small. wqueue_release drops everything before the cursor once committed.
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
/* When the oldest record still queued was made (unix microseconds), 0 when
 * the queue is empty. */
int64_t wqueue_oldest_us(struct wqueue *q);
uint64_t wqueue_bytes(struct wqueue *q);

/* A record's portable encoding (for the spool file): encode writes at most
 * WQUEUE_MAX_RECORD bytes and returns the size; decode parses one encoded
 * record from buf (strings point into buf), returning its size or 0 when
 * buf does not start with a valid record. */
size_t wqueue_encode(const struct msg_record *rec, char *buf);
size_t wqueue_decode(char *buf, size_t len, struct msg_record *rec);

/* Largest encoded record. */
#define WQUEUE_MAX_RECORD (70 * 1024)

#endif
