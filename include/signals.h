/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * signals.h - per-login signals of a hijacked account (issue 29), caught
 * before its quota is: how many client networks and countries a SASL
 * login was seen from in a sliding window, and its rate against an
 * exponentially weighted average of its own past windows.
 *
 * The daemon keeps one state per login in the shared cache (watch.h);
 * t/16-signals.c tests this core alone.
 *
 * Pure: no I/O, no globals; the caller passes the time (unix
 * microseconds, realtime, as windows.h) and owns the state. One
 * struct signals_state per login is meant to live beside the login's
 * sliding windows in the shared cache (cache_extra), updated under the
 * entry's lock; it is SIGNALS_STATE_SIZE bytes, all zero means empty (the
 * cache zeroes a new entry), and it holds no pointers.
 *
 * Networks and countries are kept with minute stamps: one seen at any
 * second of a minute counts until that minute's start plus the window,
 * i.e. for between window - 59 s and window seconds (an address seen at
 * 10:00:00 counts up to 10:59:59 and not from 11:00:00 with a 1 h window).
 * The window is rounded up to whole minutes and bounded by
 * SIGNALS_WINDOW_MIN_S..SIGNALS_WINDOW_MAX_S (clamped). All calls on one
 * state should get the same window: a shorter one in signals_observe
 * drops what a longer one would still count.
 *
 * Saturation: the tables hold SIGNALS_NETS networks and SIGNALS_COUNTRIES
 * countries. When a table is full the oldest slot is evicted, so a count
 * below the table size is exact, and the table size means "at least that
 * many" (the evicted slots were older than every slot left, so they age
 * out first: the count is min(true count, table size) at every moment).
 * A spread threshold must therefore be at most SIGNALS_NETS and a country
 * threshold at most SIGNALS_COUNTRIES; a larger one could never fire, and
 * the configuration should refuse it.
 *
 * Networks are 32-bit hashes of the client's prefix (IPv4 /24 and IPv6
 * /64 by default): two networks with the same hash count as one, so a
 * collision can only undercount, never overcount.
 */
#ifndef RG_SIGNALS_H
#define RG_SIGNALS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define SIGNALS_NETS 24             /* distinct networks kept (spread saturates here) */
#define SIGNALS_COUNTRIES 12        /* distinct countries kept */
#define SIGNALS_WINDOW_MIN_S 60
#define SIGNALS_WINDOW_MAX_S (7 * 86400)   /* minute stamps are 16 bits: 45 days of range */
#define SIGNALS_ALPHA_ONE 65536     /* alpha_q16 of 1.0 */
#define SIGNALS_BASELINE_ONE 256    /* baseline_q8 of one message per window */

/*
 * The state of one login, SIGNALS_STATE_SIZE bytes with no padding
 * (arrays of one type each, so the size is the same on every ABI):
 *
 *   offset size
 *        0   96  net_key[24]         hash of the network, 0 = free slot
 *       96   48  net_minute[24]      low 16 bits of the unix minute last seen
 *      144   24  country[12][2]      ISO 3166 code in upper case, "\0\0" = free
 *      168   24  country_minute[12]  as net_minute
 *      192    4  last_minute         unix minute of the newest network or
 *                                    country; the 16-bit stamps are read
 *                                    relative to it (0 = none yet)
 *      196    4  cur_start           unix second the current rate window began
 *                                    (a multiple of the window; 0 = none yet)
 *      200    4  cur_count           messages in it (saturating)
 *      204    4  prev_count          messages in the window just before it
 *      208    4  baseline_q8         EWMA of past active windows, messages
 *                                    per window x 256 (saturating)
 *      212    2  history             active windows folded into it (saturating)
 *      214    2  spare               zero
 *      216    4  feed_cur            messages of every host in the current
 *                                    window, as the database's feed told it
 *      220    4  feed_prev           ... in the window before it
 *                                    = 224 bytes
 *
 * The rate windows are tumbling windows aligned on multiples of the
 * window length since 1970. Only active windows (at least one message)
 * are folded into the baseline: idle nights and weekends would pull the
 * average to zero and make every Monday morning look like a jump. The
 * baseline is therefore "messages in a window when the login sends", and
 * history the number of such windows. The rate reported for now is the
 * current window's count plus the previous window's prorated to the part
 * of it still inside a sliding window (cur + prev * (window - elapsed) /
 * window), so a burst across a boundary is not halved. Each window's count
 * is the larger of this host's own (cur_count, prev_count) and the
 * database feed's (feed_cur, feed_prev: every host's committed messages,
 * signals_feed): exact on one host, a lower bound lagging by the feed's
 * delay on several.
 *
 * What a window folds: a window that was a jump (over baseline x
 * multiple and over jump_floor, with min_history) is not folded, so an
 * attack never teaches the login its own rate; on probation, a window
 * folds at most `probation` messages. The database's fold (the writer,
 * signalsync.c) applies the same rules, and its result replaces this
 * host's at every read (signals_set_baseline).
 *
 * Stamps are unix seconds and minutes in 32 bits: good until 2106.
 */
