/*
 * period.c - next reset boundary. mktime() normalises out-of-range fields
 * (day 32, hour 24) and applies the local daylight-saving rules, so a
 * "midnight" is a local midnight also on the days the clock changes.
 */
#include "period.h"

time_t period_next_boundary(enum reset_schedule schedule, time_t now)
{
    struct tm tm;

    if (schedule == RESET_NONE)
        return 0;
    localtime_r(&now, &tm);
    tm.tm_sec = 0;
    tm.tm_min = 0;
    tm.tm_isdst = -1;
    switch (schedule) {
    case RESET_HOURLY:
        tm.tm_hour += 1;
        break;
    case RESET_DAILY:
        tm.tm_hour = 0;
        tm.tm_mday += 1;
        break;
    case RESET_WEEKLY:
        tm.tm_hour = 0;
        tm.tm_mday += 7 - tm.tm_wday;   /* Sunday: a full week ahead */
        break;
    case RESET_MONTHLY:
        tm.tm_hour = 0;
        tm.tm_mday = 1;
        tm.tm_mon += 1;
        break;
    case RESET_NONE:
        return 0;
    }
    time_t next = mktime(&tm);
    /* An hour that does not exist (DST gap) can land on now: move on. */
    return next > now ? next : now + 3600;
}
