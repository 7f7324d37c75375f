/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * snapjob.c - the writer's snapshot stored in a thread (snapjob.h): owns
 * the thread, its start, join and the log line of its outcome. The
 * snapshot itself is snapshot.c's.
 */
#include "snapjob.h"
#include "log.h"

#include <string.h>

static void *store(void *arg)
{
    struct snapjob *j = arg;
    j->ok = snapshot_store(j->taken, j->shm, j->path, j->journal, j->err, sizeof(j->err));
    j->taken = NULL;        /* freed by the store */
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void reap(struct snapjob *j)
{
    pthread_join(j->thread, NULL);
    j->running = false;
    if (j->ok)
        log_debug("writer: counter snapshot written (%u sender(s))",
                  __atomic_load_n(&j->shm->hdr->snapshot_senders, __ATOMIC_RELAXED));
    else
        log_error("writer: counter snapshot: %s", j->err);
}

bool snapjob_busy(struct snapjob *j)
{
    if (j->running && __atomic_load_n(&j->done, __ATOMIC_ACQUIRE))
        reap(j);
    return j->running;
}

bool snapjob_start(struct snapjob *j, struct shm *shm, const char *path, const char *journal, const char *owner)
{
    if (snapjob_busy(j)) {
        log_debug("writer: counter snapshot skipped: the last one is still being written");
        return false;
    }
    j->taken = snapshot_take(shm, journal, owner);
    j->shm = shm;
    j->path = path;
    j->journal = journal;
    j->done = 0;
    j->ok = false;
    j->err[0] = '\0';
    int rc = pthread_create(&j->thread, NULL, store, j);
    if (rc != 0) {      /* no thread: stored here, as before */
        log_warning("writer: no thread for the counter snapshot (%s): written by the writer", strerror(rc));
        store(j);
        if (!j->ok)
            log_error("writer: counter snapshot: %s", j->err);
        return j->ok;
    }
    j->running = true;
    return true;
}

void snapjob_finish(struct snapjob *j)
{
    if (j->running)
        reap(j);
}