struct signals_state {
    uint32_t net_key[SIGNALS_NETS];
    uint16_t net_minute[SIGNALS_NETS];
    char country[SIGNALS_COUNTRIES][2];
    uint16_t country_minute[SIGNALS_COUNTRIES];
    uint32_t last_minute;
    uint32_t cur_start;
    uint32_t cur_count;
    uint32_t prev_count;
    uint32_t baseline_q8;
    uint16_t history;
    uint16_t spare;
    uint32_t feed_cur;
    uint32_t feed_prev;
};

#define SIGNALS_STATE_SIZE 224
_Static_assert(sizeof(struct signals_state) == SIGNALS_STATE_SIZE, "struct signals_state is 224 bytes");

/* The settings, one set for all logins (the configuration will hold their
 * names and bounds; out-of-range values are clamped here). */
struct signals_params {
    uint32_t window_s;      /* the sliding window and the rate window, 60 s..7 d (default 3600) */
    uint32_t alpha_q16;     /* EWMA weight of the newest window in 1/65536, 1..65536 (8192 = 1/8) */
    uint32_t min_history;   /* active windows before the baseline applies; fewer: probation */
    uint32_t multiple_pct;  /* a rate above baseline x multiple_pct/100 is a jump (1000 = 10x) */
    uint32_t probation;     /* messages per window allowed on probation */
    uint32_t jump_floor;    /* a jump is also more than this many messages in the window: a login
                             * going from 1 to 11 an hour is no attack */
};

#define SIGNALS_PARAMS_DEFAULT                                                                        \
    ((struct signals_params){.window_s = 3600, .alpha_q16 = 8192, .min_history = 8, .multiple_pct = 1000, \
                             .probation = 100, .jump_floor = 100})

/* The network of a client address as a key for signals_observe:
 * AF_INET masked to v4_prefix bits, AF_INET6 to v6_prefix bits (an
 * IPv4-mapped IPv6 address is the IPv4 address), prefixes clamped to 32
 * and 128. Never 0 for an address; 0 for any other family (AF_UNIX). */
uint32_t signals_network_key(const struct sockaddr *sa, unsigned v4_prefix, unsigned v6_prefix);

/* Record one message of the login at now_us: its network (0: none, e.g.
 * an allowlisted network, which never counts toward spread), its country
 * (two ASCII letters, any case; NULL or anything else: none), and one
 * message toward the rate (always). A clock set back by less than the
 * window counts at the newest time seen; by more, the networks and
 * countries start afresh (the rate windows likewise, the baseline stays). */
void signals_observe(struct signals_state *s, const struct signals_params *p, int64_t now_us, uint32_t net_key,
                     const char *country);

/* One message of the login as the database's feed reports it (any host's,
 * this host's included), made at at_us: its network and country count
 * as in signals_observe (a set: seeing a message twice changes nothing),
 * and it counts toward feed_cur or feed_prev, whichever window holds
 * at_us (older: not counted); a message older than the window behind the
 * newest seen counts toward no network or country. The feed reads each
 * row once. */
void signals_feed(struct signals_state *s, const struct signals_params *p, int64_t at_us, uint32_t net_key,
                  const char *country);

/* Fold a completed window of count messages into a baseline (x 256) of
 * history windows, by the rules above (a jump is not folded, probation
 * caps): false when it is not folded. The database's fold uses it too. */
bool signals_fold_window(const struct signals_params *p, uint32_t count, uint32_t *baseline_q8, uint32_t *history);

/* Distinct networks seen in the window at now_us: 0..SIGNALS_NETS, where
 * SIGNALS_NETS means at least that many. */
unsigned signals_spread(const struct signals_state *s, const struct signals_params *p, int64_t now_us);

/* Distinct countries seen in the window: 0..SIGNALS_COUNTRIES, the same way. */
unsigned signals_countries(const struct signals_state *s, const struct signals_params *p, int64_t now_us);

enum signals_verdict {
    SIGNALS_RATE_OK,
    SIGNALS_RATE_PROBATION,     /* history < min_history and rate > probation */
    SIGNALS_RATE_JUMP,          /* history >= min_history, rate > baseline x multiple and > jump_floor */
};

struct signals_rate {
    uint32_t rate;              /* messages in the sliding window ending now */
    uint32_t baseline_q8;       /* the EWMA, x 256 */
    uint32_t ratio_pct;         /* rate / baseline x 100 (0 without a baseline; saturating) */
    uint32_t history;           /* active windows in the baseline */
    enum signals_verdict verdict;
};

/* The rate at now_us against the login's baseline, after folding the
 * windows completed since the last call into it (so it writes the state,
 * as window_count does). */
struct signals_rate signals_rate(struct signals_state *s, const struct signals_params *p, int64_t now_us);

/* An operator's clear: forget the networks, countries and the counts of
 * the current and previous rate windows. The baseline and its history
 * stay (they are the login's past, kept in its database row); to forget
 * them too, signals_set_baseline(s, 0, 0). */
void signals_clear(struct signals_state *s);

/* The baseline as the database keeps it, and adopting the database's
 * (on load and after another host folded a window); history saturates. */
void signals_get_baseline(const struct signals_state *s, uint32_t *baseline_q8, uint32_t *history);
void signals_set_baseline(struct signals_state *s, uint32_t baseline_q8, uint32_t history);

#endif
