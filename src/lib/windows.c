/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * windows.c - the bucketed sliding-window counters (see windows.h).
 */
#include "windows.h"
#include "quota.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool window_parse(const char *text, struct window_spec *out, char *err, size_t errsize)
{
    char *end;
    unsigned long long limit = strtoull(text, &end, 10);
    if (end == text || *end != '/' || limit == 0 || limit > UINT32_MAX || text[0] == '-') {
        snprintf(err, errsize, "'%s': expected LIMIT/LENGTH, e.g. 100/1h (LIMIT 1 to 4294967295)", text);
        return false;
    }
    const char *len = end + 1;
    unsigned long long seconds = strtoull(len, &end, 10);
    unsigned long long unit = 1;
    if (*end == 's' || *end == 'm' || *end == 'h' || *end == 'd') {
        unit = *end == 'm' ? 60 : *end == 'h' ? 3600 : *end == 'd' ? 86400 : 1;
        end++;
    }
    if (end == len || *end != '\0' || len[0] == '-' || seconds == 0 || seconds > 366ull * 86400 / unit) {
        snprintf(err, errsize, "'%s': the length must be 1 s to 366 d (seconds, or a number with s, m, h or d)",
                 text);
        return false;
    }
    out->limit = (uint32_t)limit;
    out->seconds = (uint32_t)(seconds * unit);
    return true;
}

size_t windows_usable(size_t configured, uint32_t extra_size)
{
    size_t room = extra_size / sizeof(struct window_counts);
    return configured < room ? configured : room;
}

int64_t window_bucket_us(const struct window_spec *s)
{
    return (int64_t)s->seconds * 1000000 / WINDOW_BUCKETS;
}

static int64_t bucket_of(const struct window_spec *s, int64_t now_us)
{
    return now_us / window_bucket_us(s) + 1;    /* + 1: 0 means "unused" */
}

static void advance(struct window_counts *w, int64_t now_bucket)
{
    /* A clock set back by less than a window counts into the newest bucket
     * (held back at most that long); by more, the window starts afresh. */
    if (w->head == 0 || now_bucket - w->head >= WINDOW_BUCKETS || w->head - now_bucket >= WINDOW_BUCKETS) {
        memset(w->bucket, 0, sizeof(w->bucket));
    } else {
        for (int64_t b = w->head + 1; b <= now_bucket; b++)
            w->bucket[b % WINDOW_BUCKETS] = 0;
    }
    if (now_bucket > w->head || w->head - now_bucket >= WINDOW_BUCKETS)
        w->head = now_bucket;
}

uint32_t window_count(struct window_counts *w, const struct window_spec *s, int64_t now_us)
{
    advance(w, bucket_of(s, now_us));
    uint32_t sum = 0;
    for (int i = 0; i < WINDOW_BUCKETS; i++)
        sum = quota_sat_add(sum, w->bucket[i]);
    return sum;
}

bool windows_in_use(const void *state, uint32_t size)
{
    const struct window_counts *w = state;
    for (size_t i = 0; i < size / sizeof(*w); i++)
        for (int b = 0; b < WINDOW_BUCKETS; b++)
            if (w[i].bucket[b])
                return true;
    return false;
}

void window_add(struct window_counts *w, const struct window_spec *s, int64_t now_us, uint32_t n)
{
    int64_t b = bucket_of(s, now_us);
    advance(w, b);
    w->bucket[w->head % WINDOW_BUCKETS] = quota_sat_add(w->bucket[w->head % WINDOW_BUCKETS], n);
}
