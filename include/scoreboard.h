/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * scoreboard.h - one slot per possible worker in shared memory (as Apache
 * prefork): the master reads it to keep workers.min_spare..max_spare idle
 * workers; each worker writes only its own slot.
 */
#ifndef RG_SCOREBOARD_H
#define RG_SCOREBOARD_H

#include <stdint.h>
#include <sys/types.h>

#include "admission.h"

enum worker_state { SLOT_FREE = 0, SLOT_STARTING, SLOT_IDLE, SLOT_BUSY };

struct worker_slot {
    pid_t pid;
    uint8_t state;          /* enum worker_state */
    uint8_t retire;         /* master asks the worker to exit when idle */
    uint64_t connections;
    uint64_t requests;
    struct client_id client; /* the client being served, for workers.max_per_client */
};

struct scoreboard_shared {
    uint32_t slots;
};

struct scoreboard {
    struct scoreboard_shared *sh;
    struct worker_slot *slot;   /* sh->slots entries */
};

#endif
