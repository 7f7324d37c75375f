/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * cache.h - the shared-memory hash table of sender counters: fixed-size
 * slots addressed by index (no allocator in shared memory), chained
 * buckets, striped robust mutexes, a free list, and clock eviction of idle
 * entries whose counts are all written. Keys are the SASL username folded
 * to lower case (ASCII), so "Alice@Example.org" and "alice@example.org"
 * are one sender, as in the database's case-insensitive unique key.
 *
 * All entry fields are read and written only under the entry's stripe
 * lock, inside a cache_apply()/cache_foreach() callback.
 */
#ifndef RG_CACHE_H
#define RG_CACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "minute.h"

#define CACHE_KEY_SIZE 142      /* bytes, NUL included; longer senders are hashed (keeps an entry at 248 bytes) */
#define CACHE_INSTANCES 2       /* recently counted messages remembered per sender */

struct cache_entry {
    uint32_t next;              /* index + 1 in the bucket chain or free list; 0 ends */
    uint32_t hash;
    uint64_t db_id;             /* ratelimits.id, 0 until the writer knows it */
    uint32_t quota, quota_reset;
    uint32_t msg_counter, rcpt_counter;
    uint32_t msg_total, rcpt_total;
    uint32_t unwritten_msg, unwritten_rcpt;  /* queued, not yet committed */
    uint32_t msg_quota, rcpt_quota;          /* the row's own limits, when quota_own says so */
    uint64_t instance[CACHE_INSTANCES];      /* hashes of counted Postfix instances */
    int64_t reset_us;           /* last period reset of this sender (unix microseconds) */
    uint32_t full_since;        /* unix seconds since its next message is refused by its quota
                                 * (as this daemon saw it), 0 when it is not or not known */
    struct minute_count last_minute;    /* messages decided in the last minute (`rateguard top`), not in the
                                         * database nor the snapshot: it starts empty with the daemon */
    uint16_t seen;              /* refresh round that last found the row */
    uint8_t instance_blocked[CACHE_INSTANCES];
    uint8_t in_use, locked, block_notified, referenced, warning_notified;
    uint8_t quota_own;          /* QUOTA_OWN_MSG | QUOTA_OWN_RCPT */
    uint8_t notify_unwritten;   /* queued records that changed block/warning_notified (saturates) */
    uint8_t block_action;       /* enum block_action; 0: action_blocked */
    uint8_t instance_next, key_len;
    char key[CACHE_KEY_SIZE];
};

#define QUOTA_OWN_MSG 1
#define QUOTA_OWN_RCPT 2

/* ratelimits.notified (migration 007) and a record's notified_set/clear:
 * which notifications of the period were sent. */
#define NOTIFIED_BLOCK 1
#define NOTIFIED_WARNING 2

/* ratelimits.block_action, in the enum's order (its value + 0 in SQL). */
enum block_action { BLOCK_ACTION_DEFAULT, BLOCK_DEFER_IF_PERMIT, BLOCK_DEFER, BLOCK_REJECT, BLOCK_HOLD, BLOCK_DISCARD,
                    BLOCK_ACTIONS };

/* Part of the shared header. */
struct cache_shared {
    pthread_mutex_t alloc_lock;     /* free list and used count */
    uint32_t capacity, buckets, stripes;
    uint32_t extra_size;            /* bytes of companion state per entry: the sliding windows,
                                     * then watch_size bytes of the login's watch (watch.h) */
    uint32_t watch_size;            /* 0: no watch */
    uint32_t free_head;             /* index + 1, 0 = none */
    uint32_t used;
    uint32_t clock_hand;
    uint64_t evicted;               /* entries evicted to make room */
};

/* A process's view of the table. */
struct cache {
    struct cache_shared *sh;
    pthread_mutex_t *stripe;
    uint32_t *bucket;               /* index + 1 of the chain head */
    struct cache_entry *entry;
    unsigned char *extra;           /* extra_size bytes per entry, same index */
    bool (*extra_in_use)(const struct cache *c, const struct cache_entry *e);  /* such an entry is kept longest */
    unsigned recovered;             /* locks recovered by this process, not yet logged */
};

/* Bytes of shared memory needed after the header for `entries` senders. */
size_t cache_region_size(uint32_t entries, uint32_t extra_size);

/* Point c at region; with init, build an empty table. */
void cache_layout(struct cache *c, struct cache_shared *sh, void *region, uint32_t entries, uint32_t extra_size,
                  bool init);

/* The entry's companion state (extra_size bytes, zeroed when the entry is
 * made), guarded by the entry's lock like the entry itself. */
static inline void *cache_extra(const struct cache *c, const struct cache_entry *e)
{
    return c->extra + (size_t)(e - c->entry) * c->sh->extra_size;
}

/* The bytes of sliding windows per entry (before the watch). */
static inline uint32_t cache_windows_size(const struct cache *c)
{
    return c->sh->extra_size - c->sh->watch_size;
}

/* Fold a SASL username into a cache key: ASCII lower case; names that do
 * not fit CACHE_KEY_SIZE become "sha256:<hex of the folded name>". */
void cache_make_key(const char *sender, char key[CACHE_KEY_SIZE]);

typedef void (*cache_fn)(struct cache_entry *e, bool created, void *arg);

enum cache_result { CACHE_OK, CACHE_MISSING, CACHE_FULL };

/*
 * Find the entry for key (creating it, zeroed, when create is set) and call
 * fn on it under its stripe lock. When the table is full, idle written
 * entries are evicted to make room; CACHE_FULL when none can be.
 */
enum cache_result cache_apply(struct cache *c, const char *key, bool create, cache_fn fn, void *arg);

/* Call fn on every entry in use, each under its stripe lock. */
void cache_foreach(struct cache *c, cache_fn fn, void *arg);

/* Remove every entry for which drop() says so (under its stripe lock). */
typedef bool (*cache_pred)(const struct cache_entry *e, void *arg);
uint32_t cache_sweep(struct cache *c, cache_pred drop, void *arg);

/* Entries in use. */
uint32_t cache_used(struct cache *c);

#endif
