/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * engine.h - what happens to one well-formed policy request: which
 * requests count, the quota decision against the shared cache, the
 * write-back record, the log line and the reply. Called by a worker; never
 * touches the database and never waits on it.
 */
#ifndef RG_ENGINE_H
#define RG_ENGINE_H

#include <stddef.h>

struct blockjournal;
struct rg_config;
struct shm;
struct policy_request;

struct engine {
    const struct rg_config *cfg;
    struct shm *shm;
    struct blockjournal *journal;   /* where block-state changes go (blockjournal.h); NULL: nowhere */
};

/* Decide the request and write the reply ("action=...\n\n") into reply.
 * Returns the reply's length. peer names the client in log lines. */
size_t engine_answer(struct engine *eng, const struct policy_request *req, const char *peer,
                     char *reply, size_t size);

#endif
