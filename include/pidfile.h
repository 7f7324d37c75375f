/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * pidfile.h - the pidfile, locked with flock() for as long as the daemon
 * runs: a lock held means "running"; a pidfile without a lock is stale
 * (left by a killed daemon) and is simply taken over.
 */
#ifndef RG_PIDFILE_H
#define RG_PIDFILE_H

#include <stdbool.h>
#include <sys/types.h>

enum pidfile_result { PIDFILE_OK, PIDFILE_RUNNING, PIDFILE_ERROR };

/* Lock and write our pid, as the daemon's user (after the privilege
 * drop): a symbolic link or a file not owned by us is replaced.
 * PIDFILE_RUNNING sets *other to the running pid. On PIDFILE_OK, *fd is
 * kept open (and locked) until exit. */
enum pidfile_result pidfile_acquire(const char *path, int *fd, pid_t *other);

/* The pid of the running daemon, or 0 when none holds the pidfile. Only
 * reads (never through a link), so root may ask before dropping. */
pid_t pidfile_running(const char *path);

/* Remove the pidfile (at a clean exit). */
void pidfile_release(const char *path, int fd);

#endif
