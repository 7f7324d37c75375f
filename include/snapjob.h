/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * snapjob.h - the writer's counter snapshot stored in a thread of its own:
 * the writer takes the snapshot (the journal rotated: a rename) and goes on
 * writing records while the thread copies the cache, digests, writes,
 * fsyncs and renames it. With a million cached senders the store
 * is some 100 MB and about a second, every cache.refresh_interval: done by
 * the writer itself, its lag rose by that second each time (issue 32's
 * bench-year). One store at a time: a snapshot due while the last is still
 * being stored is skipped (the next refresh takes one; the block journal
 * keeps what happened meanwhile, since it is rotated only by a take).
 */
#ifndef RG_SNAPJOB_H
#define RG_SNAPJOB_H

#include "shm.h"
#include "snapshot.h"

#include <pthread.h>
#include <stdbool.h>

struct snapjob {
    pthread_t thread;
    bool running;               /* a thread to join */
    int done;                   /* set by the thread when its store returned (atomic) */
    bool ok;
    char err[1024];
    struct snapshot_taken *taken;
    struct shm *shm;
    const char *path, *journal; /* borrowed: must outlive the job */
};

/* Whether a store is still under way; a finished one is joined and its
 * outcome logged first. */
bool snapjob_busy(struct snapjob *j);

/* Take a snapshot and store it in the background, unless one is still
 * being stored (then nothing is taken: false). */
bool snapjob_start(struct snapjob *j, struct shm *shm, const char *path, const char *journal, const char *owner);

/* Wait for the store under way (stopping), its outcome logged. */
void snapjob_finish(struct snapjob *j);

#endif
