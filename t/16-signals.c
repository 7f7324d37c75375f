/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 16-signals.c - the per-login signals of issue 29 (pure core): network
 * keys (/24, /64, IPv4-mapped, settable prefixes), spread of a botnet
 * against a roaming user, the window's exact edges, eviction and
 * saturation at SIGNALS_NETS (checked against a brute-force count at
 * every step), countries, the EWMA baseline (seeding, steady ratio, a
 * 10x jump, probation, idle windows, alpha), clear, and the clock
 * jumping (16-bit stamps that must not wrap into "fresh").
 */
#include "signals.h"
#include "netaddr.h"
#include "tap.h"

#include <string.h>

#define T0 1767225600LL             /* 2026-01-01 00:00:00 UTC: a whole hour */
#define US(s) ((int64_t)(s) * 1000000)

static uint32_t key(const char *addr, unsigned v4, unsigned v6)
{
    struct sockaddr_storage ss;
    if (!sockaddr_parse_host(addr, &ss)) {
        diag("cannot parse %s", addr);
        return 0;
    }
    return signals_network_key((struct sockaddr *)&ss, v4, v6);
}

static void test_keys(void)
{
    static const struct {
        const char *a, *b;
        unsigned v4, v6;
        bool same;
        const char *what;
    } cases[] = {
        {"192.0.2.7", "192.0.2.200", 24, 64, true, "IPv4: one /24"},
        {"192.0.2.7", "192.0.3.7", 24, 64, false, "IPv4: two /24s"},
        {"::ffff:192.0.2.7", "192.0.2.99", 24, 64, true, "IPv4-mapped IPv6 is the IPv4"},
        {"::ffff:192.0.3.7", "192.0.2.99", 24, 64, false, "IPv4-mapped IPv6 in another /24"},
        {"::c000:207", "192.0.2.7", 24, 64, false, "IPv4-compatible (not mapped) is IPv6"},
        {"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", 24, 64, true, "IPv6: one /64"},
        {"2001:db8:1:2::1", "2001:db8:1:3::1", 24, 64, false, "IPv6: two /64s"},
        {"192.0.2.7", "192.0.3.7", 16, 64, true, "IPv4 /16 settable"},
        {"2001:db8:1:2::1", "2001:db8:1:3::1", 24, 48, true, "IPv6 /48 settable"},
        {"192.0.2.7", "192.0.2.8", 32, 64, false, "IPv4 /32: hosts"},
        {"192.0.2.7", "192.0.2.7", 99, 64, true, "IPv4 prefix clamped to 32"},
        {"192.0.2.7", "192.0.2.1", 28, 64, true, "IPv4 /28: a partial byte"},
        {"192.0.2.7", "192.0.2.17", 28, 64, false, "IPv4 /28: the next /28"},
        {"2001:db8::1", "2001:db8::2", 24, 200, false, "IPv6 prefix clamped to 128"},
        {"10.0.0.1", "203.0.113.9", 0, 64, true, "IPv4 /0: one network"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t a = key(cases[i].a, cases[i].v4, cases[i].v6), b = key(cases[i].b, cases[i].v4, cases[i].v6);
        ok(a != 0 && b != 0 && (a == b) == cases[i].same, "key: %s (%s, %s)", cases[i].what, cases[i].a, cases[i].b);
    }
    struct sockaddr_storage un = {.ss_family = AF_UNIX};
    is_long(signals_network_key((struct sockaddr *)&un, 24, 64), 0, "key: AF_UNIX is 0 (no network)");
    is_long(signals_network_key(NULL, 24, 64), 0, "key: NULL is 0");
}

/* The botnet of issue 29: one login, 342 distinct /24s, 2 messages each,
 * 5 s apart. Compared at every step with a brute-force count, capped. */
static void test_botnet(void)
{
    struct signals_params p = SIGNALS_PARAMS_DEFAULT;
    struct signals_state s = {0};
    enum { NETS = 342 };
    static int64_t last_seen[NETS];
    int first20 = -1, mismatches = 0;
    unsigned max = 0;
    int64_t t = T0;

    for (int i = 0; i < NETS; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "10.%d.%d.1", i >> 8, i & 255);
        for (int m = 0; m < 2; m++, t += 5) {
            signals_observe(&s, &p, US(t), key(addr, 24, 64), NULL);
            last_seen[i] = t;
            unsigned got = signals_spread(&s, &p, US(t));
            if (got >= 20 && first20 < 0)
                first20 = i + 1;
            if (got > max)
                max = got;
        }
    }
    is_long(first20, 20, "botnet: spread 20 reached at its 20th distinct network");
    is_long(max, SIGNALS_NETS, "botnet: spread saturates at %d (at least %d)", SIGNALS_NETS, SIGNALS_NETS);
    is_long(signals_spread(&s, &p, US(t)), SIGNALS_NETS, "botnet: 342 networks in the hour read as %d", SIGNALS_NETS);
    /* After the last message: decays exactly as min(true count, K). */
    unsigned at_k_until = 0;
    for (int64_t q = t; q <= t + 3700; q += 10) {
        unsigned want = 0;
        for (int i = 0; i < NETS; i++)
            want += q / 60 - last_seen[i] / 60 < 60;
        want = want < SIGNALS_NETS ? want : SIGNALS_NETS;
        unsigned got = signals_spread(&s, &p, US(q));
        mismatches += got != want;
        if (got == SIGNALS_NETS)
            at_k_until = (unsigned)(q - t);
    }
    is_long(mismatches, 0, "botnet: while it ages out, spread == min(true distinct count, %d) every 10 s", SIGNALS_NETS);
    is_long(signals_spread(&s, &p, US(t + 3600)), 0, "botnet: nothing left an hour after the last message");
    ok(at_k_until > 0 && at_k_until < 3600, "botnet: stays at %d for %u s after the last message", SIGNALS_NETS,
       at_k_until);
}

