/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 04-quota.c - the quota rules (PolicydRateGuard's vectors), saturation,
 * count_blocked, and when the first-block notification fires.
 */
#include "quota.h"
#include "windows.h"
#include <string.h>
#include "tap.h"

static void test_facts_vectors(void)
{
    uint32_t msg = 0, rcpt = 0;
    const uint32_t rcpts[] = {3, 2, 1, 1};
    const bool want[] = {false, false, true, true};

    for (int i = 0; i < 4; i++) {
        struct quota_decision d = quota_decide(5, 5, msg, rcpt, rcpts[i], true);
        is_long(d.blocked, want[i], "quota 5, message %d with %u recipients: %s", i + 1, rcpts[i],
                want[i] ? "blocked" : "accepted");
        msg += d.msg_delta;
        rcpt += d.rcpt_delta;
    }
    is_long(msg, 4, "msg_counter 4");
    is_long(rcpt, 7, "rcpt_counter 7");

    msg = rcpt = 0;
    int blocked_at = 0;
    for (int i = 1; i <= 6 && !blocked_at; i++) {
        struct quota_decision d = quota_decide(5, 5, msg, rcpt, 0, true);
        msg += d.msg_delta;
        if (d.blocked)
            blocked_at = i;
    }
    is_long(blocked_at, 6, "six 0-recipient messages: the sixth is blocked");
    ok(quota_decide(5, 5, 0, 0, 6, true).blocked, "a first message with 6 recipients is blocked");
    ok(!quota_decide(5, 5, 0, 0, 5, true).blocked, "5 recipients fit quota 5");
    ok(quota_decide(0, 0, 0, 0, 0, true).blocked, "quota 0 blocks everything");
    /* rateguard blocked: the next message of one recipient. */
    ok(!quota_next_refused(5, 5, 4, 4), "at 4 of 5 the next message passes");
    ok(quota_next_refused(5, 5, 5, 3), "at exactly 5 of 5 messages the next is refused");
    ok(quota_next_refused(5, 5, 2, 5), "at exactly 5 of 5 recipients the next is refused");
    ok(quota_next_refused(5, 5, 7, 7), "over the quota: refused");
    ok(!quota_next_refused(7, 7, 7 - 1, 6), "raised to 7 at 6 of 7: passes");
    ok(quota_next_refused(0, 0, 0, 0), "quota 0: refused");
}

static void test_count_blocked(void)
{
    struct quota_decision d = quota_decide(5, 5, 5, 5, 1, false);
    ok(d.blocked, "count_blocked false: blocked");
    is_long(d.msg_delta, 0, "count_blocked false: nothing added");
    is_long(d.rcpt_delta, 0, "count_blocked false: no recipients added");
    d = quota_decide(5, 5, 5, 5, 1, true);
    is_long(d.msg_delta, 1, "count_blocked true: message added");
    d = quota_decide(5, 5, 1, 1, 2, false);
    is_long(d.rcpt_delta, 2, "count_blocked false: accepted messages still count");
}

static void test_saturation(void)
{
    is_long(quota_sat_add(UINT32_MAX - 1, 5), UINT32_MAX, "saturating add caps");
    is_long(quota_sat_add(1, 2), 3, "saturating add adds");
    struct quota_decision d = quota_decide(UINT32_MAX, UINT32_MAX, UINT32_MAX, 0, 0, true);
    ok(!d.blocked, "counters at the maximum do not wrap into acceptance or blocking");
}

static void test_first_block(void)
{
    uint8_t notified = 0;
    ok(!quota_first_block(false, &notified), "accepted: no notification");
    ok(quota_first_block(true, &notified), "first block: notification");
    ok(!quota_first_block(true, &notified), "second block: none");
    ok(!quota_first_block(false, &notified), "accepted again (quota raised)");
    ok(quota_first_block(true, &notified), "blocked again after that: notification again");
}

static void test_warning_threshold(void)
{
    ok(!quota_warning_reached(10, 7, 80), "7 of 10 is below 80%%");
    ok(quota_warning_reached(10, 8, 80), "8 of 10 reaches 80%%");
    ok(quota_warning_reached(3, 3, 80), "3 of 3 is past 80%% (2.4 rounds up to 3)");
    ok(!quota_warning_reached(3, 2, 80), "2 of 3 is below 80%%");
    ok(!quota_warning_reached(10, 10, 0), "percent 0: no warning");
    ok(!quota_warning_reached(0, 5, 80), "quota 0: no warning (every message is a block)");
    ok(quota_warning_reached(UINT32_MAX, UINT32_MAX, 100), "no overflow at the maximum");
}

static void test_separate_quotas(void)
{
    ok(!quota_decide(3, 100, 2, 10, 5, true).blocked, "3rd message of 5 recipients: within 3 messages, 100 recipients");
    ok(quota_decide(3, 100, 3, 15, 1, true).blocked, "4th message: over 3 messages");
    ok(quota_decide(100, 10, 1, 8, 3, true).blocked, "11 recipients: over 10 recipients");
    ok(!quota_decide(100, 10, 1, 8, 2, true).blocked, "10 recipients: within 10");
}

static void test_window_parse(void)
{
    struct window_spec w;
    char err[160];
    ok(window_parse("100/3600", &w, err, sizeof(err)) && w.limit == 100 && w.seconds == 3600, "100/3600");
    ok(window_parse("1000/1d", &w, err, sizeof(err)) && w.limit == 1000 && w.seconds == 86400, "1000/1d");
    ok(window_parse("5/90s", &w, err, sizeof(err)) && w.seconds == 90, "5/90s");
    ok(window_parse("5/2h", &w, err, sizeof(err)) && w.seconds == 7200, "5/2h");
    ok(window_parse("5/30m", &w, err, sizeof(err)) && w.seconds == 1800, "5/30m");
    ok(!window_parse("0/1h", &w, err, sizeof(err)), "limit 0 refused");
    ok(!window_parse("5/0", &w, err, sizeof(err)), "length 0 refused");
    ok(!window_parse("5/1w", &w, err, sizeof(err)), "unknown unit refused");
    ok(!window_parse("5/367d", &w, err, sizeof(err)), "over 366 days refused");
    ok(!window_parse("-5/1h", &w, err, sizeof(err)), "negative refused");
    ok(!window_parse("5", &w, err, sizeof(err)), "no length refused");
    ok(!window_parse("5/1h ", &w, err, sizeof(err)), "trailing text refused");
}

static void test_window_count(void)
{
    struct window_spec s = {.limit = 3, .seconds = 100};    /* buckets of 10 s */
    struct window_counts w;
    memset(&w, 0, sizeof(w));
    int64_t t0 = 1700000000LL * 1000000;
    is_long(window_count(&w, &s, t0), 0, "empty window");
    window_add(&w, &s, t0, 1);
    window_add(&w, &s, t0 + 5000000, 2);
    is_long(window_count(&w, &s, t0 + 5000000), 3, "three in the window");
    is_long(window_count(&w, &s, t0 + 99000000), 3, "still three 99 s later");
    is_long(window_count(&w, &s, t0 + 111000000), 0, "gone once the whole bucket is older than the window");
    window_add(&w, &s, t0 + 120000000, 1);
    window_add(&w, &s, t0 + 170000000, 1);
    is_long(window_count(&w, &s, t0 + 225000000), 1, "the older one left, the newer stays");
    is_long(window_count(&w, &s, t0 + 10000000000LL), 0, "a long pause clears everything");
    window_add(&w, &s, t0 + 10030000000LL, 1);
    is_long(window_count(&w, &s, t0 + 10000000000LL), 1, "a clock set back 30 s counts into the newest bucket");
    window_add(&w, &s, t0, 1);
    is_long(window_count(&w, &s, t0), 1, "a clock set back by more than a window starts afresh");
    ok(windows_in_use(&w, sizeof(w)), "a window with a count is in use");
    memset(&w, 0, sizeof(w));
    w.head = 5;
    ok(!windows_in_use(&w, sizeof(w)), "a window of empty buckets is not");
}

int main(void)
{
    test_facts_vectors();
    test_count_blocked();
    test_saturation();
    test_first_block();
    test_warning_threshold();
    test_separate_quotas();
    test_window_parse();
    test_window_count();
    return done_testing();
}
