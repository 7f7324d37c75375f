/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * writebatch.h - a lane's batch: the records of one round for one lane
 * (copies of their headers; the strings stay in the round's arena), and
 * the senders they touch, found by a hash index (a batch can touch a
 * thousand senders). The bottom of the write path: it calls nothing of
 * the writer's, and the round (writeround.c) fills it while the lane
 * (writelane.c) writes it.
 */
#ifndef RG_WRITEBATCH_H
#define RG_WRITEBATCH_H

#include "cache.h"
#include "cachesync.h"
#include "wqueue.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BATCH_MAX 1000              /* records per transaction */
#define TOUCHED_SLOTS 4096          /* hash index over a batch's senders: a power of two > 2 * BATCH_MAX */

/* A record of the batch, as far as the cache is concerned. */
struct batch_rec {
    uint32_t sender;            /* index into touched */
    uint32_t next_of_sender;    /* index + 1 of the sender's next record, 0 ends */
    int64_t created_us;
    uint32_t msg_delta, rcpt_delta;
    uint64_t epoch, seq;
    unsigned lane;              /* writer_lane: whose progress row covers it */
    bool notified_change;       /* it sets or clears ratelimits.notified bits */
};

/* A sender touched by the batch, read back before COMMIT. */
struct touched {
    char key[CACHE_KEY_SIZE];
    uint64_t key_hash;
    char *sender;                   /* owned: freed by batch_reset */
    struct db_row row;
    bool found;
    uint32_t msg_counter, rcpt_counter, msg_total, rcpt_total;   /* bulk: deltas to add */
    bool has_new;                   /* bulk: at least one record not yet in the database */
    uint32_t notified;              /* bulk: ratelimits.notified after the batch's records */
    uint32_t first_rec, last_rec;   /* index + 1 of its records in recs[] (a chain) */
    uint64_t cached_id;             /* ratelimits.id as the cache knows it, 0 if not */
};

/* Indexes into pending, covered and recs are the same record. */
struct write_batch {
    struct msg_record *pending;     /* the records (strings borrowed from the round's arena) */
    bool *covered;                  /* ... already in the database (a replay) */
    struct batch_rec *recs;
    size_t n_recs;
    struct touched *touched;
    size_t n_touched;
    uint32_t index[TOUCHED_SLOTS];  /* open addressing by key hash: touched[i] as i + 1 */
};

/* Arrays for BATCH_MAX records; batch_free releases them. */
void batch_init(struct write_batch *b);
void batch_free(struct write_batch *b);

/* Empty the batch (the senders' copies freed). */
void batch_reset(struct write_batch *b);

static inline bool batch_full(const struct write_batch *b)
{
    return b->n_recs >= BATCH_MAX;
}

/* Add a record (copied; its strings borrowed until batch_reset) whose
 * sender has this cache key and fnv1a64 hash of it; lane is the lane whose
 * progress row covers it. Returns the sender's touched[] index, and sets
 * *new_sender when the record is its sender's first in the batch. The
 * caller checks batch_full first. */
uint32_t batch_add(struct write_batch *b, const struct msg_record *r, const char *key, uint64_t hash,
                   unsigned lane, bool covered, bool *new_sender);

/* The touched[] index of this sender (as the database spells it), -1 if
 * the batch does not touch it. */
int batch_find(const struct write_batch *b, const char *sender);

#endif
