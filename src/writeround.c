/*
 * writeround.c - one round of the writer: the oldest records (the spool
 * file first, then the queue) split between the lanes by sender, each
 * record marked covered when its lane's progress row says it is in the
 * database already (a replay after a crash or a partly failed round); the
 * lanes write; then, lane by lane as it committed, the cache takes the
 * rows and the records leave the queued counts, once. A round where a lane
 * failed is retried whole: the lanes that did commit find their records
 * covered. A record the database refuses for good is set aside.
 */
#include "writepath.h"
#include "config.h"
#include "log.h"
#include "rateguard.h"
#include "shm.h"
#include "util.h"

#include <errno.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The touched[] entry for this cache key (and its fnv1a64 hash), created
 * when `create`; -1 when absent. A hash index, because a batch can touch a
 * thousand senders. */
int writer_touched_lookup(struct lane *l, const char *key, uint64_t hash, const char *sender, bool create)
{
    for (uint32_t slot = (uint32_t)hash & (TOUCHED_SLOTS - 1);; slot = (slot + 1) & (TOUCHED_SLOTS - 1)) {
        uint32_t i = l->touched_index[slot];
        if (i == 0)
            break;
        if (l->touched[i - 1].key_hash == hash && strcmp(l->touched[i - 1].key, key) == 0)
            return (int)(i - 1);
    }
    if (!create)
        return -1;
    struct touched *t = &l->touched[l->n_touched];
    memset(t, 0, sizeof(*t));
    str_copy(t->key, key, sizeof(t->key));
    t->key_hash = hash;
    t->sender = xstrdup(sender);
    uint32_t slot = (uint32_t)hash & (TOUCHED_SLOTS - 1);
    while (l->touched_index[slot] != 0)
        slot = (slot + 1) & (TOUCHED_SLOTS - 1);
    l->touched_index[slot] = (uint32_t)++l->n_touched;
    return (int)(l->n_touched - 1);
}

static void read_id_locked(struct cache_entry *e, bool created, void *arg)
{
    (void)created;
    *(uint64_t *)arg = e->db_id;
}

static uint32_t touch(struct lane *l, const struct msg_record *r, const char *key, uint64_t hash)
{
    size_t before = l->n_touched;
    uint32_t t = (uint32_t)writer_touched_lookup(l, key, hash, r->sender, true);
    if (l->n_touched > before)      /* new in this batch: its id, if the cache has it */
        cache_apply(&l->w->ctx->shm->cache, key, false, read_id_locked, &l->touched[t].cached_id);
    return t;
}

void writer_batch_reset(struct lane *l)
{
    for (size_t i = 0; i < l->n_touched; i++)
        free(l->touched[i].sender);
    l->n_touched = 0;
    memset(l->touched_index, 0, sizeof(l->touched_index));
    l->n_recs = 0;
}

static void batch_add(struct lane *l, const struct msg_record *r, const char *key, uint64_t hash, unsigned lane)
{
    uint32_t i = (uint32_t)l->n_recs++;
    struct batch_rec *b = &l->recs[i];
    b->sender = touch(l, r, key, hash);
    b->next_of_sender = 0;
    struct touched *t = &l->touched[b->sender];
    if (t->last_rec)
        l->recs[t->last_rec - 1].next_of_sender = i + 1;
    else
        t->first_rec = i + 1;
    t->last_rec = i + 1;
    b->created_us = r->created_us;
    b->msg_delta = r->msg_delta;
    b->rcpt_delta = r->rcpt_delta;
    b->epoch = r->epoch;
    b->seq = r->seq;
    b->lane = lane;
    b->notified_change = (r->notified_set | r->notified_clear) != 0;
}

/* Under the sender's lock, after COMMIT: the batch's records of this
 * sender are no longer queued (those made before the entry's last reset
 * were already taken out of the queued counts by the reset); then the
 * cache takes the database's row plus what is still queued. */
struct committed_arg {
    struct lane *l;
    uint32_t sender;
};

static void apply_committed(struct cache_entry *e, bool created, void *arg)
{
    const struct committed_arg *a = arg;
    struct lane *l = a->l;
    struct touched *t = &l->touched[a->sender];
    (void)created;

    for (uint32_t i = t->first_rec; i != 0; i = l->recs[i - 1].next_of_sender) {
        const struct batch_rec *b = &l->recs[i - 1];
        if (b->created_us < e->reset_us || progress_covers(&l->w->applied[b->lane], b->epoch, b->seq))
            continue;
        e->unwritten_msg = e->unwritten_msg > b->msg_delta ? e->unwritten_msg - b->msg_delta : 0;
        e->unwritten_rcpt = e->unwritten_rcpt > b->rcpt_delta ? e->unwritten_rcpt - b->rcpt_delta : 0;
        if (b->notified_change && e->notify_unwritten > 0)
            e->notify_unwritten--;
    }
    if (t->found) {
        t->row.round = e->seen;
        cachesync_apply_row(e, false, &t->row);
    }
}

