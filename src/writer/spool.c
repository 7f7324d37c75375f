/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * spool.c - the spool file, behind struct spool: while the database is
 * away and the queue is half full, the oldest records move there (synced
 * before they leave the queue), so that workers always find room; the
 * writer's round reads it before the queue, and the master's recovery
 * counts it. Nothing else opens, reads or truncates the file. A damaged
 * or cut spool is set aside, logged.
 */
#include "spool.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void spool_init(struct spool *s, const char *path)
{
    s->path = path;
    s->fd = -1;
    s->read = 0;
    s->failing = false;
}

bool spool_open(struct spool *s, bool create)
{
    if (s->fd >= 0)
        return true;
    s->fd = open(s->path, O_RDWR | O_APPEND | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
    if (s->fd < 0 && (create || errno != ENOENT))
        log_error("writer: open(%s): %s", s->path, strerror(errno));
    return s->fd >= 0;
}

bool spool_open_readonly(struct spool *s)
{
    if (s->fd < 0)
        s->fd = open(s->path, O_RDONLY | O_CLOEXEC);
    return s->fd >= 0;
}

void spool_close(struct spool *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

off_t spool_size(const struct spool *s)
{
    struct stat st;
    return s->fd >= 0 && fstat(s->fd, &st) == 0 ? st.st_size : 0;
}

void spool_spill(struct spool *s, struct wqueue *q)
{
    uint64_t cap = q->sh->capacity;

    if (wqueue_bytes(q) < cap / 2 || !spool_open(s, true))
        return;
    char *buf = xmalloc(WQUEUE_MAX_RECORD);
    struct wqueue_cursor cur;
    struct msg_record rec;
    size_t len;
    uint64_t moved = 0;
    off_t before = spool_size(s);
    wqueue_cursor_start(q, &cur);
    while (wqueue_bytes(q) - (cur.pos - q->sh->head) > cap / 4 &&
           wqueue_next(q, &cur, buf, WQUEUE_MAX_RECORD, &rec, &len)) {
        ssize_t put = write(s->fd, buf, len);
        if (put != (ssize_t)len) {
            /* A short write sets no errno: a full disk (the rest would fail
             * with ENOSPC). Said once: the writer tries again ten times a
             * second while the database is away. */
            if (!s->failing)
                log_error("writer: cannot write spool %s: %s; records stay in the queue (said once until a "
                          "spill succeeds)", s->path, strerror(put < 0 ? errno : ENOSPC));
            s->failing = true;
            moved = 0;
            break;
        }
        moved++;
    }
    free(buf);
    if (moved == 0 || fdatasync(s->fd) != 0) {
        if (moved)
            log_error("writer: fdatasync(%s): %s; records stay in the queue", s->path, strerror(errno));
        /* Nothing released: take back what was appended, or it would be
         * written twice (the queue still holds every record). */
        if (ftruncate(s->fd, before) != 0)
            log_error("writer: ftruncate(%s): %s", s->path, strerror(errno));
        return;
    }
    wqueue_release(q, &cur);
    if (s->failing)
        log_notice("writer: spool %s written again", s->path);
    s->failing = false;
    log_warning("writer: database still unavailable; %llu record(s) moved to %s", (unsigned long long)moved,
                s->path);
}

/* The slice at `from` into the cursor's buffer. */
static void read_slice(struct spool *s, struct spool_cursor *c, off_t from)
{
    ssize_t got = pread(s->fd, c->buf, SPOOL_SLICE, from);
    c->start = from;
    c->pos = 0;
    c->len = got > 0 ? (size_t)got : 0;
    c->error = got < 0 ? errno : 0;
}

void spool_cursor_start(struct spool *s, struct spool_cursor *c, bool to_end)
{
    c->buf = xmalloc(SPOOL_SLICE);
    c->to_end = to_end;
    read_slice(s, c, s->read);
}

bool spool_next(struct spool *s, struct spool_cursor *c, char *buf, size_t bufsize, struct msg_record *rec,
                size_t *used)
{
    size_t n = wqueue_decode(c->buf + c->pos, c->len - c->pos, rec);
    if (n == 0 && c->to_end && c->len == SPOOL_SLICE && c->pos > 0) {
        read_slice(s, c, c->start + (off_t)c->pos);     /* a record cut at the slice's end: read on */
        n = wqueue_decode(c->buf, c->len, rec);
    }
    if (n == 0 || n > bufsize)
        return false;
    /* Strings must outlive the cursor's buffer: copy. */
    memcpy(buf, c->buf + c->pos, n);
    wqueue_decode(buf, n, rec);
    c->pos += n;
    *used = n;
    return true;
}

off_t spool_cursor_left(const struct spool *s, const struct spool_cursor *c)
{
    return spool_size(s) - (c->start + (off_t)c->pos);
}

void spool_cursor_end(struct spool_cursor *c)
{
    free(c->buf);
    c->buf = NULL;
}

void spool_consumed(struct spool *s, const struct spool_cursor *c)
{
    s->read = c->start + (off_t)c->pos;
    if (s->read >= spool_size(s)) {       /* all of it is in: start the file afresh */
        if (ftruncate(s->fd, 0) == 0)
            s->read = 0;
    }
}

bool spool_damaged(struct spool *s, const struct spool_cursor *c, char *err, size_t errsize)
{
    off_t left = spool_size(s) - s->read;
    if (c->len == 0) {
        snprintf(err, errsize, "cannot read %s: %s", s->path, strerror(c->error ? c->error : EIO));
        return false;
    }
    if (left < (off_t)WQUEUE_MAX_RECORD) {
        /* A spill cut short by a crash: records leave the queue only
         * after a whole spill is synced, so the queue still has these,
         * and everything before them is written. Start the spool anew. */
        log_warning("writer: %lld byte(s) at the end of %s are not a whole record (a spill cut short); "
                    "dropped, the queue still holds those records", (long long)left, s->path);
    } else {
        char aside[4300];
        snprintf(aside, sizeof(aside), "%s.damaged-%ld", s->path, (long)time(NULL));
        if (link(s->path, aside) != 0)
            aside[0] = '\0';
        log_error("writer: %s is damaged at byte %lld; %lld byte(s) not written, kept in %s", s->path,
                  (long long)s->read, (long long)left, aside[0] ? aside : "(nowhere)");
    }
    if (ftruncate(s->fd, 0) == 0)
        s->read = 0;
    return true;
}
