/*
 * writer.h - the writer process: the only holder of a database connection
 * while the daemon runs. It drains the write-back queue in transactions
 * (one record at low load, batches under load), writes counters as
 * increments and one `messages` row per record, then refreshes the cached
 * rows it touched from the database. Also the start-up preload of the
 * `ratelimits` table into the cache.
 */
#ifndef RG_WRITER_H
#define RG_WRITER_H

#include <stdbool.h>

struct rg_config;
struct shm;

struct writer_ctx {
    const struct rg_config *cfg;
    struct shm *shm;
    int lifeline_fd;        /* closes when the master dies */
    int wake_fd;            /* eventfd workers poke after queueing */
};

/* Runs until TERM (then drains the queue while the database answers) or
 * until the master dies; never returns. */
__attribute__((noreturn)) void writer_main(const struct writer_ctx *ctx);

/* Load every `ratelimits` row into the cache (in the master, before the
 * workers start). Returns false, logged, when the database cannot be read:
 * the daemon then starts with an empty cache. */
bool writer_preload(const struct rg_config *cfg, struct shm *shm);

#endif
