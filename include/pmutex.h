/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * pmutex.h - the mutexes of the shared segment: process-shared and robust,
 * so that a process killed while holding one never wedges the others.
 * Used by every structure that lives in shared memory (the cache, the write
 * queue, the error ring); shm.c only lays those structures out.
 */
#ifndef RATEGUARD_PMUTEX_H
#define RATEGUARD_PMUTEX_H

#include <pthread.h>

/* Process-shared, robust mutex. */
void pmutex_init(pthread_mutex_t *m);

/* Lock; a mutex whose owner died is made consistent and the event counted
 * in *recovered (the caller logs it after unlocking: no I/O under locks). */
void pmutex_lock(pthread_mutex_t *m, unsigned *recovered);
void pmutex_unlock(pthread_mutex_t *m);

#endif