/* A roaming user: a message every 10 minutes for 7 days from 6 networks
 * a day (4 h each): spread 2 only in the hour after each change. */
static void test_roaming(void)
{
    struct signals_params p = SIGNALS_PARAMS_DEFAULT;
    struct signals_state s = {0};
    static const char *nets[6] = {"192.0.2.10", "198.51.100.20", "203.0.113.30", "2001:db8:a::1",
                                  "2001:db8:b::1", "100.64.1.1"};
    unsigned max = 0, twos = 0, countries_max = 0;
    for (int64_t t = T0; t < T0 + 7 * 86400; t += 600) {
        signals_observe(&s, &p, US(t), key(nets[(t - T0) / 14400 % 6], 24, 64), "CH");
        unsigned got = signals_spread(&s, &p, US(t));
        max = got > max ? got : max;
        twos += got == 2;
        unsigned c = signals_countries(&s, &p, US(t));
        countries_max = c > countries_max ? c : countries_max;
    }
    is_long(max, 2, "roaming: 6 networks a day, spread at most 2 in a 1 h window");
    is_long(twos, 41 * 5, "roaming: spread 2 at 5 messages after each of the 41 changes");
    is_long(countries_max, 1, "roaming: one country");
}

/* Events, then a spread at a time: the window's edges to the second. */
static void test_edges(void)
{
    static const struct {
        int64_t seen[3];            /* seconds after T0 of A, B, C; -1 = not seen */
        int64_t at;
        unsigned want;
        const char *what;
    } cases[] = {
        {{0, 1800, -1}, 3599, 2, "A at 0, B at 30 min: both at 59:59"},
        {{0, 1800, -1}, 3600, 1, "A ages out exactly at 1:00:00"},
        {{0, 1800, -1}, 5399, 1, "B still at 1:29:59"},
        {{0, 1800, -1}, 5400, 0, "B ages out exactly at 1:30:00"},
        {{59, -1, -1}, 3599, 1, "seen at 0:59: counted at 59:59"},
        {{59, -1, -1}, 3600, 0, "seen at 0:59: gone at 1:00:00 (window - 59 s)"},
        {{60, -1, -1}, 3659, 1, "seen at 1:00: counted at 1:00:59"},
        {{0, -1, 3000}, 3000, 2, "A at 0 and C at 50 min: 2"},
        {{0, -1, -1}, 65536LL * 60, 0, "65536 minutes later: the 16-bit stamp does not wrap into fresh"},
        {{0, -1, -1}, -600, 1, "a query with the clock 10 min back: counted as now"},
        {{0, -1, -1}, -3600, 0, "a query with the clock an hour back: nothing"},
    };
    struct signals_params p = SIGNALS_PARAMS_DEFAULT;
    uint32_t k[3] = {key("192.0.2.1", 24, 64), key("198.51.100.1", 24, 64), key("203.0.113.1", 24, 64)};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct signals_state s = {0};
        for (int n = 0; n < 3; n++)
            if (cases[i].seen[n] >= 0)
                signals_observe(&s, &p, US(T0 + cases[i].seen[n]), k[n], NULL);
        is_long(signals_spread(&s, &p, US(T0 + cases[i].at)), cases[i].want, "edges: %s", cases[i].what);
    }

    /* A network seen again is refreshed; two addresses of one /64 are one. */
    struct signals_state s = {0};
    signals_observe(&s, &p, US(T0), key("2001:db8:1:2::1", 24, 64), NULL);
    signals_observe(&s, &p, US(T0 + 1200), key("2001:db8:1:2::99", 24, 64), NULL);
    is_long(signals_spread(&s, &p, US(T0 + 1200)), 1, "edges: two addresses in one /64 are one network");
    is_long(signals_spread(&s, &p, US(T0 + 4799)), 1, "edges: seen again at 20 min, counted until 1:19:59");
    is_long(signals_spread(&s, &p, US(T0 + 4800)), 0, "edges: and gone at 1:20:00");

    /* The clock set back: a little counts at the newest time, a lot starts afresh. */
    memset(&s, 0, sizeof(s));
    signals_observe(&s, &p, US(T0 + 600), k[0], "CH");
    signals_observe(&s, &p, US(T0 + 570), k[1], "DE");
    is_long(signals_spread(&s, &p, US(T0 + 600)), 2, "clock 30 s back: both networks");
    is_long(signals_spread(&s, &p, US(T0 + 4199)), 2, "clock 30 s back: B counted from 10:00 (the newest time)");
    signals_observe(&s, &p, US(T0 - 7200), k[2], "FR");
    is_long(signals_spread(&s, &p, US(T0 - 7200)), 1, "clock 2 h back: the networks start afresh");
    is_long(signals_countries(&s, &p, US(T0 - 7200)), 1, "clock 2 h back: the countries too");
    signals_observe(&s, &p, US(T0 + 65536LL * 60 + 30), k[0], NULL);
    is_long(signals_spread(&s, &p, US(T0 + 65536LL * 60 + 30)), 1, "45.5 days later: the old slot is not resurrected");

    /* A window of 90 s is 2 minutes; 30 s is raised to 1 minute. */
    struct signals_params p90 = p, p30 = p;
    p90.window_s = 90;
    p30.window_s = 30;
    memset(&s, 0, sizeof(s));
    signals_observe(&s, &p90, US(T0), k[0], NULL);
    is_long(signals_spread(&s, &p90, US(T0 + 119)), 1, "window 90 s: rounded up to 2 minutes (1:59)");
    is_long(signals_spread(&s, &p90, US(T0 + 120)), 0, "window 90 s: gone at 2:00");
    is_long(signals_spread(&s, &p30, US(T0 + 60)), 0, "window 30 s: clamped to 60 s");
}