/* After a lane's COMMIT: the cache takes its rows, and its records leave
 * the queued counts, once (applied remembers them). */
static void apply_lane(struct writer *w, struct lane *l)
{
    for (size_t i = 0; i < l->n_touched; i++) {
        struct committed_arg a = {.l = l, .sender = (uint32_t)i};
        cache_apply(&w->ctx->shm->cache, l->touched[i].key, false, apply_committed, &a);
    }
    for (size_t i = 0; i < l->n_recs; i++) {
        const struct batch_rec *b = &l->recs[i];
        if (!progress_covers(&w->applied[b->lane], b->epoch, b->seq))
            w->applied[b->lane] = (struct progress){b->epoch, b->seq};
    }
}

/* A record the database refuses for good (the input checks in engine.c
 * make it unlikely, but it must never wedge the queue): kept in
 * state_dir/rejected.log with the reason, then skipped. */
static void set_aside(struct writer *w, const struct msg_record *r)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/rejected.log", w->ctx->cfg->state_dir);
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "epoch=%llu seq=%llu time_us=%lld sender=%s msgid=%s rcpt_count=%u msg_delta=%u "
                   "rcpt_delta=%u blocked=%u from=%s to=%s client_address=%s client_name=%s error=%s\n",
                (unsigned long long)r->epoch, (unsigned long long)r->seq, (long long)r->created_us,
                r->sender, r->msgid, r->rcpt_count, r->msg_delta, r->rcpt_delta, r->blocked, r->from_addr,
                r->to_addr, r->client_address, r->client_name, w->poison_error);
        fclose(f);
    }
    log_error("writer: record %llu for %s refused by the database (%s); kept in %s and skipped",
              (unsigned long long)r->seq, r->sender, w->poison_error, f ? path : "(unwritable: log only)");
}

/* One round over the oldest records, in a transaction per lane (while the
 * workers answer: one for all, on lane 0). Returns records taken, or
 * WRITE_FAILED / WRITE_AGAIN. Normally each lane's share
 * goes in a few bulk statements; after a refused bulk write the next round
 * goes record by record on lane 0, to find the refused record and set it
 * aside; after the lanes deadlocked (two spellings of one sender that the
 * database folds together, in different lanes) lane 0 takes a round alone. */
