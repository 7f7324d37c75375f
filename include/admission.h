/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * admission.h - whether an accepted connection is served: the client must
 * be inside allowed_clients, a peer on this host must belong to an
 * account in allowed_users, and the client must be under
 * workers.max_per_client connections. Refusals are counted always and
 * logged once per kind a minute (connlog.h), whichever worker refuses, so
 * a client hammering the port cannot flood the log.
 */
#ifndef RG_ADMISSION_H
#define RG_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct rg_config;
struct shm;

/* A client address as kept in a scoreboard slot; family 0 = none (unix). */
struct client_id {
    uint8_t family;
    uint8_t addr[16];
};

/* Decide on a connection accepted by the worker in `slot`. Admitted: the
 * client is recorded in the slot (counted by other workers) and true is
 * returned. Refused: counted, logged (rate limited), false: the caller
 * closes fd without a word. fd is the accepted socket (for its local
 * address). */
bool admission_admit(struct shm *shm, uint32_t slot, const struct rg_config *cfg, int fd,
                     const struct sockaddr_storage *ss, const char *peer);

/* The connection of the worker in `slot` has ended. */
void admission_release(struct shm *shm, uint32_t slot);

#endif
