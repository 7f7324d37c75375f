/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * domains.c - the double-buffered domain table (see domains.h) and the
 * resolution of limits. The table is open-addressed by the FNV-1a hash of
 * the domain name and at most half full.
 */
#include "domains.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

static uint32_t slots_for(uint32_t domains)
{
    uint32_t n = 16;
    while (n < 2 * domains)
        n *= 2;
    return n;
}

size_t domains_region_size(uint32_t domains)
{
    return 2 * (size_t)slots_for(domains) * sizeof(struct domain_default);
}

void domains_layout(struct domain_table *t, struct domain_shared *sh, void *region, uint32_t domains, bool init)
{
    t->sh = sh;
    t->table[0] = region;
    t->table[1] = t->table[0] + slots_for(domains);
    if (init) {
        memset(sh, 0, sizeof(*sh));
        sh->slots = slots_for(domains);
        memset(region, 0, domains_region_size(domains));
    }
}

/* Lower-cased domain of sender into name; false without one that fits. */
static bool domain_of(const char *sender, char name[DOMAIN_NAME_SIZE])
{
    const char *at = strrchr(sender, '@');
    if (at == NULL || at[1] == '\0' || strlen(at + 1) >= DOMAIN_NAME_SIZE)
        return false;
    ascii_fold(name, at + 1, strlen(at + 1));
    return true;
}

bool domains_lookup(struct domain_table *t, const char *sender, struct domain_default *out)
{
    char name[DOMAIN_NAME_SIZE];
    /* No domain defaults at all (the common case): nothing to fold or hash. */
    if (__atomic_load_n(&t->sh->count[__atomic_load_n(&t->sh->active, __ATOMIC_ACQUIRE)], __ATOMIC_RELAXED) == 0)
        return false;
    if (!domain_of(sender, name))
        return false;
    uint32_t mask = t->sh->slots - 1;
    uint32_t start = (uint32_t)fnv1a64(name, strlen(name)) & mask;
    for (;;) {
        uint32_t a = __atomic_load_n(&t->sh->active, __ATOMIC_ACQUIRE);
        uint32_t seq = __atomic_load_n(&t->sh->seq[a], __ATOMIC_ACQUIRE);
        if (seq & 1)
            continue;           /* being rewritten: the flip follows at once */
        bool found = false;
        if (__atomic_load_n(&t->sh->count[a], __ATOMIC_RELAXED) > 0) {
            for (uint32_t i = start, n = 0; n <= mask; i = (i + 1) & mask, n++) {
                memcpy(out, &t->table[a][i], sizeof(*out));
                out->name[DOMAIN_NAME_SIZE - 1] = '\0';
                if (out->name[0] == '\0')
                    break;
                if (strcmp(out->name, name) == 0) {
                    found = true;
                    break;
                }
            }
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&t->sh->seq[a], __ATOMIC_RELAXED) == seq)
            return found;
    }
}

void domains_replace(struct domain_table *t, const struct domain_default *rows, size_t n, size_t *skipped)
{
    uint32_t b = 1 - __atomic_load_n(&t->sh->active, __ATOMIC_ACQUIRE);
    uint32_t mask = t->sh->slots - 1, count = 0;
    struct domain_default *table = t->table[b];

    *skipped = 0;
    /* Odd while written (readers retry), even when done: set, not counted
     * up, so that a writer killed half-way leaves nothing to undo. */
    uint32_t seq = __atomic_load_n(&t->sh->seq[b], __ATOMIC_RELAXED) | 1;
    __atomic_store_n(&t->sh->seq[b], seq, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memset(table, 0, (size_t)t->sh->slots * sizeof(*table));
    for (size_t r = 0; r < n; r++) {
        if (rows[r].name[0] == '\0' || count >= t->sh->slots / 2) {
            (*skipped)++;
            continue;
        }
        uint32_t i = (uint32_t)fnv1a64(rows[r].name, strlen(rows[r].name)) & mask;
        while (table[i].name[0] != '\0')
            i = (i + 1) & mask;
        table[i] = rows[r];
        count++;
    }
    __atomic_store_n(&t->sh->count[b], count, __ATOMIC_RELAXED);
    __atomic_store_n(&t->sh->seq[b], seq + 1, __ATOMIC_RELEASE);
    __atomic_store_n(&t->sh->active, b, __ATOMIC_RELEASE);
}

void domains_pool_key(const struct domain_default *d, char key[CACHE_KEY_SIZE])
{
    snprintf(key, CACHE_KEY_SIZE, "@%s", d->name);
}

struct limits limits_of_entry(struct domain_table *t, const struct cache_entry *e)
{
    struct domain_default dom;
    return limits_resolve(e, domains_lookup(t, e->key, &dom) ? &dom : NULL);
}

struct limits limits_resolve(const struct cache_entry *e, const struct domain_default *dom)
{
    struct limits l = {e->quota, e->quota, e->block_action};
    if (e->quota_own & QUOTA_OWN_MSG)
        l.msg = e->msg_quota;
    else if (dom && (dom->quota_own & QUOTA_OWN_MSG))
        l.msg = dom->msg_quota;
    if (e->quota_own & QUOTA_OWN_RCPT)
        l.rcpt = e->rcpt_quota;
    else if (dom && (dom->quota_own & QUOTA_OWN_RCPT))
        l.rcpt = dom->rcpt_quota;
    if (l.block_action == BLOCK_ACTION_DEFAULT && dom)
        l.block_action = dom->block_action;
    return l;
}
