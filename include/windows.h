/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * windows.h - sliding windows ("100 messages per hour and 1000 per day"),
 * alongside the period counters, as policyd-rate-limit's `limits`. Each
 * window of a sender is WINDOW_BUCKETS counters of seconds/WINDOW_BUCKETS
 * each, kept in shared memory next to the sender's cache entry (see
 * cache_extra) and updated under its lock. The count of a window is the
 * sum of its buckets, so it covers between `seconds` and
 * seconds * (1 + 1/WINDOW_BUCKETS) of history: a sender is held back at
 * most 10% longer than the window, never let through early.
 *
 * Pure: the caller passes the time.
 */
#ifndef RG_WINDOWS_H
#define RG_WINDOWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WINDOWS_MAX 4
#define WINDOW_BUCKETS 10

struct window_spec {
    uint32_t limit;         /* messages allowed in the window */
    uint32_t seconds;       /* its length */
};

/* One window's counters of one sender. */
struct window_counts {
    int64_t head;                       /* bucket number of the newest bucket, 0 = unused */
    uint32_t bucket[WINDOW_BUCKETS];
};

/* How many of `configured` windows have counters in extra_size bytes per
 * cache entry (shared memory is sized at start; a reload cannot add). */
size_t windows_usable(size_t configured, uint32_t extra_size);

/* The length of one bucket of the window, in microseconds. */
int64_t window_bucket_us(const struct window_spec *s);

/* Parse "LIMIT/LENGTH", LENGTH in seconds or with a unit s, m, h, d
 * ("100/1h", "1000/86400"). */
bool window_parse(const char *text, struct window_spec *out, char *err, size_t errsize);

/* Messages counted in the window at now_us (advancing it: buckets that
 * fell out are cleared). */
uint32_t window_count(struct window_counts *w, const struct window_spec *s, int64_t now_us);

/* Count n more messages at now_us. */
void window_add(struct window_counts *w, const struct window_spec *s, int64_t now_us, uint32_t n);

/* Any count in these windows (size bytes of window_counts): the cache
 * keeps such an entry longest (its counts live nowhere else). */
bool windows_in_use(const void *state, uint32_t size);

#endif
