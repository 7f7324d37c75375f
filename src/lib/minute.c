/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * minute.c - the two-bucket count of a sender's last minute (see minute.h).
 */
#include "minute.h"

#define MINUTE_US 60000000LL

static uint16_t add16(uint16_t a, uint32_t n)
{
    return n >= (uint32_t)(UINT16_MAX - a) ? UINT16_MAX : (uint16_t)(a + n);
}

static uint32_t minute_of(int64_t now_us)
{
    return now_us > 0 ? (uint32_t)(now_us / MINUTE_US) : 0;
}

void minute_add(struct minute_count *m, int64_t now_us, uint32_t n)
{
    uint32_t now = minute_of(now_us);
    if (m->minute != 0 && now <= m->minute) {
        m->now = add16(m->now, n);
        return;
    }
    m->prev = m->minute != 0 && now == m->minute + 1 ? m->now : 0;
    m->now = add16(0, n);
    m->minute = now;
}

uint32_t minute_estimate(const struct minute_count *m, int64_t now_us)
{
    uint32_t now = minute_of(now_us);
    if (m->minute == 0 || now > m->minute + 1)
        return 0;
    if (now < m->minute)               /* the clock went back: what the newest minute holds */
        return m->now;
    uint32_t current = now == m->minute ? m->now : 0;
    uint32_t previous = now == m->minute ? m->prev : m->now;
    /* the previous minute's share still inside the last 60 s */
    int64_t left_us = MINUTE_US - (now_us - (int64_t)now * MINUTE_US);
    return current + (uint32_t)(((int64_t)previous * left_us + MINUTE_US / 2) / MINUTE_US);
}
