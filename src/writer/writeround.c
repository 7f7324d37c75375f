/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * writeround.c - one round of the writer: the oldest records (the spool
 * file first, then the queue) split between the lanes by sender, each
 * record marked covered when its lane's progress row says it is in the
 * database already (a replay after a crash or a partly failed round); the
 * lanes write; then, lane by lane as it committed, the cache takes the
 * rows and the records leave the queued counts, once. A round where a lane
 * failed is retried whole: the lanes that did commit find their records
 * covered. A record the database refuses for good is set aside.
 *
 * It owns struct round (writeround.h): the progress rows as committed,
 * what has left the queued counts, the next round's mode, the arena. It
 * calls down only (the lanes, the batches, the spool, the queue, the
 * cache) and returns what happened: the writer's loop decides the pause.
 */
#include "writeround.h"
#include "config.h"
#include "log.h"
#include "rateguard.h"
#include "shm.h"
#include "util.h"
#include "writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void round_init(struct round *r, const struct writer_ctx *ctx)
{
    memset(r, 0, sizeof(*r));
    r->ctx = ctx;
    r->arena = xmalloc(ARENA_SIZE);
}

void round_free(struct round *r)
{
    free(r->arena);
    r->arena = NULL;
}

bool round_connect(struct round *r, struct lanes *ls, char *err, size_t errsize)
{
    if (!lanes_connect(ls, err, errsize))
        return false;
    if (!cachesync_read_progress(lanes_db(ls), r->ctx->name, r->committed, err, errsize)) {
        lanes_disconnect(ls);
        return false;
    }
    /* End the read's transaction: an idle writer must hold no table's
     * metadata lock (an operator's ALTER or LOCK TABLES would wait on it). */
    mysql_commit(lanes_db(ls));
    return true;
}

bool round_prepare(struct round *r, struct lanes *ls, char *err, size_t errsize)
{
    return lanes_prepare(ls, r->committed, err, errsize);
}

/* How a round writes, chosen once, before its first record. */
enum round_mode {
    MODE_CAREFUL,       /* after a refused bulk write: record by record on lane 0, to find it and set it aside */
    MODE_ONE_LANE,      /* lane 0 alone, one transaction carrying every progress row */
    MODE_IN_TURN,       /* each lane its share, one lane after the other */
    MODE_SIDE_BY_SIDE,  /* each lane its share, side by side (threads) */
};

/* While the workers answer, the lanes would take turns anyway: the round
 * goes in one transaction on lane 0, carrying both progress rows, with
 * half the statements and COMMITs. After a failed round they stay apart
 * for a minute, so that a row someone else holds locked holds up its lane
 * only (the round that met it waited one lock wait timeout). After the
 * lanes deadlocked (two spellings of one sender that the database folds
 * together, in different lanes) lane 0 takes a round alone. Side by side
 * only while the workers are not answering (catching up after a burst or
 * an outage): a database on the same cores as the workers would otherwise
 * take both cores from them under load. */
static enum round_mode choose_mode(const struct round *r, bool spool, uint64_t answered)
{
    bool answering = answered != r->answered && !spool && time(NULL) >= r->lanes_apart_until;
    if (r->careful)
        return MODE_CAREFUL;
    if (r->one_lane || answering)
        return MODE_ONE_LANE;
    return answered == r->answered ? MODE_SIDE_BY_SIDE : MODE_IN_TURN;
}

/* A source of records in age order: the spool file, then the queue. */
struct source {
    bool spool;
    struct spool *sp;
    struct spool_cursor sc;
    struct wqueue *q;
    struct wqueue_cursor cur;
};

static void source_start(struct source *src, struct spool *sp, struct wqueue *q)
{
    memset(src, 0, sizeof(*src));
    src->spool = spool_pending(sp);
    src->sp = sp;
    src->q = q;
    if (src->spool)
        spool_cursor_start(sp, &src->sc, false);    /* one slice: a record cut at its end waits */
    else
        wqueue_cursor_start(q, &src->cur);
}

static bool source_next(struct source *src, char *buf, size_t bufsize, struct msg_record *rec, size_t *used)
{
    if (src->spool)
        return spool_next(src->sp, &src->sc, buf, bufsize, rec, used);
    return wqueue_next(src->q, &src->cur, buf, bufsize, rec, used);
}

/* Everything the source gave is in the database: it leaves the file. */
static void source_release(struct source *src)
{
    if (src->spool)
        spool_consumed(src->sp, &src->sc);
    else
        wqueue_release(src->q, &src->cur);
}

static void source_end(struct source *src)
{
    if (src->spool)
        spool_cursor_end(&src->sc);
}

static void read_id_locked(struct cache_entry *e, bool created, void *arg)
{
    (void)created;
    *(uint64_t *)arg = e->db_id;
}

/* Under the sender's lock, after COMMIT: the batch's records of this
 * sender are no longer queued (those made before the entry's last reset
 * were already taken out of the queued counts by the reset); then the
 * cache takes the database's row plus what is still queued. */
struct committed_arg {
    struct write_batch *b;
    const struct progress *applied;     /* the round's, by lane */
    uint32_t sender;
};