long writer_round(struct writer *w, char *err, size_t errsize)
{
    struct shm *shm = w->ctx->shm;
    struct source src = {.spool = spool_size(w) > w->spool_read};
    struct msg_record rec;
    size_t used = 0, len;
    long n = 0;
    struct lane *first = &w->lanes[0];
    /* While the workers answer, the lanes would take turns anyway: the
     * round goes in one transaction on lane 0, carrying both progress rows,
     * with half the statements and COMMITs. After a failed round they stay
     * apart for a minute, so that a row someone else holds locked holds up
     * its lane only (the round that met it waited one lock wait timeout). */
    uint64_t answered = STAT_GET(shm, requests);
    bool answering = answered != w->answered && !src.spool && time(NULL) >= w->lanes_apart_until;
    bool careful = w->careful, one_lane = careful || w->one_lane || answering;

    for (unsigned k = 0; k < WRITER_LANES; k++) {
        writer_batch_reset(&w->lanes[k]);
        memset(w->lanes[k].saves, 0, sizeof(w->lanes[k].saves));
        w->round_last[k] = w->committed[k];
    }
    if (src.spool) {
        /* Read a slice of the spool; a record cut at its end waits. */
        src.spool_buf = xmalloc(ARENA_SIZE);
        ssize_t got = pread(w->spool_fd, src.spool_buf, ARENA_SIZE, w->spool_read);
        src.spool_len = got > 0 ? (size_t)got : 0;
    } else
        wqueue_cursor_start(&shm->queue, &src.cur);

    for (;;) {
        struct source before = src;
        if (n >= WRITER_LANES * BATCH_MAX || ARENA_SIZE - used < WQUEUE_MAX_RECORD ||
            !spool_source_next(w, &src, w->arena + used, ARENA_SIZE - used, &rec, &len))
            break;
        char key[CACHE_KEY_SIZE];
        cache_make_key(rec.sender, key);
        uint64_t hash = fnv1a64(key, strlen(key));     /* once: for the lane and the batch's index */
        unsigned lane = writer_lane_of_hash(hash);
        struct lane *l = one_lane ? first : &w->lanes[lane];
        bool suspect = rec.epoch == w->poison_epoch && rec.seq == w->poison_seq;
        if ((suspect && n > 0) || l->n_recs >= BATCH_MAX) {
            src = before;       /* the suspect goes alone next round; a full lane ends this one */
            break;
        }
        bool covered = progress_covers(&w->committed[lane], rec.epoch, rec.seq);
        if (!covered && careful && !writer_write_record(w, &rec, err, errsize)) {
            MYSQL_STMT *failed = mysql_stmt_errno(w->upsert) ? w->upsert : w->insert_message;
            if (writer_refused_error(mysql_stmt_errno(failed)) && suspect) {
                /* Refused twice, the second time alone: set it aside (the
                 * round is this record only). */
                mysql_rollback(first->db);
                set_aside(w, &rec);
                w->poison_seq = w->poison_epoch = 0;
                covered = true;
            } else if (writer_refused_error(mysql_stmt_errno(failed))) {
                w->poison_epoch = rec.epoch;
                w->poison_seq = rec.seq;
                snprintf(w->poison_error, sizeof(w->poison_error), "%.500s", err);
                mysql_rollback(first->db);
                free(src.spool_buf);
                return WRITE_AGAIN;
            } else {
                mysql_rollback(first->db);
                free(src.spool_buf);
                return WRITE_FAILED;
            }
        }
        /* Written now (careful), to be written (bulk), written before (a
         * replay) or set aside: in every case it leaves the queued counts. */
        l->pending[l->n_recs] = rec;
        l->covered[l->n_recs] = covered;
        batch_add(l, &rec, key, hash, lane);
        /* A retried round may take fewer records than the one before: a
         * lane's progress row never moves back. */
        if (!progress_covers(&w->round_last[lane], rec.epoch, rec.seq)) {
            w->round_last[lane] = (struct progress){rec.epoch, rec.seq};
            l->saves[lane] = true;
        }
        used += (len + 7) & ~(size_t)7;
        n++;
        if (suspect)
            break;
    }
    if (n == 0 && src.spool) {
        free(src.spool_buf);
        return spool_damaged(w, &src, err, errsize);
    }
    if (n == 0) {
        free(src.spool_buf);
        return 0;
    }

    /* Side by side only while the workers are not answering (catching up
     * after a burst or an outage): a database on the same cores as the
     * workers would otherwise take both cores from them under load. */
    unsigned busy = 0;
    for (unsigned k = 0; k < WRITER_LANES; k++)
        busy += w->lanes[k].n_recs > 0;
    bool parallel = busy > 1 && answered == w->answered;
    w->answered = answered;
    if (parallel && !writer_create_rows(w, err, errsize)) {
        free(src.spool_buf);
        if (writer_refused_error(first->bulk_errno)) {
            w->careful = true;
            return WRITE_AGAIN;
        }
        if (writer_conflict_error(first->bulk_errno)) {
            writer_conflict_pause(w, err);
            return WRITE_AGAIN;
        }
        return WRITE_FAILED;
    }
    writer_run_lanes(w, careful, parallel);
    const struct lane *failed = NULL;
    bool deadlock = false, refused = false;
    /* The cache first, then the queue: dying in between leaves records
     * that the progress rows mark as written, and subtracting them again
     * later can only undercount until the queue is empty, never overcount.
     * A lane that committed is applied even when another failed: nothing
     * leaves the queue then, and the retry finds its records covered. */
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        struct lane *l = &w->lanes[k];
        if (l->n_recs == 0)
            continue;
        if (!l->ok) {
            failed = l;
            deadlock |= writer_conflict_error(l->bulk_errno);
            refused |= writer_refused_error(l->bulk_errno);
            continue;
        }
        for (unsigned j = 0; j < WRITER_LANES; j++)
            if (l->saves[j])
                w->committed[j] = w->round_last[j];
        apply_lane(w, l);
    }
    if (failed) {
        w->lanes_apart_until = time(NULL) + 60;
        free(src.spool_buf);
        snprintf(err, errsize, "%s", failed->err);
        if (deadlock) {
            w->one_lane = true;     /* two lanes may deadlock each other: one next */
            writer_conflict_pause(w, err);
            return WRITE_AGAIN;
        }
        if (refused) {
            w->careful = true;      /* find the refused record one by one */
            return WRITE_AGAIN;
        }
        return WRITE_FAILED;
    }
    w->careful = w->one_lane = false;
    if (src.spool) {
        w->spool_read += (off_t)src.spool_pos;
        if (w->spool_read >= spool_size(w)) {       /* all of it is in: start the file afresh */
            if (ftruncate(w->spool_fd, 0) == 0)
                w->spool_read = 0;
        }
    } else
        wqueue_release(&shm->queue, &src.cur);
    free(src.spool_buf);
    STAT_ADD(shm, db_written, (uint64_t)n);
    return n;
}
