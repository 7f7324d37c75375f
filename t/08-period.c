/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 08-period.c - reset boundaries in local time, including the days the
 * clocks change (Europe/Zurich) and the turn of the year; the last
 * boundary before a time (table-driven, far past included), checked
 * against the loop over boundaries it replaces (issue 25).
 */
#include "period.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>

static time_t local(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
                    .tm_isdst = -1};
    return mktime(&tm);
}

static void show(time_t t, char *out, size_t size)
{
    struct tm tm;
    if (localtime_r(&t, &tm) == NULL)
        snprintf(out, size, "(%lld)", (long long)t);
    else
        strftime(out, size, "%Y-%m-%d %H:%M:%S %Z", &tm);
}

static void compare(time_t got, time_t want, const char *what)
{
    char g[80], w[80];
    show(got, g, sizeof(g));
    show(want, w, sizeof(w));
    is_str(g, w, "%s", what);
}

static void check(enum reset_schedule s, time_t now, time_t want, const char *what)
{
    compare(period_next_boundary(s, now), want, what);
}

/* What load_snapshot did before issue 25: one step per boundary. */
static time_t last_by_loop(enum reset_schedule s, time_t from, time_t now)
{
    time_t b = period_next_boundary(s, from);
    if (b == 0 || b > now)
        return 0;
    for (time_t next; (next = period_next_boundary(s, b)) != 0 && next <= now;)
        b = next;
    return b;
}

static const char *names[] = {"none", "hourly", "daily", "weekly", "monthly"};

