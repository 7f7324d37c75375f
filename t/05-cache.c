/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 05-cache.c - the shared hash table: keys folded to lower case, one entry
 * per sender, long names hashed, eviction of idle written entries only,
 * CACHE_FULL when every entry has unwritten counts, and the table shared
 * by forked processes.
 */
#include "cache.h"
#include "shm.h"
#include "tap.h"

#include <sys/wait.h>
#include <unistd.h>

static void set_counts(struct cache_entry *e, bool created, void *arg)
{
    int *n = arg;
    (void)created;
    e->msg_counter++;
    e->unwritten_msg = (uint32_t)*n;
}

static void read_counts(struct cache_entry *e, bool created, void *arg)
{
    uint32_t *out = arg;
    (void)created;
    *out = e->msg_counter;
}

static void count_created(struct cache_entry *e, bool created, void *arg)
{
    int *n = arg;
    (void)e;
    if (created)
        (*n)++;
}

static void test_keys(void)
{
    char key[CACHE_KEY_SIZE];
    cache_make_key("Alice@Example.ORG", key);
    is_str(key, "alice@example.org", "ASCII folded to lower case");
    cache_make_key("J\xc3\xbcRGEN@example.org", key);
    is_str(key, "j\xc3\xbcrgen@example.org", "non-ASCII bytes kept as they are");
    char longname[300];
    memset(longname, 'X', 250);
    strcpy(longname + 250, "@example.org");
    cache_make_key(longname, key);
    ok(strncmp(key, "sha256:", 7) == 0 && strlen(key) == 71, "a 262-byte name becomes sha256:<64 hex>");
    char key2[CACHE_KEY_SIZE];
    longname[0] = 'x';
    cache_make_key(longname, key2);
    is_str(key2, key, "the hashed form is case-insensitive too");
}

static void test_table(void)
{
    struct shm shm;
    ok(shm_create(&shm, 4, 16, 0, 0, 16), "segment with 16 cache entries");
    struct cache *c = &shm.cache;
    int created = 0, zero = 0;
    char key[CACHE_KEY_SIZE];

    cache_make_key("A@x", key);
    cache_apply(c, key, true, count_created, &created);
    cache_make_key("a@X", key);
    cache_apply(c, key, true, count_created, &created);
    is_long(created, 1, "two spellings, one entry");
    is_long(cache_used(c), 1, "one entry used");
    is_long(cache_apply(c, "nobody", false, count_created, &created), CACHE_MISSING,
            "lookup without create: missing");

    /* Fill the table with entries holding unwritten counts. */
    int one = 1;
    for (int i = 0; i < 15; i++) {
        char k[32];
        snprintf(k, sizeof(k), "s%d@x", i);
        cache_apply(c, k, true, set_counts, &one);
    }
    cache_make_key("a@x", key);
    cache_apply(c, key, true, set_counts, &one);
    is_long(cache_used(c), 16, "table full");
    is_long(cache_apply(c, "new@x", true, set_counts, &zero), CACHE_FULL,
            "full of unwritten counts: CACHE_FULL, nothing evicted");
    is_long((long)c->sh->evicted, 0, "... and none counted as evicted");
    uint32_t counter = 0;
    cache_apply(c, "s3@x", false, read_counts, &counter);
    is_long(counter, 1, "unwritten entries survive");

    /* Once written, idle entries can go. */
    for (int i = 0; i < 15; i++) {
        char k[32];
        snprintf(k, sizeof(k), "s%d@x", i);
        cache_apply(c, k, false, set_counts, &zero);
    }
    is_long(cache_apply(c, "new@x", true, set_counts, &zero), CACHE_OK, "written entries evicted for a new one");
    is_long((long)c->sh->evicted, 16 + 1 - (long)cache_used(c), "the evictions counted: the entries that went");
    ok(c->sh->evicted > 0, "... at least one");
    counter = 0;
    cache_make_key("a@x", key);
    is_long(cache_apply(c, key, false, read_counts, &counter), CACHE_OK, "entry with unwritten counts kept");
    is_long(counter, 1, "its counter intact");
    shm_destroy(&shm);
}

static void test_shared_by_processes(void)
{
    struct shm shm;
    shm_create(&shm, 4, 1000, 0, 0, 16);
    int zero = 0;
    for (int p = 0; p < 4; p++)
        if (fork() == 0) {
            for (int i = 0; i < 1000; i++)
                cache_apply(&shm.cache, "shared@x", true, set_counts, &zero);
            _exit(0);
        }
    for (int p = 0; p < 4; p++)
        wait(NULL);
    uint32_t counter = 0;
    cache_apply(&shm.cache, "shared@x", false, read_counts, &counter);
    is_long(counter, 4000, "4 processes x 1000 increments under the stripe lock: 4000");
    shm_destroy(&shm);
}

int main(void)
{
    test_keys();
    test_table();
    test_shared_by_processes();
    return done_testing();
}
