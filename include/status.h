/*
 * status.h - the status dump: on SIGUSR1 the master writes the cache
 * table and the daemon's counters to state_dir/<instance>.status.txt and
 * .status.json (each replaced atomically); `rateguard status`
 * sends the signal, waits for the new file and prints it.
 */
#ifndef RG_STATUS_H
#define RG_STATUS_H

#include <stdbool.h>
#include <time.h>

struct rg_config;
struct shm;

/* Write both dump files. Returns false (logged) on failure. */
bool status_write(const struct rg_config *cfg, struct shm *shm, time_t started);

#endif
