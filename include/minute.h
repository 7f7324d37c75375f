/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * minute.h - "messages in the last minute" of one sender, for `rateguard
 * top`: the classic two-bucket approximation of a sliding minute. The
 * count of the current calendar minute and of the one before it; the
 * estimate is current + previous * (the part of the previous minute still
 * inside the last 60 seconds). Exact while all messages fall in the
 * current minute; across a boundary it assumes the previous minute's
 * messages were spread evenly. Eight bytes in the cache entry, updated
 * under its lock.
 *
 * Pure: the caller passes the time (unix microseconds).
 */
#ifndef RG_MINUTE_H
#define RG_MINUTE_H

#include <stdint.h>

struct minute_count {
    uint32_t minute;            /* unix minute of `now`, 0 = never counted */
    uint16_t now, prev;         /* messages in that minute and the one before (saturate) */
};

/* Count n more messages at now_us. A clock that went back counts into the
 * newest minute kept (nothing is lost). */
void minute_add(struct minute_count *m, int64_t now_us, uint32_t n);

/* The estimate of the messages in the 60 seconds before now_us, rounded
 * to the nearest whole message. */
uint32_t minute_estimate(const struct minute_count *m, int64_t now_us);

#endif
