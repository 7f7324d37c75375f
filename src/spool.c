/*
 * spool.c - the writer's spool file: while the database is away and the
 * queue is half full, the oldest records move there (synced before they
 * leave the queue), so that workers always find room; a round reads the
 * spool before the queue. A damaged or cut spool is set aside, logged.
 */
#include "writepath.h"
#include "log.h"
#include "shm.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

bool spool_source_next(struct writer *w, struct source *s, char *buf, size_t bufsize,
                        struct msg_record *rec, size_t *used)
{
    if (!s->spool)
        return wqueue_next(&w->ctx->shm->queue, &s->cur, buf, bufsize, rec, used);
    if (s->spool_pos >= s->spool_len)
        return false;
    size_t n = wqueue_decode(s->spool_buf + s->spool_pos, s->spool_len - s->spool_pos, rec);
    if (n == 0 || n > bufsize)
        return false;
    /* Strings must outlive the spool buffer's next refill: copy. */
    memcpy(buf, s->spool_buf + s->spool_pos, n);
    wqueue_decode(buf, n, rec);
    s->spool_pos += n;
    *used = n;
    return true;
}

off_t spool_size(struct writer *w)
{
    struct stat st;
    return w->spool_fd >= 0 && fstat(w->spool_fd, &st) == 0 ? st.st_size : 0;
}

bool spool_open(struct writer *w)
{
    if (w->spool_fd >= 0)
        return true;
    w->spool_fd = open(w->ctx->spool_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (w->spool_fd < 0) {
        log_error("writer: open(%s): %s", w->ctx->spool_path, strerror(errno));
        return false;
    }
    return true;
}

/* The database is away and the queue is half full: move the oldest
 * records to the spool file (synced before they leave the queue). */
void spool_spill(struct writer *w)
{
    struct shm *shm = w->ctx->shm;
    uint64_t cap = shm->queue.sh->capacity;

    if (wqueue_bytes(&shm->queue) < cap / 2 || !spool_open(w))
        return;
    struct wqueue_cursor cur;
    struct msg_record rec;
    size_t len;
    uint64_t moved = 0;
    off_t before = spool_size(w);
    wqueue_cursor_start(&shm->queue, &cur);
    while (wqueue_bytes(&shm->queue) - (cur.pos - shm->queue.sh->head) > cap / 4 &&
           wqueue_next(&shm->queue, &cur, w->arena, ARENA_SIZE, &rec, &len)) {
        if (write(w->spool_fd, w->arena, len) != (ssize_t)len) {
            log_error("writer: cannot write spool %s: %s; records stay in the queue",
                      w->ctx->spool_path, strerror(errno));
            moved = 0;
            break;
        }
        moved++;
    }
    if (moved == 0 || fdatasync(w->spool_fd) != 0) {
        if (moved)
            log_error("writer: fdatasync(%s): %s; records stay in the queue", w->ctx->spool_path,
                      strerror(errno));
        /* Nothing released: take back what was appended, or it would be
         * written twice (the queue still holds every record). */
        if (ftruncate(w->spool_fd, before) != 0)
            log_error("writer: ftruncate(%s): %s", w->ctx->spool_path, strerror(errno));
        return;
    }
    wqueue_release(&shm->queue, &cur);
    log_warning("writer: database still unavailable; %llu record(s) moved to %s",
                (unsigned long long)moved, w->ctx->spool_path);
}

/* A round that could take no record from the spool: unreadable (an
 * outage: WRITE_FAILED), cut short at its end or damaged (set aside,
 * logged, the spool started anew: WRITE_AGAIN). */
long spool_damaged(struct writer *w, struct source *src, char *err, size_t errsize)
{
    off_t left = spool_size(w) - w->spool_read;
    if (src->spool_len == 0) {
        snprintf(err, errsize, "cannot read %s: %s", w->ctx->spool_path, strerror(errno));
        return WRITE_FAILED;
    }
    if (left < (off_t)WQUEUE_MAX_RECORD) {
        /* A spill cut short by a crash: records leave the queue only
         * after a whole spill is synced, so the queue still has these,
         * and everything before them is written. Start the spool anew. */
        log_warning("writer: %lld byte(s) at the end of %s are not a whole record (a spill cut short); "
                    "dropped, the queue still holds those records", (long long)left, w->ctx->spool_path);
    } else {
        char aside[4300];
        snprintf(aside, sizeof(aside), "%s.damaged-%ld", w->ctx->spool_path, (long)time(NULL));
        if (link(w->ctx->spool_path, aside) != 0)
            aside[0] = '\0';
        log_error("writer: %s is damaged at byte %lld; %lld byte(s) not written, kept in %s",
                  w->ctx->spool_path, (long long)w->spool_read, (long long)left, aside[0] ? aside : "(nowhere)");
    }
    if (ftruncate(w->spool_fd, 0) == 0)
        w->spool_read = 0;
    return WRITE_AGAIN;
}
