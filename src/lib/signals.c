/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * signals.c - per-login spread, countries and rate against the login's
 * own baseline (see signals.h). Every function is O(SIGNALS_NETS +
 * SIGNALS_COUNTRIES) whatever the time passed in: a forged or far-away
 * timestamp cannot stall a caller holding the cache lock.
 *
 * The 16-bit minute stamps are read relative to last_minute: a slot's
 * unix minute is last_minute - (uint16_t)(last_minute - stamp). That is
 * unambiguous because signals_observe frees every slot older than the
 * window (at most SIGNALS_WINDOW_MAX_S, far below 65536 minutes) before
 * it moves last_minute, and the readers treat a last_minute a window or
 * more in the past as "nothing in the window" without looking at stamps.
 */
#include "signals.h"
#include "util.h"

#include <netinet/in.h>
#include <string.h>

static uint32_t sat_add32(uint32_t a, uint32_t b)
{
    return a > UINT32_MAX - b ? UINT32_MAX : a + b;
}

static uint32_t window_s(const struct signals_params *p)
{
    uint32_t w = p->window_s;
    return w < SIGNALS_WINDOW_MIN_S ? SIGNALS_WINDOW_MIN_S : w > SIGNALS_WINDOW_MAX_S ? SIGNALS_WINDOW_MAX_S : w;
}

/* The window in whole minutes, rounded up. */
static uint32_t window_min(const struct signals_params *p)
{
    return (window_s(p) + 59) / 60;
}

/* Unix seconds of now_us; 0 before 1970, UINT32_MAX after 2106. */
static uint32_t unix_s(int64_t now_us)
{
    if (now_us <= 0)
        return 0;
    int64_t s = now_us / 1000000;
    return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

/* The unix minute of a stamp, relative to last. */
static uint32_t stamp_minute(uint32_t last, uint16_t stamp)
{
    return last - (uint16_t)(last - stamp);
}

uint32_t signals_network_key(const struct sockaddr *sa, unsigned v4_prefix, unsigned v6_prefix)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    uint8_t buf[2 + 16] = {0};
    const uint8_t *addr;
    unsigned len, prefix;

    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        addr = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        len = 4;
    } else if (sa->sa_family == AF_INET6) {
        addr = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        len = 16;
        if (memcmp(addr, mapped, sizeof(mapped)) == 0) {
            addr += 12;
            len = 4;
        }
    } else {
        return 0;
    }
    prefix = len == 4 ? (v4_prefix > 32 ? 32 : v4_prefix) : (v6_prefix > 128 ? 128 : v6_prefix);
    /* The family and the prefix are hashed too: an IPv4 /24 and an IPv6
     * /64 that share their bytes are different networks. */
    buf[0] = (uint8_t)len;
    buf[1] = (uint8_t)prefix;
    for (unsigned i = 0; i < len && i * 8 < prefix; i++) {
        unsigned bits = prefix - i * 8;
        buf[2 + i] = bits >= 8 ? addr[i] : (uint8_t)(addr[i] & (0xff00u >> bits));
    }
    uint64_t h = fnv1a64(buf, 2 + len);
    uint32_t key = (uint32_t)(h ^ (h >> 32));
    return key ? key : 1;
}

/* Free every slot that left the window at minute now (now >= last). */
static void prune(struct signals_state *s, uint32_t now, uint32_t w)
{
    for (int i = 0; i < SIGNALS_NETS; i++)
        if (s->net_key[i] && now - stamp_minute(s->last_minute, s->net_minute[i]) >= w) {
            s->net_key[i] = 0;
            s->net_minute[i] = 0;
        }
    for (int i = 0; i < SIGNALS_COUNTRIES; i++)
        if (s->country[i][0] && now - stamp_minute(s->last_minute, s->country_minute[i]) >= w) {
            memset(s->country[i], 0, sizeof(s->country[i]));
            s->country_minute[i] = 0;
        }
}

/* The slot of key in a table: its own, else a free one, else the oldest
 * (all stamps are then within the window of now == last_minute). */
static int slot_of(const uint32_t *keys, const uint16_t *minutes, int n, uint32_t key, uint32_t now)
{
    int free_slot = -1, oldest = 0;
    uint16_t oldest_age = 0;
    for (int i = 0; i < n; i++) {
        if (keys[i] == key)
            return i;
        if (keys[i] == 0) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        uint16_t age = (uint16_t)(now - minutes[i]);
        if (age > oldest_age) {
            oldest_age = age;
            oldest = i;
        }
    }
    return free_slot >= 0 ? free_slot : oldest;
}

/* Two ASCII letters folded to upper case, as a table key; 0 otherwise. */
static uint32_t country_key(const char *cc)
{
    if (cc == NULL)
        return 0;
    unsigned char a = (unsigned char)cc[0], b = a ? (unsigned char)cc[1] : 0;
    if (b == 0 || cc[2] != '\0')
        return 0;
    a &= (unsigned char)~0x20;
    b &= (unsigned char)~0x20;
    if (a < 'A' || a > 'Z' || b < 'A' || b > 'Z')
        return 0;
    return (uint32_t)a << 8 | b;
}

