/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * master.h - the master process: start-up (config, pidfile, listeners,
 * privilege drop), the worker pool, and the signal-driven main loop
 * (TERM stop, HUP reload, USR1 status, USR2 reopen logs, CHLD reap).
 */
#ifndef RG_MASTER_H
#define RG_MASTER_H

#include <stdbool.h>

struct rg_config;

/* Run the daemon; takes ownership of cfg. Returns the process exit code. */
int master_run(struct rg_config *cfg, bool foreground, const char *config_path);

#endif
