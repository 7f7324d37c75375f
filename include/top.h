/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * top.h - `rateguard top`: a live view of the running daemon in the
 * terminal, as top(1) is for processes, or a number of plain frames on
 * stdout (batch). It reads what `status` reads (the master's dumps,
 * status.h), never the database.
 */
#ifndef RG_TOP_H
#define RG_TOP_H

#include <stdbool.h>

#include "status.h"

struct rg_config;

struct top_options {
    bool batch;                 /* plain frames on stdout, no terminal */
    unsigned long frames;       /* frames to show, 0: until `q` (batch: 1) */
    unsigned long delay_ms;     /* between two frames */
    enum status_format order;   /* STATUS_TOP_MESSAGES, _QUOTA or _BLOCKED */
    unsigned rows;              /* senders listed; 0: the terminal's height (batch: 20) */
};

/* The ordering named by its key ("m", "u", "b"); false when none is. */
bool top_order_parse(const char *name, enum status_format *order);

/* Run top: exit 0, 3 when no daemon runs, 6 when it does not answer or
 * the terminal cannot be set up. */
int command_top(const struct rg_config *cfg, const struct top_options *o);

#endif
