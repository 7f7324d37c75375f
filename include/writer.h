/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * writer.h - the writer process: the only holder of database connections
 * (one per lane) while the daemon runs. It drains the write-back queue in transactions
 * (one record at low load, batches under load), writes counters as
 * increments and one `messages` row per record, records its progress in
 * the same transaction, and refreshes the cache from the database. While
 * the database is away it keeps everything: in the queue file and, when
 * that is half full, in the spool file, replayed first when it is back.
 */
#ifndef RG_WRITER_H
#define RG_WRITER_H

#include <stdbool.h>

struct rg_config;
struct shm;

struct writer_ctx {
    const struct rg_config *cfg;
    struct shm *shm;
    const char *name;           /* "host/instance": this writer's progress row */
    const char *spool_path;
    const char *ack_path;       /* touched after a refresh asked for by a command */
    const char *snapshot_path;  /* the counter snapshot (snapshot.h), written after each refresh */
    const char *journal_path;   /* the block journal beside it (blockjournal.h), made durable each second */
    int lifeline_fd;            /* closes when the master dies */
    int wake_fd;                /* eventfd workers poke after queueing */
};

/* Runs until TERM (then drains the queue while the database answers) or
 * until the master dies; never returns. */
__attribute__((noreturn)) void writer_main(const struct writer_ctx *ctx);

#endif