/* How many of a window's count messages fold (0: the window is not folded). */
static uint32_t fold_count(const struct signals_params *p, uint32_t count, uint32_t baseline_q8, uint32_t history)
{
    if (history < p->min_history)    /* probation 0 is off: nothing to cap */
        return p->probation == 0 || count < p->probation ? count : p->probation;
    if (count > p->jump_floor &&
        (uint64_t)count * 100 * SIGNALS_BASELINE_ONE > (uint64_t)p->multiple_pct * baseline_q8)
        return 0;
    return count;
}

bool signals_fold_window(const struct signals_params *p, uint32_t count, uint32_t *baseline_q8, uint32_t *history)
{
    count = fold_count(p, count, *baseline_q8, *history);
    if (count == 0)
        return false;
    uint64_t x = (uint64_t)count * SIGNALS_BASELINE_ONE;
    uint64_t a = p->alpha_q16 == 0 ? 1 : p->alpha_q16 > SIGNALS_ALPHA_ONE ? SIGNALS_ALPHA_ONE : p->alpha_q16;
    /* The first window seeds the average: starting from 0 would take
     * some 1/alpha windows to forget a zero the login never sent. */
    uint64_t e = *history == 0 ? x
                               : ((uint64_t)*baseline_q8 * (SIGNALS_ALPHA_ONE - a) + x * a + SIGNALS_ALPHA_ONE / 2) /
                                     SIGNALS_ALPHA_ONE;
    *baseline_q8 = e > UINT32_MAX ? UINT32_MAX : (uint32_t)e;
    if (*history < UINT16_MAX)
        (*history)++;
    return true;
}

/* Fold one completed window of count messages into the state's baseline. */
static void fold(struct signals_state *s, const struct signals_params *p, uint32_t count)
{
    uint32_t b = s->baseline_q8, h = s->history;
    if (signals_fold_window(p, count, &b, &h))
        signals_set_baseline(s, b, h);
}

/* Move the rate windows to the one holding now: fold what completed. */
static void roll(struct signals_state *s, const struct signals_params *p, uint32_t now)
{
    uint32_t w = window_s(p), start = now - now % w;

    if (s->cur_start == 0 || (start < s->cur_start && s->cur_start - now >= w)) {
        /* First use, or a clock set back by a window or more: start afresh. */
        s->cur_start = start ? start : w;   /* 0 means unused: 1970's first window joins the second */
        s->cur_count = s->prev_count = 0;
        s->feed_cur = s->feed_prev = 0;
        return;
    }
    if (start <= s->cur_start)      /* the same window, or the clock set back a little */
        return;
    uint32_t done = s->cur_count > s->feed_cur ? s->cur_count : s->feed_cur;
    if (done > 0)                   /* idle windows are not folded (signals.h) */
        fold(s, p, done);
    bool next = start - s->cur_start == w;
    s->prev_count = next ? s->cur_count : 0;
    s->feed_prev = next ? s->feed_cur : 0;
    s->cur_count = s->feed_cur = 0;
    s->cur_start = start;
}

/* The network and the country seen at unix second now_s. */
static void seen(struct signals_state *s, const struct signals_params *p, uint32_t now_s, uint32_t net_key,
                 const char *country)
{
    uint32_t now = now_s / 60, w = window_min(p);

    if (s->last_minute != 0 && now < s->last_minute) {
        if (s->last_minute - now < w) {
            now = s->last_minute;   /* set back a little: counted at the newest time */
        } else {
            memset(s->net_key, 0, sizeof(s->net_key));
            memset(s->net_minute, 0, sizeof(s->net_minute));
            memset(s->country, 0, sizeof(s->country));
            memset(s->country_minute, 0, sizeof(s->country_minute));
            s->last_minute = 0;
        }
    }
    uint32_t ckey = country_key(country);
    if (net_key == 0 && ckey == 0)
        return;
    if (s->last_minute != 0)
        prune(s, now, w);
    s->last_minute = now;

    if (net_key != 0) {
        int i = slot_of(s->net_key, s->net_minute, SIGNALS_NETS, net_key, now);
        s->net_key[i] = net_key;
        s->net_minute[i] = (uint16_t)now;
    }
    if (ckey != 0) {
        uint32_t keys[SIGNALS_COUNTRIES];
        for (int i = 0; i < SIGNALS_COUNTRIES; i++)
            keys[i] = (uint32_t)(unsigned char)s->country[i][0] << 8 | (unsigned char)s->country[i][1];
        int i = slot_of(keys, s->country_minute, SIGNALS_COUNTRIES, ckey, now);
        s->country[i][0] = (char)(ckey >> 8);
        s->country[i][1] = (char)(ckey & 0xff);
        s->country_minute[i] = (uint16_t)now;
    }
}

