/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * writebatch.c - a lane's batch: the round's records of one lane and the
 * senders they touch, with the hash index that finds a sender by its
 * cache key. It owns the batch's arrays and the copies of the senders'
 * names; the records' strings are the round's. It calls nothing of the
 * writer's: the round fills a batch, the lane reads it.
 */
#include "writebatch.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

void batch_init(struct write_batch *b)
{
    memset(b, 0, sizeof(*b));
    b->touched = xcalloc(BATCH_MAX, sizeof(struct touched));
    b->recs = xcalloc(BATCH_MAX, sizeof(struct batch_rec));
    b->pending = xcalloc(BATCH_MAX, sizeof(struct msg_record));
    b->covered = xcalloc(BATCH_MAX, sizeof(bool));
}

void batch_free(struct write_batch *b)
{
    batch_reset(b);
    free(b->touched);
    free(b->recs);
    free(b->pending);
    free(b->covered);
    b->touched = NULL;
    b->recs = NULL;
    b->pending = NULL;
    b->covered = NULL;
}

void batch_reset(struct write_batch *b)
{
    for (size_t i = 0; i < b->n_touched; i++)
        free(b->touched[i].sender);
    b->n_touched = 0;
    memset(b->index, 0, sizeof(b->index));
    b->n_recs = 0;
}

/* The touched[] entry for this cache key (and its hash), -1 if absent. */
static int lookup(const struct write_batch *b, const char *key, uint64_t hash)
{
    for (uint32_t slot = (uint32_t)hash & (TOUCHED_SLOTS - 1);; slot = (slot + 1) & (TOUCHED_SLOTS - 1)) {
        uint32_t i = b->index[slot];
        if (i == 0)
            return -1;
        if (b->touched[i - 1].key_hash == hash && strcmp(b->touched[i - 1].key, key) == 0)
            return (int)(i - 1);
    }
}

/* A new touched[] entry for this sender, in the index. */
static uint32_t create(struct write_batch *b, const char *key, uint64_t hash, const char *sender)
{
    struct touched *t = &b->touched[b->n_touched];
    memset(t, 0, sizeof(*t));
    str_copy(t->key, key, sizeof(t->key));
    t->key_hash = hash;
    t->sender = xstrdup(sender);
    uint32_t slot = (uint32_t)hash & (TOUCHED_SLOTS - 1);
    while (b->index[slot] != 0)
        slot = (slot + 1) & (TOUCHED_SLOTS - 1);
    b->index[slot] = (uint32_t)++b->n_touched;
    return (uint32_t)(b->n_touched - 1);
}

uint32_t batch_add(struct write_batch *b, const struct msg_record *r, const char *key, uint64_t hash,
                   unsigned lane, bool covered, bool *new_sender)
{
    uint32_t i = (uint32_t)b->n_recs++;
    int found = lookup(b, key, hash);
    *new_sender = found < 0;
    uint32_t s = found < 0 ? create(b, key, hash, r->sender) : (uint32_t)found;
    struct touched *t = &b->touched[s];
    struct batch_rec *br = &b->recs[i];

    b->pending[i] = *r;
    b->covered[i] = covered;
    br->sender = s;
    br->next_of_sender = 0;
    if (t->last_rec)
        b->recs[t->last_rec - 1].next_of_sender = i + 1;
    else
        t->first_rec = i + 1;
    t->last_rec = i + 1;
    br->created_us = r->created_us;
    br->msg_delta = r->msg_delta;
    br->rcpt_delta = r->rcpt_delta;
    br->epoch = r->epoch;
    br->seq = r->seq;
    br->lane = lane;
    br->notified_change = (r->notified_set | r->notified_clear) != 0;
    return s;
}

int batch_find(const struct write_batch *b, const char *sender)
{
    char key[CACHE_KEY_SIZE];
    cache_make_key(sender, key);
    return lookup(b, key, fnv1a64(key, strlen(key)));
}
