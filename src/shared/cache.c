/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * cache.c - the shared sender table. Lock order: a stripe lock, then the
 * allocator lock; never two stripes at once. Chains are updated so that a
 * process killed in the middle leaves a walkable chain: a new entry is
 * fully written before the bucket head points at it.
 */
#include "cache.h"
#include "pmutex.h"
#include "util.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(struct cache_entry) <= 248, "cache entry grew past 248 bytes");

#define EVICT_BATCH 64

static uint32_t round_pow2(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static uint32_t stripes_for(uint32_t buckets)
{
    return buckets < 1024 ? buckets : 1024;
}

size_t cache_region_size(uint32_t entries, uint32_t extra_size)
{
    uint32_t buckets = round_pow2(entries);
    return stripes_for(buckets) * sizeof(pthread_mutex_t) + (size_t)buckets * sizeof(uint32_t) +
           (size_t)entries * (sizeof(struct cache_entry) + extra_size);
}

void cache_layout(struct cache *c, struct cache_shared *sh, void *region, uint32_t entries, uint32_t extra_size,
                  bool init)
{
    char *p = region;

    c->sh = sh;
    c->recovered = 0;
    if (init) {
        sh->capacity = entries;
        sh->buckets = round_pow2(entries);
        sh->stripes = stripes_for(sh->buckets);
        sh->extra_size = extra_size;
    }
    c->stripe = (pthread_mutex_t *)p;
    p += sh->stripes * sizeof(pthread_mutex_t);
    c->bucket = (uint32_t *)p;
    p += (size_t)sh->buckets * sizeof(uint32_t);
    c->entry = (struct cache_entry *)p;
    p += (size_t)entries * sizeof(struct cache_entry);
    c->extra = (unsigned char *)p;
    if (!init)
        return;
    memset(c->extra, 0, (size_t)entries * extra_size);

    pmutex_init(&sh->alloc_lock);
    for (uint32_t i = 0; i < sh->stripes; i++)
        pmutex_init(&c->stripe[i]);
    memset(c->bucket, 0, (size_t)sh->buckets * sizeof(uint32_t));
    memset(c->entry, 0, (size_t)entries * sizeof(struct cache_entry));
    for (uint32_t i = 0; i < entries; i++)
        c->entry[i].next = i + 2 <= entries ? i + 2 : 0;
    sh->free_head = entries ? 1 : 0;
    sh->used = 0;
    sh->clock_hand = 0;
    sh->evicted = 0;
}

/* FNV-1a: senders are authenticated users, not an adversary choosing keys. */
static uint32_t key_hash(const char *key)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *s = (const unsigned char *)key; *s; s++)
        h = (h ^ *s) * 16777619u;
    return h;
}

void cache_make_key(const char *sender, char key[CACHE_KEY_SIZE])
{
    size_t len = strlen(sender);

    if (len < CACHE_KEY_SIZE) {
        ascii_fold(key, sender, len);
        return;
    }
    char *folded = xmalloc(len + 1);
    unsigned char digest[32];
    unsigned int dlen = 0;
    ascii_fold(folded, sender, len);
    EVP_Digest(folded, len, digest, &dlen, EVP_sha256(), NULL);
    free(folded);
    memcpy(key, "sha256:", 7);
    for (unsigned i = 0; i < 32; i++)
        snprintf(key + 7 + 2 * i, 3, "%02x", digest[i]);
}

static pthread_mutex_t *stripe_of(struct cache *c, uint32_t bucket)
{
    return &c->stripe[bucket & (c->sh->stripes - 1)];
}

static struct cache_entry *find(struct cache *c, uint32_t bucket, uint32_t hash, const char *key)
{
    for (uint32_t i = c->bucket[bucket]; i != 0; i = c->entry[i - 1].next) {
        struct cache_entry *e = &c->entry[i - 1];
        if (e->hash == hash && strcmp(e->key, key) == 0)
            return e;
    }
    return NULL;
}

static uint32_t alloc_entry(struct cache *c)
{
    pmutex_lock(&c->sh->alloc_lock, &c->recovered);
    uint32_t i = c->sh->free_head;
    if (i != 0) {
        c->sh->free_head = c->entry[i - 1].next;
        c->sh->used++;
    }
    pmutex_unlock(&c->sh->alloc_lock);
    return i;
}

static void free_entry(struct cache *c, uint32_t i)
{
    pmutex_lock(&c->sh->alloc_lock, &c->recovered);
    memset(&c->entry[i - 1], 0, sizeof(struct cache_entry));
    c->entry[i - 1].next = c->sh->free_head;
    c->sh->free_head = i;
    c->sh->used--;
    pmutex_unlock(&c->sh->alloc_lock);
}

