/*
 * commands.h - the operator commands behind `rateguard COMMAND`, each
 * returning a documented exit code (rateguard.h). The daemon itself
 * (`run`) lives in master.c.
 */
#ifndef RG_COMMANDS_H
#define RG_COMMANDS_H

#include <stdbool.h>

struct rg_config;

int command_migrate(const struct rg_config *cfg);
int command_cleanup(const struct rg_config *cfg);
int command_status(const struct rg_config *cfg, bool json);
int command_reload_cache(const struct rg_config *cfg);

#endif
