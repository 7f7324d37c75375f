/*
 * admission.h - whether an accepted connection is served: the client must
 * be inside allowed_clients and under workers.max_per_client connections.
 * Refusals are counted always and logged once per address per minute,
 * whichever worker refuses, so a client hammering the port cannot flood
 * the log.
 */
#ifndef RG_ADMISSION_H
#define RG_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct rg_config;
struct shm;

/* Slots of the shared refusal-log table (see struct shm_header). */
#define REFUSAL_LOG_SLOTS 256

/* A client address as kept in a scoreboard slot; family 0 = none (unix). */
struct client_id {
    uint8_t family;
    uint8_t addr[16];
};

/* Decide on a connection accepted by the worker in `slot`. Admitted: the
 * client is recorded in the slot (counted by other workers) and true is
 * returned. Refused: counted, logged (rate limited), false. */
bool admission_admit(struct shm *shm, uint32_t slot, const struct rg_config *cfg,
                     const struct sockaddr_storage *ss, const char *peer);

/* The connection of the worker in `slot` has ended. */
void admission_release(struct shm *shm, uint32_t slot);

#endif