void signals_observe(struct signals_state *s, const struct signals_params *p, int64_t now_us, uint32_t net_key,
                     const char *country)
{
    uint32_t now_s = unix_s(now_us);
    roll(s, p, now_s);
    s->cur_count = sat_add32(s->cur_count, 1);
    seen(s, p, now_s, net_key, country);
}

void signals_feed(struct signals_state *s, const struct signals_params *p, int64_t at_us, uint32_t net_key,
                  const char *country)
{
    uint32_t at = unix_s(at_us), w = window_s(p), start = at - at % w;
    if (s->cur_start == 0 || start > s->cur_start)
        roll(s, p, at);
    if (start == s->cur_start)
        s->feed_cur = sat_add32(s->feed_cur, 1);
    else if (start + w == s->cur_start)
        s->feed_prev = sat_add32(s->feed_prev, 1);
    /* A row older than the window counts toward no network: unlike a
     * clock set back, it must not make the tables start afresh. */
    if (s->last_minute == 0 || at / 60 + window_min(p) > s->last_minute)
        seen(s, p, at, net_key, country);
}

/* The minute to count from, or 0 when nothing can be in the window. */
static uint32_t reader_minute(const struct signals_state *s, const struct signals_params *p, int64_t now_us)
{
    uint32_t now = unix_s(now_us) / 60, w = window_min(p);
    if (s->last_minute == 0)
        return 0;
    if (now < s->last_minute)       /* as signals_observe would count it */
        return s->last_minute - now < w ? s->last_minute : 0;
    return now - s->last_minute < w ? now : 0;
}

unsigned signals_spread(const struct signals_state *s, const struct signals_params *p, int64_t now_us)
{
    uint32_t now = reader_minute(s, p, now_us), w = window_min(p);
    unsigned n = 0;
    if (now == 0)
        return 0;
    for (int i = 0; i < SIGNALS_NETS; i++)
        n += s->net_key[i] && now - stamp_minute(s->last_minute, s->net_minute[i]) < w;
    return n;
}

unsigned signals_countries(const struct signals_state *s, const struct signals_params *p, int64_t now_us)
{
    uint32_t now = reader_minute(s, p, now_us), w = window_min(p);
    unsigned n = 0;
    if (now == 0)
        return 0;
    for (int i = 0; i < SIGNALS_COUNTRIES; i++)
        n += s->country[i][0] && now - stamp_minute(s->last_minute, s->country_minute[i]) < w;
    return n;
}

struct signals_rate signals_rate(struct signals_state *s, const struct signals_params *p, int64_t now_us)
{
    uint32_t now = unix_s(now_us), w = window_s(p);
    struct signals_rate r = {0};

    roll(s, p, now);
    uint32_t elapsed = now > s->cur_start ? now - s->cur_start : 0;
    if (elapsed > w)
        elapsed = w;
    uint32_t cur = s->cur_count > s->feed_cur ? s->cur_count : s->feed_cur;
    uint32_t prev = s->prev_count > s->feed_prev ? s->prev_count : s->feed_prev;
    uint64_t rate = cur + (uint64_t)prev * (w - elapsed) / w;
    r.rate = rate > UINT32_MAX ? UINT32_MAX : (uint32_t)rate;
    r.baseline_q8 = s->baseline_q8;
    r.history = s->history;
    if (s->baseline_q8 > 0) {
        uint64_t ratio = (uint64_t)r.rate * 100 * SIGNALS_BASELINE_ONE / s->baseline_q8;
        r.ratio_pct = ratio > UINT32_MAX ? UINT32_MAX : (uint32_t)ratio;
    }
    if (s->history < p->min_history)
        r.verdict = r.rate > p->probation ? SIGNALS_RATE_PROBATION : SIGNALS_RATE_OK;
    else if (r.rate > p->jump_floor &&
             (uint64_t)r.rate * 100 * SIGNALS_BASELINE_ONE > (uint64_t)p->multiple_pct * s->baseline_q8)
        r.verdict = SIGNALS_RATE_JUMP;
    else
        r.verdict = SIGNALS_RATE_OK;
    return r;
}

void signals_clear(struct signals_state *s)
{
    uint32_t baseline = s->baseline_q8;
    uint16_t history = s->history;
    memset(s, 0, sizeof(*s));
    s->baseline_q8 = baseline;
    s->history = history;
}

void signals_get_baseline(const struct signals_state *s, uint32_t *baseline_q8, uint32_t *history)
{
    *baseline_q8 = s->baseline_q8;
    *history = s->history;
}

void signals_set_baseline(struct signals_state *s, uint32_t baseline_q8, uint32_t history)
{
    s->baseline_q8 = baseline_q8;
    s->history = history > UINT16_MAX ? UINT16_MAX : (uint16_t)history;
}
