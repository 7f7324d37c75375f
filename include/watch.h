/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * watch.h - the hijacked-account watch of one SASL login (issue 29): the
 * signals' state (signals.h) and the login's episode, kept in the shared
 * cache beside its counters (the last WATCH_SIZE bytes of the entry's
 * companion state, cache_extra), read and written under the entry's lock.
 *
 * A signal trips when its value reaches its threshold: spread (distinct
 * client networks in signals.window), countries (with a country
 * database), a jump of the rate over its own baseline, or a newcomer over
 * probation. A trip opens an *episode*, which stays open, with the
 * strongest action of the signals that tripped in it, until a whole
 * window passes without a trip or an operator clears it (`rateguard
 * clear`). Opening one is the worker's (no I/O, under the lock); telling
 * the database, logging it once, the webhook event and its end are the
 * writer's (watchsync.c), so that two hosts and a restart still give one
 * episode one log line and one event.
 */
#ifndef RG_WATCH_H
#define RG_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "signals.h"

struct rg_config;

/* The signals, as bits of an episode (and the order of cfg->signal_actions). */
enum { WATCH_SPREAD = 1, WATCH_COUNTRIES = 2, WATCH_JUMP = 4, WATCH_PROBATION = 8 };
#define WATCH_SIGNALS 4

/* What a signal does, weakest first (signals.*_action). */
enum watch_action { WATCH_LOG, WATCH_HOLD, WATCH_DEFER_IF_PERMIT, WATCH_REJECT, WATCH_LOCK };

struct login_watch {
    struct signals_state s;     /* 224 bytes */
    uint32_t episode_since;     /* unix s the open episode began, 0 = none */
    uint32_t episode_last;      /* unix s a signal of it last tripped */
    uint32_t cleared_at;        /* the newest operator clear adopted (login_signals.cleared_at) */
    uint32_t written_last;      /* episode_last as this host last wrote it to the database */
    uint8_t episode;            /* WATCH_* bits that tripped in the open episode, 0 = none */
    uint8_t unclaimed;          /* ... not yet told to the database (the writer's job) */
    uint8_t claimed;            /* this host claimed it: it logs and notifies its start and end */
    uint8_t locked;             /* a `lock` action: refused until an operator clears it */
    uint8_t baseline_read;      /* the writer has looked for the login's row (a new entry: not yet) */
    uint8_t spare[3];
};

#define WATCH_SIZE 248
_Static_assert(sizeof(struct login_watch) == WATCH_SIZE, "struct login_watch is 248 bytes");

/* The entry's watch, NULL when the cache was made without (signals.enabled = false). */
static inline struct login_watch *watch_of(const struct cache *c, const struct cache_entry *e)
{
    if (c->sh->watch_size < WATCH_SIZE)
        return NULL;
    return (struct login_watch *)((unsigned char *)cache_extra(c, e) + cache_windows_size(c));
}

/* Where a message came from, worked out before the lock: the network's
 * key (0: allowlisted, counts toward no spread) and the country ("" none). */
struct watch_origin {
    uint32_t net_key;
    char country[3];
};

/* The origin of client_address: false when it is missing or malformed
 * (the message then counts toward no signal). */
bool watch_origin(const struct rg_config *cfg, const char *client_address, struct watch_origin *o);

/* Whether the login is exempt from every signal (signals.exempt_logins). */
bool watch_exempt(const struct rg_config *cfg, const char *login);

/* The signals after a message, and what they decided. */
struct watch_eval {
    unsigned spread, countries;
    struct signals_rate rate;
    uint8_t tripped;            /* WATCH_* bits over their threshold now */
    uint8_t opened;             /* ... that were not in the episode before */
    uint8_t episode;            /* the open episode's bits after this message, 0 = none */
    enum watch_action action;   /* the strongest of them (WATCH_LOCK while locked) */
};

/* Under the entry's lock: count the message from origin (NULL: counts
 * toward no signal), evaluate, open or extend the episode. */
struct watch_eval watch_message(struct login_watch *w, const struct rg_config *cfg, int64_t now_us,
                                const struct watch_origin *origin);

/* The signals as they stand, without a message (the writer's evidence):
 * the state is left as it is. */
struct watch_eval watch_peek(const struct login_watch *w, const struct rg_config *cfg, int64_t now_us);

/* Whether the episode is still open at now (a window since its last trip). */
bool watch_episode_open(const struct login_watch *w, const struct rg_config *cfg, uint32_t now_s);

/* The strongest action of an episode's bits. */
enum watch_action watch_action_of(const struct rg_config *cfg, uint8_t bits);

/* "spread", "spread+rate", ... into buf. */
const char *watch_names(uint8_t bits, char *buf, size_t size);
extern const char *const watch_action_names[];

/* The evidence of an evaluation, one line for the log, status and the webhook. */
void watch_evidence(const struct watch_eval *ev, const struct rg_config *cfg, char *buf, size_t size);

/* An operator's clear (or the database's, adopted): the networks,
 * countries and the current rate forgotten, the episode and the lock
 * ended; the baseline stays. */
void watch_clear(struct login_watch *w);

/* The cache's extra_in_use: sliding-window counts, or an episode, a lock
 * or a claim pending. */
bool watch_entry_in_use(const struct cache *c, const struct cache_entry *e);

#endif
