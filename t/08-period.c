/*
 * 08-period.c - reset boundaries in local time, including the days the
 * clocks change (Europe/Zurich) and the turn of the year.
 */
#include "period.h"
#include "tap.h"

#include <stdlib.h>

static time_t local(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
                    .tm_isdst = -1};
    return mktime(&tm);
}

static void check(enum reset_schedule s, time_t now, time_t want, const char *what)
{
    time_t got = period_next_boundary(s, now);
    char g[64], w[64];
    struct tm tm;
    strftime(g, sizeof(g), "%Y-%m-%d %H:%M %Z", localtime_r(&got, &tm));
    strftime(w, sizeof(w), "%Y-%m-%d %H:%M %Z", localtime_r(&want, &tm));
    is_str(g, w, "%s", what);
}

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
    return done_testing();
}