/* Full tables: the oldest slot goes, the count stays exact below K. */
static void test_eviction(void)
{
    struct signals_params p = SIGNALS_PARAMS_DEFAULT;
    struct signals_state s = {0};
    uint32_t k[SIGNALS_NETS + 1];
    for (int i = 0; i <= SIGNALS_NETS; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "172.16.%d.1", i);
        k[i] = key(addr, 24, 64);
        signals_observe(&s, &p, US(T0 + 60 * i), k[i], NULL);    /* net i at minute i */
    }
    is_long(signals_spread(&s, &p, US(T0 + 60 * SIGNALS_NETS)), SIGNALS_NETS, "eviction: 25 networks read as 24");
    signals_observe(&s, &p, US(T0 + 60 * 25), k[0], NULL);      /* net 0 again: evicts net 1 */
    is_long(signals_spread(&s, &p, US(T0 + 60 * 25)), SIGNALS_NETS, "eviction: the first network back, still 24");
    is_long(signals_spread(&s, &p, US(T0 + 60 * 61)), 24, "eviction: minute 61: nets 2..24 and net 0 (24, exact)");
    is_long(signals_spread(&s, &p, US(T0 + 60 * 62)), 23, "eviction: minute 62: net 2 gone, 23");
    is_long(signals_spread(&s, &p, US(T0 + 60 * 84)), 1, "eviction: minute 84: only net 0");
    is_long(signals_spread(&s, &p, US(T0 + 60 * 85)), 0, "eviction: minute 85: none");
}

