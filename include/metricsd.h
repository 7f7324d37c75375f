/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * metricsd.h - the metrics process: serves GET /metrics (the Prometheus
 * text of metrics.c) on metrics.listen with libmicrohttpd, to the
 * clients of metrics.allowed_clients. A process of its own beside the
 * workers, so that no scraper, slow or hostile, ever holds a worker or
 * the master: it only reads the shared segment.
 */
#ifndef RG_METRICSD_H
#define RG_METRICSD_H

#include <stdbool.h>

struct rg_config;
struct shm;

struct metricsd_ctx {
    const struct rg_config *cfg;
    struct shm *shm;
    int listen_fd;          /* bound and listening, made by the master as root */
    int lifeline_fd;
};

__attribute__((noreturn)) void metricsd_main(const struct metricsd_ctx *ctx);

/* Bind and listen on metrics.listen (by the master: at start before the
 * drop of privileges, then again every few seconds while it failed).
 * Returns the socket, or -1 when there is none: off, or it failed
 * (logged unless quiet: the policy service runs on without /metrics). */
int metricsd_listen(const struct rg_config *cfg, bool quiet);

#endif
