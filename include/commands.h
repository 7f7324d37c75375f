/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * commands.h - the operator commands behind `rateguard COMMAND`, each
 * returning a documented exit code (rateguard.h). The daemon itself
 * (`run`) lives in master.c.
 */
#ifndef RG_COMMANDS_H
#define RG_COMMANDS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "status.h"

struct rg_config;

int command_migrate(const struct rg_config *cfg);
int command_cleanup(const struct rg_config *cfg);
int command_status(const struct rg_config *cfg, enum status_format format);

/* Have the running daemon (pid) write its dump in this format (a top
 * dump with that many rows) and open it: the caller closes it. NULL, the
 * reason on stderr, when it does not within 5 s or the file is not a
 * regular one. */
FILE *command_dump(const struct rg_config *cfg, pid_t pid, enum status_format format, unsigned rows);

/* One sender: its database row and the running daemon's view of it. */
int command_show(const struct rg_config *cfg, const char *sender, bool json);
/* One sender's period reset (as cleanup does for all). */
int command_reset_sender(const struct rg_config *cfg, const char *sender);
/* quota = quota_reset = n (the row is created when missing); locked sets
 * quota_locked, otherwise it is cleared. */
int command_set_quota(const struct rg_config *cfg, const char *sender, uint32_t n, bool locked);

/* End a login's hijacked-account episode (signals): its networks,
 * countries and current rate forgotten on every host, and a quota the
 * lock action set to 0 given back (quota_reset, unlocked). */
int command_clear(const struct rg_config *cfg, const char *login);
int command_reload_cache(const struct rg_config *cfg);
/* Send sig to the running daemon (reload: HUP, reopen-logs: USR2); exit 3
 * when none runs. */
int command_signal(const struct rg_config *cfg, int sig, const char *what);
/* TERM to the running daemon, then wait until it has let go of its
 * pidfile (90 s, then KILL and RG_EXIT_RUNTIME); 0 when none runs. */
int command_stop(const struct rg_config *cfg);

#endif