static void test_countries(void)
{
    struct signals_params p = SIGNALS_PARAMS_DEFAULT;
    struct signals_state s = {0};
    static const char *codes[] = {"CH", "de", "DE", "us", NULL, "X", "USA", "1A", "", "C\xc3", "d-"};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        signals_observe(&s, &p, US(T0 + (int64_t)i), 0, codes[i]);
    is_long(signals_countries(&s, &p, US(T0 + 20)), 3, "countries: CH, DE (any case), US; the rest ignored");
    is_long(signals_spread(&s, &p, US(T0 + 20)), 0, "countries: net key 0 (allowlisted) adds no spread");
    is_long(signals_rate(&s, &p, US(T0 + 20)).rate, 11, "countries: but every message counts toward the rate");
    ok(s.country[0][0] == 'C' && s.country[0][1] == 'H' && s.country[1][0] == 'D' && s.country[1][1] == 'E',
       "countries: kept in upper case");

    static const char *many[] = {"AT", "BE", "CH", "DE", "DK", "ES", "FI", "FR", "GB", "IT", "NL", "PL", "SE"};
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 13; i++)
        signals_observe(&s, &p, US(T0 + 60 * i), 0, many[i]);   /* country i at minute i */
    is_long(signals_countries(&s, &p, US(T0 + 60 * 12)), SIGNALS_COUNTRIES, "countries: 13 read as 12 (at least)");
    is_long(signals_countries(&s, &p, US(T0 + 60 * 60)), 12, "countries: minute 60: 1..12 still in (exact)");
    is_long(signals_countries(&s, &p, US(T0 + 60 * 61)), 11, "countries: minute 61: 11");
    is_long(signals_countries(&s, &p, US(T0 + 60 * 72)), 0, "countries: minute 72: none");
}

static void send_evenly(struct signals_state *s, const struct signals_params *p, int64_t start, int n)
{
    for (int i = 0; i < n; i++)
        signals_observe(s, p, US(start + (int64_t)i * 3600 / n), 0, NULL);
}

