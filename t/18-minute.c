/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 18-minute.c - the last minute's two-bucket estimate (`rateguard top`):
 * exact within one minute, the previous minute's share sliding out,
 * nothing after two minutes, saturation, a clock that goes back.
 * Table-driven over one sender's history.
 */
#include "minute.h"
#include "tap.h"

#define S 1000000LL                     /* a second in microseconds */
#define T0 (1700000040LL * S)           /* the start of a minute (1700000040 = 28333334 * 60) */

int main(void)
{
    struct minute_count m = {0, 0, 0};
    is_long(minute_estimate(&m, T0), 0, "never counted: 0");
    minute_add(&m, T0 + 5 * S, 3);
    minute_add(&m, T0 + 50 * S, 4);
    is_long(minute_estimate(&m, T0 + 59 * S), 7, "7 in the current minute: exactly 7");
    minute_add(&m, T0 + 61 * S, 2);
    is_long(m.prev, 7, "the next minute keeps 7 as the previous one");
    static const struct {
        int64_t at;
        unsigned want;
        const char *what;
    } cases[] = {
        {T0 + 60 * S, 9, "at the boundary: 2 + all of the previous 7"},
        {T0 + 90 * S, 6, "half-way: 2 + 3.5, rounded to 6"},
        {T0 + 114 * S, 3, "54 s in: 2 + 0.7, rounded to 3"},
        {T0 + 120 * S, 2, "a minute later: the 2 are the previous minute's, all inside"},
        {T0 + 150 * S, 1, "and half of them after 30 s more"},
        {T0 + 180 * S, 0, "two minutes on: nothing"},
        {T0 + 30 * S, 2, "a clock gone back: the newest minute's count"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        is_long(minute_estimate(&m, cases[i].at), cases[i].want, "%s", cases[i].what);
    minute_add(&m, T0 + 30 * S, 1);
    is_long(m.now, 3, "a message at a clock gone back counts into the newest minute");
    minute_add(&m, T0 + 200 * S, 1);
    is_long(m.prev, 0, "after a silent minute the previous count is 0");
    is_long(m.now, 1, "... and the new minute holds its one message");
    minute_add(&m, T0 + 200 * S, 70000);
    is_long(m.now, 65535, "the count saturates at 65535");
    is_long(minute_estimate(&m, T0 + 201 * S), 65535, "and so does the estimate of it");
    return done_testing();
}
