/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * period.c - reset boundaries (see period.h). mktime() normalises
 * out-of-range fields (day 32, hour 24) and applies the local
 * daylight-saving rules, so a "midnight" is a local midnight also on the
 * days the clock changes. Hours are counted from the UTC offset in force
 * at `now` instead: an hour is an hour on those days too, the repeated one
 * included. Every function is O(1) whatever the distance in time.
 * period_next_reset keeps a boundary from being due twice when the wall
 * clock steps back across it.
 */
#include "period.h"

/* The start of the local hour holding now (a non-negative remainder also
 * before 1970). */
static time_t hour_start(time_t now, const struct tm *tm)
{
    long long into = ((long long)now + tm->tm_gmtoff) % 3600;
    if (into < 0)
        into += 3600;
    return now - (time_t)into;
}

time_t period_next_boundary(enum reset_schedule schedule, time_t now)
{
    struct tm tm;

    if (schedule == RESET_NONE || localtime_r(&now, &tm) == NULL)
        return 0;
    if (schedule == RESET_HOURLY)
        return hour_start(now, &tm) + 3600;
    tm.tm_sec = 0;
    tm.tm_min = 0;
    tm.tm_hour = 0;
    tm.tm_isdst = -1;
    switch (schedule) {
    case RESET_DAILY:
        tm.tm_mday += 1;
        break;
    case RESET_WEEKLY:
        tm.tm_mday += 7 - tm.tm_wday;   /* Sunday: a full week ahead */
        break;
    case RESET_MONTHLY:
        tm.tm_mday = 1;
        tm.tm_mon += 1;
        break;
    case RESET_HOURLY:
    case RESET_NONE:
        return 0;
    }
    time_t next = mktime(&tm);
    if (next == (time_t)-1)
        return 0;
    /* A midnight that does not exist (DST gap) can land on now: move on. */
    return next > now ? next : now + 3600;
}

time_t period_next_reset(enum reset_schedule schedule, time_t now, time_t done)
{
    return period_next_boundary(schedule, now > done ? now : done);
}

time_t period_last_boundary(enum reset_schedule schedule, time_t now)
{
    struct tm tm;

    if (schedule == RESET_NONE || localtime_r(&now, &tm) == NULL)
        return 0;
    if (schedule == RESET_HOURLY)
        return hour_start(now, &tm);
    tm.tm_sec = 0;
    tm.tm_min = 0;
    tm.tm_hour = 0;
    tm.tm_isdst = -1;
    if (schedule == RESET_WEEKLY)
        tm.tm_mday -= tm.tm_wday;
    else if (schedule == RESET_MONTHLY)
        tm.tm_mday = 1;
    time_t last = mktime(&tm);
    if (last == (time_t)-1)
        return 0;
    /* A midnight in a DST gap is normalised to the gap's end, which is
     * not after now (now cannot lie in the gap): never later than now. */
    return last <= now ? last : now;
}