static void test_baseline(void)
{
    struct signals_params p = {.window_s = 3600, .alpha_q16 = 8192, .min_history = 8, .multiple_pct = 500,
                               .probation = 50};
    struct signals_state s = {0};
    struct signals_rate r;

    /* Steady 20 an hour for 24 hours, then half of hour 25. */
    for (int h = 0; h < 24; h++)
        send_evenly(&s, &p, T0 + 3600 * h, 20);
    int64_t h24 = T0 + 3600 * 24;
    for (int i = 0; i < 10; i++)
        signals_observe(&s, &p, US(h24 + 180 * i), 0, NULL);
    r = signals_rate(&s, &p, US(h24 + 1800));
    is_long(r.history, 24, "steady: 24 windows of history");
    is_long(r.baseline_q8, 20 * 256, "steady: baseline 20 messages a window (x 256)");
    is_long(r.rate, 20, "steady: mid-window rate 10 + 20 x 1/2");
    is_long(r.ratio_pct, 100, "steady: ratio 1.00");
    is_long(r.verdict, SIGNALS_RATE_OK, "steady: ok");
    for (int i = 10; i < 20; i++)
        signals_observe(&s, &p, US(h24 + 180 * i), 0, NULL);

    /* Hour 26: ten times as much (200, one every 18 s). */
    int64_t h25 = T0 + 3600 * 25;
    int first_jump = -1;
    for (int i = 0; i < 200; i++) {
        signals_observe(&s, &p, US(h25 + 18 * i), 0, NULL);
        r = signals_rate(&s, &p, US(h25 + 18 * i));
        if (r.verdict != SIGNALS_RATE_OK && first_jump < 0) {
            first_jump = i + 1;
            is_long(r.verdict, SIGNALS_RATE_JUMP, "10x: the verdict is a jump");
            is_long(r.rate, 101, "10x: at rate 101 (90 + 20 x 1998/3600 = 11 prorated, floor)");
            is_long(r.ratio_pct, 505, "10x: ratio 5.05");
        }
    }
    is_long(first_jump, 90, "10x: reported at the 90th message, 26:42 into its first window");
    r = signals_rate(&s, &p, US(h25 + 3599));
    is_long(r.rate, 200, "10x: 200 in the window");
    is_long(r.ratio_pct, 1000, "10x: ratio 10.00");

    /* Clear: signals go, the baseline stays. */
    signals_observe(&s, &p, US(h25 + 3599), key("192.0.2.1", 24, 64), "CH");
    ok(signals_spread(&s, &p, US(h25 + 3599)) == 1 && signals_countries(&s, &p, US(h25 + 3599)) == 1,
       "clear: a network and a country before");
    signals_clear(&s);
    struct signals_state want = {.baseline_q8 = 20 * 256, .history = 25};
    ok(memcmp(&s, &want, sizeof(s)) == 0, "clear: all zero but the baseline (20 x 256) and its 25 windows");
    ok(signals_spread(&s, &p, US(h25 + 3599)) == 0 && signals_countries(&s, &p, US(h25 + 3599)) == 0,
       "clear: no network, no country");
    r = signals_rate(&s, &p, US(h25 + 3599));
    ok(r.rate == 0 && r.history == 25 && r.baseline_q8 == 20 * 256 && r.verdict == SIGNALS_RATE_OK,
       "clear: rate 0, baseline and history kept");
    uint32_t b, hist;
    signals_set_baseline(&s, 0, 0);
    signals_get_baseline(&s, &b, &hist);
    ok(b == 0 && hist == 0, "clear: set_baseline(0, 0) forgets the history too");

    /* Probation: a newcomer may send 50 an hour until 8 windows of history. */
    memset(&s, 0, sizeof(s));
    int first_prob = -1;
    for (int w = 0; w < 9; w++) {
        int n = w == 7 || w == 8 ? 60 : 20;
        for (int i = 0; i < n; i++) {
            signals_observe(&s, &p, US(T0 + 3600 * w + (int64_t)i * 3600 / n), 0, NULL);
            r = signals_rate(&s, &p, US(T0 + 3600 * w + (int64_t)i * 3600 / n));
            if (r.verdict != SIGNALS_RATE_OK && first_prob < 0) {
                first_prob = w * 1000 + i + 1;
                is_long(r.verdict, SIGNALS_RATE_PROBATION, "probation: the verdict");
                is_long(r.history, 7, "probation: with 7 windows of history");
            }
        }
        if (w == 7)
            is_long(first_prob, 7000 + 46, "probation: window 8, the 46th message (46 + 20 x 1/4 prorated = 51)");
        if (w == 8) {
            is_long(r.history, 8, "probation over: 8 windows");
            is_long(r.baseline_q8, 6080, "probation over: the window of 60 folds as 50 (probation caps it): "
                                         "20 x 7/8 + 50 x 1/8 = 23.75 (x 256)");
            is_long(r.verdict, SIGNALS_RATE_OK, "probation over: 60 an hour is under 5 x 23.75");
        }
    }
    is_long(first_prob, 7046, "probation: nothing reported in window 9 (history 8)");

    /* Seeding, alpha, idle windows. */
    memset(&s, 0, sizeof(s));
    send_evenly(&s, &p, T0, 40);
    send_evenly(&s, &p, T0 + 3600, 20);
    signals_observe(&s, &p, US(T0 + 7200), 0, NULL);
    signals_get_baseline(&s, &b, &hist);
    ok(b == 9600 && hist == 2, "seed: 40 then 20: 40 x 7/8 + 20 x 1/8 = 37.5 (9600), history 2 (got %u, %u)", b,
       hist);
    r = signals_rate(&s, &p, US(T0 + 7200 + 5 * 3600));
    is_long(r.history, 3, "idle: five idle windows after one message: only that window folded");
    is_long(r.baseline_q8, 8432, "idle: 37.5 x 7/8 + 1 x 1/8 = 32.9375 (8432)");
    is_long(r.rate, 0, "idle: no previous window to prorate after a gap");
    struct signals_params one = p;
    one.alpha_q16 = SIGNALS_ALPHA_ONE;
    memset(&s, 0, sizeof(s));
    send_evenly(&s, &one, T0, 40);
    send_evenly(&s, &one, T0 + 3600, 20);
    r = signals_rate(&s, &one, US(T0 + 7200));
    is_long(r.baseline_q8, 20 * 256, "alpha 1: the baseline is the last window");

    /* A burst across a boundary is not halved. */
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 100; i++)
        signals_observe(&s, &p, US(T0 + 3000 + 6 * i), 0, NULL);
    r = signals_rate(&s, &p, US(T0 + 3600 + 300));
    is_long(r.rate, 91, "boundary: 100 in the last 10 min, 5 min later: 100 x 55/60 = 91");
    is_long(r.verdict, SIGNALS_RATE_PROBATION, "boundary: still over probation");

    /* Saturation of the history; the clock far back keeps the baseline. */
    signals_set_baseline(&s, 5120, 70000);
    signals_get_baseline(&s, &b, &hist);
    is_long(hist, 65535, "saturation: history saturates at 65535");
    send_evenly(&s, &p, T0 + 7200, 20);
    r = signals_rate(&s, &p, US(T0 + 10800));
    is_long(r.history, 65535, "saturation: and stays there when a window is folded");
    r = signals_rate(&s, &p, US(T0 - 86400));
    ok(r.rate == 0 && r.history == 65535 && r.baseline_q8 == 5120, "clock a day back: counts afresh, baseline kept");
}

