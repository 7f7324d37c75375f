/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * domains.h - the per-domain defaults of table domain_quotas, held in
 * shared memory, and the resolution of a sender's limits: its own row's
 * value, else its domain's, else the global one (quota, action_blocked).
 *
 * Two tables, one active: the writer (or the master at start) fills the
 * inactive one from the database and flips; workers read without a lock,
 * under the table's sequence count (a seqlock), so a refresh never makes
 * a request wait.
 */
#ifndef RG_DOMAINS_H
#define RG_DOMAINS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"

#define DOMAIN_NAME_SIZE 128    /* bytes, NUL included; longer domains are ignored (logged) */

struct domain_default {
    char name[DOMAIN_NAME_SIZE];    /* lower case; "" = empty slot */
    uint32_t quota, msg_quota, rcpt_quota, pool_quota;
    uint8_t has_quota;              /* quota is set (else quota.default) */
    uint8_t has_pool;               /* pool_quota is set */
    uint8_t quota_own;              /* QUOTA_OWN_MSG | QUOTA_OWN_RCPT */
    uint8_t block_action;           /* enum block_action */
};

/* Part of the shared header. */
struct domain_shared {
    uint32_t slots;                 /* per table, a power of two */
    uint32_t active;                /* 0 or 1 */
    uint32_t seq[2];                /* odd while that table is written */
    uint32_t count[2];
};

struct domain_table {
    struct domain_shared *sh;
    struct domain_default *table[2];
};

/* Bytes of shared memory for room for `domains` domains. */
size_t domains_region_size(uint32_t domains);
void domains_layout(struct domain_table *t, struct domain_shared *sh, void *region, uint32_t domains, bool init);

/* The defaults of the domain of sender (after its last '@'); false when
 * it has none. Lock-free. */
bool domains_lookup(struct domain_table *t, const char *sender, struct domain_default *out);

/* Make these rows the domain table (one writer at a time). Rows that do
 * not fit, or whose name is too long, are skipped and counted. */
void domains_replace(struct domain_table *t, const struct domain_default *rows, size_t n, size_t *skipped);

/* The cache key of a domain's pool counters: "@" + domain. Pools live in
 * the sender cache as entries of their own (quota = pool_quota). */
void domains_pool_key(const struct domain_default *d, char key[CACHE_KEY_SIZE]);

/* What a sender is held to. */
struct limits {
    uint32_t msg, rcpt;         /* messages and recipients per period */
    uint8_t block_action;       /* enum block_action; BLOCK_ACTION_DEFAULT: action_blocked */
};

/* Resolve: the entry's own values, else the domain's (dom may be NULL),
 * else the entry's quota and action_blocked. */
struct limits limits_resolve(const struct cache_entry *e, const struct domain_default *dom);

/* limits_resolve with the entry's domain looked up in t (the status
 * dumps, the metrics: not the worker, which has looked it up already). */
struct limits limits_of_entry(struct domain_table *t, const struct cache_entry *e);

/* A message was refused in this period: the counters passed l. */
static inline bool limits_exceeded(const struct cache_entry *e, struct limits l)
{
    return e->msg_counter > l.msg || e->rcpt_counter > l.rcpt;
}

#endif
