/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * spool.h - the spool file (state_dir/rateguard-<instance>.spool): records
 * moved out of a queue more than half full while the database is away,
 * in the queue's portable encoding (wqueue_encode), appended and synced
 * before they leave the queue. This module is the only reader and writer
 * of the file: the writer spills into it and writes from it (a round reads
 * it before the queue), the master's crash recovery counts it.
 */
#ifndef RG_SPOOL_H
#define RG_SPOOL_H

#include "wqueue.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SPOOL_SLICE (4u << 20)      /* bytes a cursor reads at once: a round's worth */

struct spool {
    const char *path;           /* borrowed: must outlive the spool */
    int fd;                     /* -1: not open */
    off_t read;                 /* next byte not yet in the database (the writer's) */
    bool failing;               /* the last spill could not write (a full disk): said once, until one can */
};

/* Records from `read` on. The cursor owns its buffer (spool_cursor_end
 * frees it); a record returned by spool_next is copied into the caller's
 * buffer, so it outlives the cursor. A cursor of one slice may be copied
 * and restored to put back a record it returned. */
struct spool_cursor {
    off_t start;                /* file offset of buf[0] */
    char *buf;
    size_t len, pos;
    bool to_end;                /* read on past the first slice (recovery) */
    int error;                  /* errno of a failed read, 0 if none */
};

/* Nothing opened yet. */
void spool_init(struct spool *s, const char *path);

/* Open for reading and appending (the writer); `create` makes the file
 * if it does not exist. False when it does not exist (without create) or
 * cannot be opened (logged). */
bool spool_open(struct spool *s, bool create);

/* Open read-only (crash recovery); false, silently, when absent. */
bool spool_open_readonly(struct spool *s);

void spool_close(struct spool *s);

/* Bytes in the file (0 when not open), and whether some are not written. */
off_t spool_size(const struct spool *s);
static inline bool spool_pending(const struct spool *s)
{
    return spool_size(s) > s->read;
}

/* The database is away: when the queue is half full, move its oldest
 * records here (synced before they leave the queue) down to a quarter. */
void spool_spill(struct spool *s, struct wqueue *q);

/* A cursor at `read`: one slice (a round), or on to the end of the file
 * when to_end (recovery, which counts every record). */
void spool_cursor_start(struct spool *s, struct spool_cursor *c, bool to_end);

/* The next whole record, copied into buf (bufsize bytes; the strings then
 * point into buf, *used bytes of it). False at the end, at a record cut
 * short or damaged, or when buf is too small. */
bool spool_next(struct spool *s, struct spool_cursor *c, char *buf, size_t bufsize, struct msg_record *rec,
                size_t *used);

/* Bytes after the cursor's position (what spool_next could not take). */
off_t spool_cursor_left(const struct spool *s, const struct spool_cursor *c);

void spool_cursor_end(struct spool_cursor *c);

/* Everything before the cursor is in the database: advance `read`, and
 * start the file afresh once all of it is. */
void spool_consumed(struct spool *s, const struct spool_cursor *c);

/* A cursor that gave no record: false when the file could not be read
 * (err says why: an outage); true when the rest was cut short (dropped:
 * the queue still holds those records) or damaged (kept in a
 * .damaged-TIME link, logged), and the file started afresh. */
bool spool_damaged(struct spool *s, const struct spool_cursor *c, char *err, size_t errsize);

#endif