/* The fold's rules, as the database's fold uses them too: probation caps,
 * a jump is not folded, an ordinary window is. */
static void test_fold_rules(void)
{
    struct signals_params p = SIGNALS_PARAMS_DEFAULT;   /* min_history 8, x10, probation 100 */
    uint32_t b = 0, h = 0;
    ok(signals_fold_window(&p, 500, &b, &h) && b == 100 * 256 && h == 1,
       "fold: a newcomer's first window of 500 seeds the baseline with probation's 100");
    b = 20 * 256, h = 8;
    ok(!signals_fold_window(&p, 201, &b, &h) && b == 20 * 256 && h == 8,
       "fold: 201 against a baseline of 20 (over 10x and over probation) is a jump, not folded");
    ok(signals_fold_window(&p, 100, &b, &h) && b == (20 * 256 * 7 + 100 * 256 + 4) / 8 && h == 9,
       "fold: 100 (not over probation) is folded: 20 x 7/8 + 100 x 1/8");
}

/* The feed: every host's messages as the database tells them. */
static void test_feed(void)
{
    struct signals_params p = SIGNALS_PARAMS_DEFAULT;
    struct signals_state s;
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 5; i++)
        signals_observe(&s, &p, US(T0 + 100 + i), key("192.0.2.1", 24, 64), NULL);
    for (int i = 0; i < 12; i++)    /* this host's 5 among them, and other hosts' */
        signals_feed(&s, &p, US(T0 + 100 + i), key(i < 5 ? "192.0.2.1" : "198.51.100.1", 24, 64), NULL);
    signals_feed(&s, &p, US(T0 - 10), key("203.0.113.1", 24, 64), NULL);      /* the previous window */
    signals_feed(&s, &p, US(T0 - 3600 - 10), key("203.0.114.1", 24, 64), NULL);  /* older: no count */
    struct signals_rate r = signals_rate(&s, &p, US(T0 + 200));
    is_long(r.rate, 12 + 1 * (3600 - 200) / 3600, "feed: the window's count is the feed's 12 (over this host's 5), "
                                                  "plus the previous window's prorated");
    is_long(signals_spread(&s, &p, US(T0 + 200)), 3, "feed: its networks count, each once (seen twice: a set)");
    for (int i = 0; i < 20; i++)
        signals_observe(&s, &p, US(T0 + 300 + i), key("192.0.2.1", 24, 64), NULL);
    r = signals_rate(&s, &p, US(T0 + 400));
    is_long(r.rate, 25, "feed: this host's own 25 count once the feed lags behind them");
}

int main(void)
{
    is_long(sizeof(struct signals_state), SIGNALS_STATE_SIZE, "struct signals_state is %d bytes", SIGNALS_STATE_SIZE);
    test_keys();
    test_botnet();
    test_roaming();
    test_edges();
    test_eviction();
    test_countries();
    test_baseline();
    test_fold_rules();
    test_feed();
    return done_testing();
}