int main(void)
{
    setenv("TZ", "Europe/Zurich", 1);
    tzset();

    time_t wed = local(2026, 11, 18, 14, 37);     /* a Wednesday */
    check(RESET_HOURLY, wed, local(2026, 11, 18, 15, 0), "hourly: next full hour");
    check(RESET_DAILY, wed, local(2026, 11, 19, 0, 0), "daily: next midnight");
    check(RESET_WEEKLY, wed, local(2026, 11, 22, 0, 0), "weekly: next Sunday 00:00");
    check(RESET_MONTHLY, wed, local(2026, 12, 1, 0, 0), "monthly: the 1st of next month");
    check(RESET_WEEKLY, local(2026, 11, 22, 0, 0), local(2026, 11, 29, 0, 0), "weekly at Sunday 00:00: a week later");
    check(RESET_WEEKLY, local(2026, 11, 21, 23, 59), local(2026, 11, 22, 0, 0), "weekly on Saturday night: hours away");
    check(RESET_MONTHLY, local(2026, 12, 15, 9, 0), local(2027, 1, 1, 0, 0), "monthly in December: January 1st");
    check(RESET_DAILY, local(2026, 12, 31, 23, 59), local(2027, 1, 1, 0, 0), "daily on New Year's Eve");
    check(RESET_DAILY, local(2026, 3, 28, 12, 0), local(2026, 3, 29, 0, 0), "daily before the spring change");
    check(RESET_HOURLY, local(2026, 3, 29, 1, 30), local(2026, 3, 29, 3, 0), "hourly across the missing hour 02:00");
    check(RESET_DAILY, local(2026, 10, 25, 12, 0), local(2026, 10, 26, 0, 0), "daily on the 25-hour day");
    is_long((long)(local(2026, 10, 26, 0, 0) - local(2026, 10, 25, 0, 0)), 25 * 3600, "that day has 25 hours");
    is_long((long)period_next_boundary(RESET_NONE, wed), 0, "none: no boundary");
    /* Clock steps: reset at 15:00 with the clock at 15:05, then stepped
     * back to 14:58: 15:00 is not due again; stepped 3 h forward: one
     * reset, at the next boundary, then the one after now. */
    time_t b15 = local(2026, 11, 18, 15, 0);
    is_long((long)period_next_reset(RESET_HOURLY, b15 - 120, b15), (long)(b15 + 3600),
            "clock back across a boundary reset: not due again, the next one is");
    is_long((long)period_next_reset(RESET_HOURLY, b15 - 120, 0), (long)b15, "nothing reset yet: the next full hour");
    is_long((long)period_next_reset(RESET_HOURLY, b15 + 3 * 3600 + 60, b15), (long)(b15 + 4 * 3600),
            "clock 3 h forward: the first boundary after now");
    is_long((long)period_next_reset(RESET_NONE, wed, b15), 0, "none: no reset");
    time_t fall_cest = local(2026, 10, 25, 1, 0) + 3600 + 1800;  /* 02:30 CEST, the first 02:30 */
    time_t fall_cet = fall_cest + 3600;                           /* 02:30 CET, the second */
    check(RESET_HOURLY, fall_cest, fall_cest + 1800, "hourly in the first 02:00 hour: the repeated 02:00 (CET)");
    check(RESET_HOURLY, fall_cet, fall_cet + 1800, "hourly in the repeated hour: 03:00 CET");

    /* The last boundary at or before now. */
    static struct {
        enum reset_schedule s;
        time_t now, want;
        const char *what;
    } last[32];
    size_t n = 0;
#define LAST(S, NOW, WANT, WHAT) last[n++] = (__typeof__(last[0])){S, NOW, WANT, WHAT}
    LAST(RESET_HOURLY, wed, local(2026, 11, 18, 14, 0), "hourly: this hour's start");
    LAST(RESET_DAILY, wed, local(2026, 11, 18, 0, 0), "daily: last midnight");
    LAST(RESET_WEEKLY, wed, local(2026, 11, 15, 0, 0), "weekly: last Sunday 00:00");
    LAST(RESET_MONTHLY, wed, local(2026, 11, 1, 0, 0), "monthly: the 1st of this month");
    LAST(RESET_HOURLY, local(2026, 11, 18, 14, 0), local(2026, 11, 18, 14, 0), "hourly on a boundary: itself");
    LAST(RESET_WEEKLY, local(2026, 11, 22, 0, 0), local(2026, 11, 22, 0, 0), "weekly at Sunday 00:00: itself");
    LAST(RESET_WEEKLY, local(2026, 11, 21, 23, 59), local(2026, 11, 15, 0, 0), "weekly on Saturday night");
    LAST(RESET_MONTHLY, local(2027, 1, 1, 0, 0) - 1, local(2026, 12, 1, 0, 0), "monthly on New Year's Eve");
    LAST(RESET_DAILY, local(2027, 1, 1, 0, 30), local(2027, 1, 1, 0, 0), "daily just after New Year");
    LAST(RESET_HOURLY, local(2026, 3, 29, 3, 30), local(2026, 3, 29, 3, 0), "hourly after the missing hour");
    LAST(RESET_DAILY, local(2026, 3, 29, 12, 0), local(2026, 3, 29, 0, 0), "daily on the 23-hour day");
    LAST(RESET_DAILY, local(2026, 10, 25, 23, 0), local(2026, 10, 25, 0, 0), "daily on the 25-hour day");
    LAST(RESET_HOURLY, fall_cest, fall_cest - 1800, "hourly in the first 02:00 hour (CEST)");
    LAST(RESET_HOURLY, fall_cet, fall_cet - 1800, "hourly in the repeated 02:00 hour (CET)");
    LAST(RESET_WEEKLY, local(2026, 3, 31, 8, 0), local(2026, 3, 29, 0, 0), "weekly across the spring change");
    LAST(RESET_MONTHLY, local(2026, 3, 31, 8, 0), local(2026, 3, 1, 0, 0), "monthly across the spring change");
    LAST(RESET_DAILY, local(1900, 6, 15, 12, 0), local(1900, 6, 15, 0, 0), "daily in 1900");
    LAST(RESET_HOURLY, local(1800, 6, 15, 12, 34), local(1800, 6, 15, 12, 0), "hourly in 1800 (local mean time)");
    LAST(RESET_MONTHLY, local(1, 3, 15, 12, 0), local(1, 3, 1, 0, 0), "monthly in the year 1");
    LAST(RESET_NONE, wed, 0, "none: no boundary");
#undef LAST
    for (size_t i = 0; i < n; i++)
        compare(period_last_boundary(last[i].s, last[i].now), last[i].want, last[i].what);

    /* INT64_MIN / 10^6 s is some 292,000 years back: the reason the loop
     * had to go. Answered at once, and a time the calendar cannot hold
     * gives 0, not garbage. */
    time_t far = (time_t)(-9223372036854775807LL / 1000000);
    ok(period_last_boundary(RESET_HOURLY, far) <= far && period_last_boundary(RESET_HOURLY, far) > far - 3600,
       "hourly, 292,000 years back: the start of that hour");
    ok(period_next_boundary(RESET_HOURLY, far) > far, "hourly, 292,000 years back: the next one after it");
    is_long((long)period_last_boundary(RESET_DAILY, (time_t)9223372036854775807LL), 0, "a time beyond the calendar: 0");
    is_long((long)period_next_boundary(RESET_DAILY, (time_t)9223372036854775807LL), 0, "next beyond the calendar: 0");

    /* Every schedule, every 7919 s over two years (both DST changes each
     * year): last <= t < next, the period's next boundary is t's, a
     * boundary is its own last, and the loop it replaces agrees. */
    static const time_t span[] = {0, 5 * 3600, 5 * 86400, 30 * 86400, 100 * 86400};  /* a few periods back */
    for (int s = RESET_HOURLY; s <= RESET_MONTHLY; s++) {
        int bad = 0, steps = 0;
        for (time_t t = local(2026, 1, 1, 0, 0); t < local(2028, 1, 1, 0, 0); t += 7919, steps++) {
            time_t l = period_last_boundary(s, t), nx = period_next_boundary(s, t);
            bool good = l <= t && t < nx && period_next_boundary(s, l) == nx && period_last_boundary(s, l) == l &&
                        last_by_loop(s, t - span[s], t) == l;
            if (!good && bad++ < 3) {
                char a[80];
                show(t, a, sizeof(a));
                diag("%s at %s: last %lld next %lld", names[s], a, (long long)l, (long long)nx);
            }
        }
        ok(bad == 0, "%s: %d times agree with the boundaries and with the old loop", names[s], steps);
    }
    return done_testing();
}