/* An entry whose loss would change a decision if its sender came back
 * before the writer's refresh: blocked, or with a quota of its own. */
static bool precious(const struct cache *c, const struct cache_entry *e)
{
    return e->msg_counter > e->quota || e->rcpt_counter > e->quota || e->quota != e->quota_reset ||
           e->locked || (c->extra_in_use && c->extra_in_use(c, e));
}

/* Clock sweep: give every entry a second chance, evict idle entries whose
 * counts are written, plain ones first (precious ones only when there is
 * nothing else). Holds one stripe at a time. Returns entries freed. */
static uint32_t evict(struct cache *c, uint32_t want)
{
    uint32_t freed = 0;
    uint32_t n = c->sh->capacity;

    for (uint32_t step = 0; step < 4 * n && freed < want; step++) {
        bool spare_precious = step < 2 * n;
        uint32_t idx = __atomic_fetch_add(&c->sh->clock_hand, 1, __ATOMIC_RELAXED) % n;
        struct cache_entry *e = &c->entry[idx];
        uint32_t hash = __atomic_load_n(&e->hash, __ATOMIC_RELAXED);
        uint32_t bucket = hash & (c->sh->buckets - 1);
        pthread_mutex_t *lock = stripe_of(c, bucket);

        pmutex_lock(lock, &c->recovered);
        if (e->in_use && e->hash == hash) {
            if (e->referenced) {
                e->referenced = 0;
            } else if (e->unwritten_msg == 0 && e->unwritten_rcpt == 0 && !(spare_precious && precious(c, e))) {
                uint32_t *link = &c->bucket[bucket];
                while (*link != 0 && *link != idx + 1)
                    link = &c->entry[*link - 1].next;
                if (*link == idx + 1) {
                    *link = e->next;
                    e->in_use = 0;
                    free_entry(c, idx + 1);
                    freed++;
                    __atomic_fetch_add(&c->sh->evicted, 1, __ATOMIC_RELAXED);
                }
            }
        }
        pmutex_unlock(lock);
    }
    return freed;
}

enum cache_result cache_apply(struct cache *c, const char *key, bool create, cache_fn fn, void *arg)
{
    uint32_t hash = key_hash(key);
    uint32_t bucket = hash & (c->sh->buckets - 1);
    pthread_mutex_t *lock = stripe_of(c, bucket);

    for (int attempt = 0; attempt < 2; attempt++) {
        pmutex_lock(lock, &c->recovered);
        struct cache_entry *e = find(c, bucket, hash, key);
        bool created = false;
        if (e == NULL && create) {
            uint32_t i = alloc_entry(c);
            if (i != 0) {
                e = &c->entry[i - 1];
                memset(e, 0, sizeof(*e));
                memset(cache_extra(c, e), 0, c->sh->extra_size);
                e->hash = hash;
                str_copy(e->key, key, sizeof(e->key));
                e->key_len = (uint8_t)strlen(e->key);
                e->in_use = 1;
                e->next = c->bucket[bucket];
                __atomic_store_n(&c->bucket[bucket], i, __ATOMIC_RELEASE);
                created = true;
            }
        }
        if (e != NULL) {
            e->referenced = 1;
            fn(e, created, arg);
            pmutex_unlock(lock);
            return CACHE_OK;
        }
        pmutex_unlock(lock);
        if (!create)
            return CACHE_MISSING;
        if (evict(c, EVICT_BATCH) == 0)
            return CACHE_FULL;
    }
    return CACHE_FULL;
}

void cache_foreach(struct cache *c, cache_fn fn, void *arg)
{
    for (uint32_t b = 0; b < c->sh->buckets; b++) {
        pthread_mutex_t *lock = stripe_of(c, b);
        pmutex_lock(lock, &c->recovered);
        for (uint32_t i = c->bucket[b]; i != 0; i = c->entry[i - 1].next)
            fn(&c->entry[i - 1], false, arg);
        pmutex_unlock(lock);
    }
}

uint32_t cache_sweep(struct cache *c, cache_pred drop, void *arg)
{
    uint32_t removed = 0;
    for (uint32_t b = 0; b < c->sh->buckets; b++) {
        pthread_mutex_t *lock = stripe_of(c, b);
        pmutex_lock(lock, &c->recovered);
        uint32_t *link = &c->bucket[b];
        while (*link != 0) {
            uint32_t i = *link;
            struct cache_entry *e = &c->entry[i - 1];
            if (drop(e, arg)) {
                *link = e->next;
                free_entry(c, i);
                removed++;
            } else
                link = &e->next;
        }
        pmutex_unlock(lock);
    }
    return removed;
}

uint32_t cache_used(struct cache *c)
{
    return __atomic_load_n(&c->sh->used, __ATOMIC_RELAXED);
}