static void apply_committed(struct cache_entry *e, bool created, void *arg)
{
    const struct committed_arg *a = arg;
    struct write_batch *wb = a->b;
    struct touched *t = &wb->touched[a->sender];
    (void)created;

    for (uint32_t i = t->first_rec; i != 0; i = wb->recs[i - 1].next_of_sender) {
        const struct batch_rec *b = &wb->recs[i - 1];
        if (b->created_us < e->reset_us || progress_covers(&a->applied[b->lane], b->epoch, b->seq))
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
static void apply_lane(struct round *r, struct write_batch *wb)
{
    for (size_t i = 0; i < wb->n_touched; i++) {
        struct committed_arg a = {.b = wb, .applied = r->applied, .sender = (uint32_t)i};
        cache_apply(&r->ctx->shm->cache, wb->touched[i].key, false, apply_committed, &a);
    }
    for (size_t i = 0; i < wb->n_recs; i++) {
        const struct batch_rec *b = &wb->recs[i];
        if (!progress_covers(&r->applied[b->lane], b->epoch, b->seq))
            r->applied[b->lane] = (struct progress){b->epoch, b->seq};
    }
}

/* A record the database refuses for good (the input checks in engine.c
 * make it unlikely, but it must never wedge the queue): kept in
 * state_dir/rejected.log with the reason, then skipped. */
static void set_aside(const struct round *rd, const struct msg_record *r)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/rejected.log", rd->ctx->cfg->state_dir);
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "epoch=%llu seq=%llu time_us=%lld sender=%s msgid=%s rcpt_count=%u msg_delta=%u "
                   "rcpt_delta=%u blocked=%u from=%s to=%s client_address=%s client_name=%s error=%s\n",
                (unsigned long long)r->epoch, (unsigned long long)r->seq, (long long)r->created_us,
                r->sender, r->msgid, r->rcpt_count, r->msg_delta, r->rcpt_delta, r->blocked, r->from_addr,
                r->to_addr, r->client_address, r->client_name, rd->poison_error);
        fclose(f);
    }
    log_error("writer: record %llu for %s refused by the database (%s); kept in %s and skipped",
              (unsigned long long)r->seq, r->sender, rd->poison_error, f ? path : "(unwritable: log only)");
}

/* Careful mode: the record written alone on lane 0. Refused once, it is
 * the suspect and the round is retried with it alone (ROUND_AGAIN);
 * refused twice, alone, it is set aside (*covered: the round is this
 * record only). */
static enum round_result write_carefully(struct round *r, struct lanes *ls, const struct msg_record *rec,
                                         bool suspect, bool *covered, char *err, size_t errsize)
{
    unsigned int code = 0;
    if (lanes_write_record(ls, rec, &code, err, errsize))
        return ROUND_WRITTEN;
    lanes_rollback(ls);
    if (!lanes_refused_error(code))
        return ROUND_FAILED;
    if (suspect) {
        set_aside(r, rec);
        r->poison_seq = r->poison_epoch = 0;
        *covered = true;
        return ROUND_WRITTEN;
    }
    r->poison_epoch = rec->epoch;
    r->poison_seq = rec->seq;
    snprintf(r->poison_error, sizeof(r->poison_error), "%.500s", err);
    return ROUND_AGAIN;
}

/* A record into its lane's batch. Written now (careful), to be written
 * (bulk), written before (a replay) or set aside: in every case it leaves
 * the queued counts. */
static void add_record(struct round *r, struct lane *l, const struct msg_record *rec, const char *key,
                       uint64_t hash, unsigned lane, bool covered)
{
    bool new_sender;
    uint32_t t = batch_add(&l->batch, rec, key, hash, lane, covered, &new_sender);
    if (new_sender)     /* new in this batch: its id, if the cache has it */
        cache_apply(&r->ctx->shm->cache, key, false, read_id_locked, &l->batch.touched[t].cached_id);
    /* A retried round may take fewer records than the one before: a
     * lane's progress row never moves back. */
    if (!progress_covers(&r->round_last[lane], rec->epoch, rec->seq)) {
        r->round_last[lane] = (struct progress){rec->epoch, rec->seq};
        l->saves[lane] = true;
    }
}

/* The oldest records into the lanes' batches (*n of them), until the
 * source, the arena or a lane is full. A suspect (a record refused before)
 * goes in a round of its own. */
static enum round_result take_records(struct round *r, struct lanes *ls, struct source *src,
                                      enum round_mode mode, long *n, char *err, size_t errsize)
{
    size_t used = 0, len;
    struct msg_record rec;

