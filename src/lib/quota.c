/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * quota.c - the quota decision (pure: no clock, no I/O).
 */
#include "quota.h"

uint32_t quota_sat_add(uint32_t a, uint32_t b)
{
    return a > UINT32_MAX - b ? UINT32_MAX : a + b;
}

struct quota_decision quota_decide(uint32_t msg_quota, uint32_t rcpt_quota, uint32_t msg_counter,
                                   uint32_t rcpt_counter, uint32_t rcpt, bool count_blocked)
{
    struct quota_decision d;
    d.blocked = quota_sat_add(msg_counter, 1) > msg_quota || quota_sat_add(rcpt_counter, rcpt) > rcpt_quota;
    bool count = !d.blocked || count_blocked;
    d.msg_delta = count ? 1 : 0;
    d.rcpt_delta = count ? rcpt : 0;
    return d;
}

bool quota_next_refused(uint32_t msg_quota, uint32_t rcpt_quota, uint32_t msg_counter, uint32_t rcpt_counter)
{
    return quota_decide(msg_quota, rcpt_quota, msg_counter, rcpt_counter, 1, true).blocked;
}

bool quota_first_block(bool blocked, uint8_t *notified)
{
    if (!blocked) {
        *notified = 0;
        return false;
    }
    if (*notified)
        return false;
    *notified = 1;
    return true;
}

bool quota_warning_reached(uint32_t quota, uint32_t used, unsigned percent)
{
    if (percent == 0 || quota == 0)
        return false;
    /* used >= quota * percent / 100, rounded up, without overflow */
    return (uint64_t)used * 100 >= (uint64_t)quota * percent;
}
