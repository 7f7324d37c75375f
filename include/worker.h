/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * worker.h - a pre-forked worker: accepts one connection at a time on the
 * inherited listening sockets and answers any number of policy requests
 * on it. Exits when the master's lifeline pipe closes, on TERM (after the
 * request in hand), after workers.max_requests connections, or when the
 * pool has too many idle workers.
 */
#ifndef RG_WORKER_H
#define RG_WORKER_H

#include "listener.h"

#include <stdint.h>

struct rg_config;
struct shm;

struct worker_ctx {
    const struct rg_config *cfg;
    const struct listeners *listeners;
    struct shm *shm;
    uint32_t slot;          /* this worker's scoreboard slot */
    int lifeline_fd;        /* read end of a pipe only the master writes to */
    int master_poke_fd;     /* written when this worker turns busy */
    const char *journal_path;   /* the block journal (blockjournal.h) */
};

/* Runs the worker until it should exit; never returns. */
__attribute__((noreturn)) void worker_main(const struct worker_ctx *ctx);

#endif
