/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * pmutex.c - process-shared robust mutexes for the shared segment: a
 * holder that dies inside its critical section leaves a mutex the next
 * locker takes over (and counts) instead of a segment locked for good.
 */
#include "pmutex.h"
#include "log.h"

#include <errno.h>
#include <string.h>

void pmutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
}

void pmutex_lock(pthread_mutex_t *m, unsigned *recovered)
{
    int rc = pthread_mutex_lock(m);
    if (rc == EOWNERDEAD) {
        /* Every writer of shared state orders its stores so that what it
         * leaves is usable: take the lock over. */
        pthread_mutex_consistent(m);
        (*recovered)++;
    } else if (rc != 0) {
        log_panic("pthread_mutex_lock: %s", strerror(rc));
    }
}

void pmutex_unlock(pthread_mutex_t *m)
{
    pthread_mutex_unlock(m);
}
