/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * snapshot.h - the counter snapshot: the cache's senders (counters as
 * committed to the database, totals, quotas, lock, last reset, notified
 * bits, own limits) in state_dir/<instance>.snapshot, so that a daemon
 * started while the database is down decides from the counts it had
 * instead of an empty cache. The queued and spooled records are counted on
 * top of it at start, as after any crash; the database's rows win as soon
 * as the writer reads them.
 *
 * Written atomically (temporary file, fsync, rename, fsync of the folder)
 * by the writer after each full refresh and when an outage begins, and by
 * the master at a graceful stop. The file starts with a header (magic,
 * version, record size, count, creation time, owner "host/instance",
 * SHA-256 of the whole file); one that fails any check is refused with the
 * reason and never trusted. The checksum finds damage, not forgery (the
 * daemon's user writes the file), so every value is range-checked too:
 * created within 366 days back and 600 s ahead, no more senders than
 * cache.entries (a snapshot written with a larger cache.entries is
 * refused, not cut), each record's fields within what the cache holds.
 */
#ifndef RG_SNAPSHOT_H
#define RG_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct shm;

#define SNAPSHOT_MAGIC 0x52475350u      /* "RGSP" */
#define SNAPSHOT_VERSION 1

/* Copy the cache (each entry under its own lock) and write it to path for
 * owner. No lock is held during the I/O. The block journal (blockjournal.h;
 * NULL: none) is rotated before the copy and its older files retired once
 * the snapshot is written. False with the reason in err. The same as
 * snapshot_take, then snapshot_store. */
bool snapshot_write(struct shm *shm, const char *path, const char *journal, const char *owner, char *err,
                    size_t errsize);

/* The two halves, so that the work can be done away from the caller (the
 * writer stores in a thread: a million senders are some 100 MB to copy,
 * write and fsync, a second the writer would not write records). The take
 * is quick: the journal rotated (the copy must come after it). */
struct snapshot_taken;
struct snapshot_taken *snapshot_take(struct shm *shm, const char *journal, const char *owner);

/* Copy the cache (each entry under its own lock), digest, write, fsync,
 * rename, retire the journal's older files and publish the snapshot's time
 * and size in the shared header; frees t whatever happens. False with the
 * reason in err. */
bool snapshot_store(struct snapshot_taken *t, struct shm *shm, const char *path, const char *journal, char *err,
                    size_t errsize);

enum snapshot_load_result { SNAPSHOT_LOADED, SNAPSHOT_ABSENT, SNAPSHOT_REFUSED };

/* Load path into the (empty) cache if it is a sound snapshot of owner:
 * SNAPSHOT_LOADED with its creation time and the senders loaded;
 * SNAPSHOT_ABSENT when there is no file; SNAPSHOT_REFUSED with the reason
 * in err (nothing loaded). */
enum snapshot_load_result snapshot_load(struct shm *shm, const char *path, const char *owner, int64_t *created_us,
                                        uint32_t *loaded, char *err, size_t errsize);

/* The snapshot's lines in `rateguard status`: text, JSON members (with a
 * leading comma) and Prometheus metrics. */
void snapshot_status_text(FILE *f, struct shm *shm);
void snapshot_status_json(FILE *f, struct shm *shm);
void snapshot_status_prometheus(FILE *f, struct shm *shm);

#endif
