/*
 * writepath.h - the writer's inner parts, shared by its four files and by
 * nothing else: a round's records split into lanes (struct lane), the
 * writer's own state (struct writer), and what each file offers the others.
 *   writer.c      the process: the round loop, backoff, housekeeping;
 *   writeround.c  one round: records in age order into lanes, what the
 *                 progress rows cover (a replay), the cache after COMMIT;
 *   writelane.c   a lane's transaction: connections and statements;
 *   spool.c       the spool file: records moved out of a full queue.
 */
#ifndef RG_WRITEPATH_H
#define RG_WRITEPATH_H

#include "cache.h"
#include "cachesync.h"
#include "writer.h"
#include "wqueue.h"

#include <mysql.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define BATCH_MAX 1000              /* records per transaction */
#define TOUCHED_SLOTS 4096          /* hash index over a batch's senders: a power of two > 2 * BATCH_MAX */
#define ARENA_SIZE (4u << 20)       /* copies of the records of one batch */
#define WRITE_FAILED (-1)           /* rolled back; retry after a pause */
#define WRITE_AGAIN (-2)            /* rolled back; a refused record goes aside next round */

/* A record of the current batch, as far as the cache is concerned. */
struct batch_rec {
    uint32_t sender;            /* index into touched */
    uint32_t next_of_sender;    /* index + 1 of the sender's next record, 0 ends */
    int64_t created_us;
    uint32_t msg_delta, rcpt_delta;
    uint64_t epoch, seq;
    unsigned lane;              /* writer_lane: whose progress row covers it */
    bool notified_change;       /* it sets or clears ratelimits.notified bits */
};

/* A sender touched by the current batch, read back before COMMIT. */
struct touched {
    char key[CACHE_KEY_SIZE];
    uint64_t key_hash;
    char *sender;
    struct db_row row;
    bool found;
    uint32_t msg_counter, rcpt_counter, msg_total, rcpt_total;   /* bulk: deltas to add */
    bool has_new;                   /* bulk: at least one record not yet in the database */
    uint32_t notified;              /* bulk: ratelimits.notified after the batch's records */
    uint32_t first_rec, last_rec;   /* index + 1 of its records in recs[] (a chain) */
    uint64_t cached_id;             /* ratelimits.id as the cache knows it, 0 if not */
};

/* The bulk statements, by shape. Parsing a statement of a thousand rows
 * costs the server as much as a fifth of running it, so the shapes in use
 * stay prepared, least recently used out first: the statements that read
 * or create rows are padded to a power of two of rows, and the messages
 * rows (which cannot be padded) go in statements of powers of two, the
 * largest first: a few round trips cost less than parsing a new size. */
enum bulk_kind {
    BULK_CREATE, BULK_SELECT_LOCK_ID, BULK_SELECT_LOCK, BULK_SELECT_NEW, BULK_UPSERT, BULK_MESSAGES, BULK_KINDS
};

#define BULK_CACHE 40

struct bulk_stmt {
    MYSQL_STMT *st;             /* NULL: free entry */
    enum bulk_kind kind;
    size_t rows;
    uint64_t last_used;
};

struct writer;

/* One database connection and the records of a round it writes, in its
 * own transaction: the senders of its share (writer_lane), or all of them
 * when lane 0 must do the round alone (careful, or after a deadlock); it
 * then carries the other lanes' progress rows too. Indexes into pending,
 * covered and recs are the same record. */
struct lane {
    struct writer *w;
    MYSQL *db;
    MYSQL_STMT *save_progress;
    struct bulk_stmt bulk[BULK_CACHE];
    uint64_t bulk_clock;
    struct msg_record *pending;     /* the round's records (strings in the writer's arena) */
    bool *covered;                  /* ... already in the database (a replay) */
    struct batch_rec *recs;
    size_t n_recs;
    struct touched *touched;
    size_t n_touched;
    uint32_t touched_index[TOUCHED_SLOTS];  /* open addressing by key hash: touched[i] as i + 1 */
    bool saves[WRITER_LANES];       /* progress rows this lane writes in this round */
    /* The outcome of its part of a round (a lane may run in its own thread). */
    bool ok;
    unsigned int bulk_errno;        /* server error of the last failed bulk statement */
    char err[1024];
};

struct writer {
    const struct writer_ctx *ctx;
    struct lane lanes[WRITER_LANES];
    MYSQL_STMT *upsert, *insert_message;    /* one record at a time, on lane 0 */
    char progress_name[WRITER_LANES][256];
    struct progress committed[WRITER_LANES];
    bool careful;                   /* next round: one statement per record, to find a refused one */
    bool one_lane;                  /* next round: lane 0 alone (after the lanes deadlocked) */
    time_t lanes_apart_until;       /* after a failed round: no round in one transaction before */
    char *arena;
    bool outage_logged;
    uint64_t poison_epoch, poison_seq;  /* record refused by the database, to set aside */
    char poison_error[512];
    int spool_fd;
    off_t spool_read;           /* next spool byte to write to the database */
    struct progress round_last[WRITER_LANES];   /* the current round's last record of each lane */
    uint64_t answered;          /* the workers' request count at the last round */
    /* Records this process has taken out of the queued counts, by lane: a
     * lane that committed in a round another lane failed is applied at once
     * (or a refresh would count its records twice, in the row and as
     * queued), and its records come again, covered, in the retry. */
    struct progress applied[WRITER_LANES];
    time_t next_refresh;
    time_t next_reset;              /* quota.reset_schedule boundary, 0 = none */
    uint32_t refresh_seen;      /* refresh_requests already served */
};

/* A source of records in age order: the spool file, then the queue. */
struct source {
    bool spool;
    struct wqueue_cursor cur;   /* queue */
    off_t off;                  /* spool */
    char *spool_buf;
    size_t spool_len, spool_pos;
};

/* writelane.c */
bool writer_connect(struct writer *w, char *err, size_t errsize);
void writer_disconnect(struct writer *w);
bool writer_prepare_statements(struct writer *w, char *err, size_t errsize);
bool writer_write_record(struct writer *w, const struct msg_record *r, char *err, size_t errsize);
bool writer_create_rows(struct writer *w, char *err, size_t errsize);
void writer_run_lanes(struct writer *w, bool careful, bool parallel);
bool writer_refused_error(unsigned int code);
bool writer_conflict_error(unsigned int code);
/* The server's error code of the last failed prepare (per lane thread). */
extern __thread unsigned int writer_prepare_errno;

/* writeround.c */
long writer_round(struct writer *w, char *err, size_t errsize);
void writer_batch_reset(struct lane *l);
int writer_touched_lookup(struct lane *l, const char *key, uint64_t hash, const char *sender, bool create);

/* writer.c */
void writer_conflict_pause(struct writer *w, const char *err);

/* spool.c */
off_t spool_size(struct writer *w);
bool spool_open(struct writer *w);
void spool_spill(struct writer *w);
bool spool_source_next(struct writer *w, struct source *s, char *buf, size_t bufsize, struct msg_record *rec,
                       size_t *used);
long spool_damaged(struct writer *w, struct source *src, char *err, size_t errsize);

#endif
