/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * blockjournal.h - the block journal beside the counter snapshot
 * (state_dir/<instance>.blocks): one fixed-size record appended by the
 * worker each time a sender's block state changes (its quota filled, its
 * first refusal or quota warning of the period, a signal's lock, a
 * hijacked-account episode opened), with the sender's counts as counted
 * then. The snapshot is rewritten whole only after a full refresh (every
 * cache.refresh_interval) or when an outage begins; the journal closes the
 * window between: a start with the database down applies it on top of the
 * snapshot and of the replayed queue, so every block made before a crash
 * is known, however recent.
 *
 * Lifecycle: snapshot_write() renames the journal to .blocks.<time> and
 * bumps a generation in the shared header before it copies the cache;
 * once that snapshot is written, the files rotated before it go (see
 * blockjournal_retire). A worker reopens the journal when the generation changed,
 * checking it after its change to the cache: a change it then appends to
 * the old file preceded the copy. The writer makes the journal durable
 * (fdatasync) within a second of an append.
 *
 * Applying takes, per sender of the same period, the larger of each
 * count (never the sum: the queue's records may be in both) and the
 * flags; records of an older period are skipped. Each record carries a
 * magic and a checksum: a torn or damaged record is skipped, said once.
 */
#ifndef RG_BLOCKJOURNAL_H
#define RG_BLOCKJOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"

struct cache_entry;
struct login_watch;
struct shm;

/* A worker's handle: the file as last opened, and its generation. */
struct blockjournal {
    const char *path;
    int fd;
    uint32_t gen;
};

/* One change of block state, as counted under the sender's lock. */
struct blockjournal_record {
    uint32_t magic, check;
    int64_t made_us;
    int64_t reset_us;
    uint32_t quota, quota_reset, msg_counter, rcpt_counter, msg_total, rcpt_total, msg_quota, rcpt_quota;
    uint32_t episode_since, episode_last;
    uint8_t locked, notified, quota_own, block_action, episode, watch_locked, pad[2];
    char key[CACHE_KEY_SIZE];
};

/* Fill rec from the entry (and its watch, may be NULL), under its lock. */
void blockjournal_record_of(struct blockjournal_record *rec, const struct cache_entry *e,
                            const struct login_watch *w, int64_t now_us);

/* Append rec (after the sender's lock is released). False with errno set
 * when it could not be written (the caller logs). */
bool blockjournal_append(struct blockjournal *j, struct shm *shm, struct blockjournal_record *rec);

/* Before a snapshot copies the cache: the journal is renamed
 * "<path>.<now in unix microseconds>" and the generation moves on; the
 * rotation's time is returned (0: the rename failed, the file stays).
 * After that snapshot is written: the files rotated before the given time
 * go. Those rotated at or after it stay until the next snapshot is
 * written: a record counted while its messages were still queued is only
 * in a snapshot once the next one reads them back committed. */
int64_t blockjournal_rotate(struct shm *shm, const char *path);
void blockjournal_retire(const char *path, int64_t rotated);

/* Rotated files looked at, at most (a snapshot failing that many times in
 * a row leaves the oldest unread: they are older than every snapshot). */
#define BLOCKJOURNAL_FILES_MAX 64

/* The writer, once a second: fdatasync the journal if it grew. */
void blockjournal_sync(const char *path);

/* At a start with the database down, after the snapshot and the replayed
 * queue: apply the rotated files, oldest first, then the journal, but no
 * record made before since_us (the last period boundary: its counts were
 * reset). Returns the records applied; *skipped counts the damaged ones. */
uint32_t blockjournal_apply(struct shm *shm, const char *path, int64_t since_us, uint32_t *skipped);

#endif
