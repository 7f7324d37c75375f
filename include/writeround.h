/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * writeround.h - one round of the writer: the oldest records (the spool
 * first, then the queue) into the lanes' batches, written, the cache
 * told. struct round owns what outlives a round: the progress rows as
 * committed, the records already taken out of the queued counts, the mode
 * the next round must take after a failure, the arena of record copies.
 * It uses the lanes (writelane.h), the spool (spool.h) and the queue
 * below it, and returns what happened; the writer's loop (writer.c)
 * decides what follows (a pause, a backoff).
 */
#ifndef RG_WRITEROUND_H
#define RG_WRITEROUND_H

#include "cachesync.h"
#include "spool.h"
#include "writelane.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct writer_ctx;

#define ARENA_SIZE (4u << 20)       /* copies of the records of one round */

enum round_result {
    ROUND_WRITTEN,      /* committed (perhaps no record: nothing waited) */
    ROUND_AGAIN,        /* rolled back or set aside; the next round differs (careful, a record alone) */
    ROUND_CONFLICT,     /* rolled back: a conflict with another transaction; retry after a short pause */
    ROUND_FAILED,       /* rolled back: the database's state (an outage); retry after a backoff */
};

struct round {
    const struct writer_ctx *ctx;   /* borrowed */
    char *arena;                    /* owned: the strings of the round's records */
    struct progress committed[WRITER_LANES];    /* each lane's progress row as committed */
    struct progress round_last[WRITER_LANES];   /* the current round's last record of each lane */
    /* Records this process has taken out of the queued counts, by lane: a
     * lane that committed in a round another lane failed is applied at once
     * (or a refresh would count its records twice, in the row and as
     * queued), and its records come again, covered, in the retry. */
    struct progress applied[WRITER_LANES];
    bool careful;                   /* next round: one statement per record, to find a refused one */
    bool one_lane;                  /* next round: lane 0 alone (after the lanes deadlocked) */
    time_t lanes_apart_until;       /* after a failed round: no round in one transaction before */
    uint64_t poison_epoch, poison_seq;  /* record refused by the database, to set aside */
    char poison_error[512];
    uint64_t answered;              /* the workers' request count at the last round */
};

void round_init(struct round *r, const struct writer_ctx *ctx);
void round_free(struct round *r);

/* Connect the lanes and read the progress rows; false with err. */
bool round_connect(struct round *r, struct lanes *ls, char *err, size_t errsize);

/* The lanes' statements, and every progress row saved (lanes_prepare). */
bool round_prepare(struct round *r, struct lanes *ls, char *err, size_t errsize);

/* One round over the oldest records; *taken is the number of records it
 * took (written, replayed or set aside) when ROUND_WRITTEN, else 0; err
 * says why when not. */
enum round_result round_run(struct round *r, struct lanes *ls, struct spool *sp, long *taken, char *err,
                            size_t errsize);

#endif