    while (*n < WRITER_LANES * BATCH_MAX && ARENA_SIZE - used >= WQUEUE_MAX_RECORD) {
        struct source before = *src;
        if (!source_next(src, r->arena + used, ARENA_SIZE - used, &rec, &len))
            break;
        char key[CACHE_KEY_SIZE];
        cache_make_key(rec.sender, key);
        uint64_t hash = fnv1a64(key, strlen(key));     /* once: for the lane and the batch's index */
        unsigned lane = writer_lane_of_hash(hash);
        struct lane *l = mode == MODE_CAREFUL || mode == MODE_ONE_LANE ? &ls->lane[0] : &ls->lane[lane];
        bool suspect = rec.epoch == r->poison_epoch && rec.seq == r->poison_seq;
        if ((suspect && *n > 0) || batch_full(&l->batch)) {
            *src = before;      /* the suspect goes alone next round; a full lane ends this one */
            break;
        }
        bool covered = progress_covers(&r->committed[lane], rec.epoch, rec.seq);
        if (!covered && mode == MODE_CAREFUL) {
            enum round_result res = write_carefully(r, ls, &rec, suspect, &covered, err, errsize);
            if (res != ROUND_WRITTEN)
                return res;
        }
        add_record(r, l, &rec, key, hash, lane, covered);
        used += (len + 7) & ~(size_t)7;
        (*n)++;
        if (suspect)
            break;
    }
    return ROUND_WRITTEN;
}

/* After the lanes ran: each lane that committed moves its progress and is
 * applied to the cache; a failure decides the next round's mode. The
 * cache first, then the queue (round_run): dying in between leaves
 * records that the progress rows mark as written, and subtracting them
 * again later can only undercount until the queue is empty, never
 * overcount. A lane that committed is applied even when another failed:
 * nothing leaves the queue then, and the retry finds its records covered. */
static enum round_result collect_lanes(struct round *r, struct lanes *ls, char *err, size_t errsize)
{
    const struct lane *failed = NULL;
    bool deadlock = false, refused = false;

    for (unsigned k = 0; k < WRITER_LANES; k++) {
        struct lane *l = &ls->lane[k];
        if (l->batch.n_recs == 0)
            continue;
        if (!l->ok) {
            failed = l;
            deadlock |= lanes_conflict_error(l->bulk_errno);
            refused |= lanes_refused_error(l->bulk_errno);
            continue;
        }
        for (unsigned j = 0; j < WRITER_LANES; j++)
            if (l->saves[j])
                r->committed[j] = r->round_last[j];
        apply_lane(r, &l->batch);
    }
    if (failed == NULL) {
        r->careful = r->one_lane = false;
        return ROUND_WRITTEN;
    }
    r->lanes_apart_until = time(NULL) + 60;
    snprintf(err, errsize, "%s", failed->err);
    if (deadlock) {
        r->one_lane = true;     /* two lanes may deadlock each other: one next */
        return ROUND_CONFLICT;
    }
    if (refused) {
        r->careful = true;      /* find the refused record one by one */
        return ROUND_AGAIN;
    }
    return ROUND_FAILED;
}

/* The batches written: side by side (new senders' rows made first, in a
 * transaction of their own) or one lane after the other. */
static enum round_result write_lanes(struct round *r, struct lanes *ls, enum round_mode mode, char *err,
                                     size_t errsize)
{
    unsigned busy = 0;
    for (unsigned k = 0; k < WRITER_LANES; k++)
        busy += ls->lane[k].batch.n_recs > 0;
    bool parallel = mode == MODE_SIDE_BY_SIDE && busy > 1;
    if (parallel && !lanes_create_rows(ls, err, errsize)) {
        unsigned int code = ls->lane[0].bulk_errno;
        if (lanes_refused_error(code)) {
            r->careful = true;
            return ROUND_AGAIN;
        }
        return lanes_conflict_error(code) ? ROUND_CONFLICT : ROUND_FAILED;
    }
    lanes_run(ls, r->round_last, mode == MODE_CAREFUL, parallel);
    return collect_lanes(r, ls, err, errsize);
}

/* One round over the oldest records, in a transaction per lane (or one
 * for all, on lane 0), in the mode choose_mode picks. A spool that gives
 * no record is damaged or unreadable (spool_damaged). */
enum round_result round_run(struct round *r, struct lanes *ls, struct spool *sp, long *taken, char *err,
                            size_t errsize)
{
    struct shm *shm = r->ctx->shm;
    uint64_t answered = STAT_GET(shm, requests);
    struct source src;
    long n = 0;

    source_start(&src, sp, &shm->queue);
    enum round_mode mode = choose_mode(r, src.spool, answered);
    for (unsigned k = 0; k < WRITER_LANES; k++) {
        batch_reset(&ls->lane[k].batch);
        memset(ls->lane[k].saves, 0, sizeof(ls->lane[k].saves));
        r->round_last[k] = r->committed[k];
    }
    enum round_result res = take_records(r, ls, &src, mode, &n, err, errsize);
    if (res == ROUND_WRITTEN && n == 0 && src.spool) {
        res = spool_damaged(sp, &src.sc, err, errsize) ? ROUND_AGAIN : ROUND_FAILED;
    } else if (res == ROUND_WRITTEN && n > 0) {
        r->answered = answered;
        res = write_lanes(r, ls, mode, err, errsize);
        if (res == ROUND_WRITTEN) {
            source_release(&src);
            STAT_ADD(shm, db_written, (uint64_t)n);
        }
    }
    source_end(&src);
    *taken = res == ROUND_WRITTEN ? n : 0;
    return res;
}
