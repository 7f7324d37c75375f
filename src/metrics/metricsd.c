/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * metricsd.c - the metrics process: GET /metrics over HTTP/1.1 with
 * libmicrohttpd (Debian's embedded HTTP server, kept by GNU), answered
 * from the shared segment by metrics.c.
 *
 * One internal polling thread serves every connection, so expositions
 * are made one at a time; libmicrohttpd bounds the connections (a
 * scraper that connects and sends nothing holds one slot until the
 * timeout), the time each may take and the memory of each. The process
 * holds no listening socket of the policy service and no lock a worker
 * waits on: a scrape costs the workers nothing but the CPU it takes.
 *
 * Clients outside metrics.allowed_clients are closed at accept, counted
 * (rateguard_metrics_refused_total) and logged at most once a minute
 * (connlog.c). Only GET and HEAD of /metrics are answered; anything else
 * gets 404 or 405 with a line saying what is served.
 */
#include "metricsd.h"
#include "config.h"
#include "connlog.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "rateguard.h"
#include "shm.h"
#include "util.h"

#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define METRICS_CONNECTIONS 256     /* at once; more are closed at accept by libmicrohttpd */
#define METRICS_TIMEOUT_S 10        /* an idle or slow connection is closed after this */
#define METRICS_BACKLOG 128
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int metricsd_listen(const struct rg_config *cfg, bool quiet)
{
    const struct listen_addr *la = &cfg->metrics_listen;
    char name[128];
    int one = 1;

    if (la->salen == 0)
        return -1;
    listen_addr_format(la, name, sizeof(name));
    int fd = socket(la->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (!quiet)
            log_error("metrics: socket(%s): %s; /metrics is not served", name, strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (la->sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&la->sa, la->salen) < 0 || listen(fd, METRICS_BACKLOG) < 0) {
        /* The policy service matters more than its figures: it runs on. */
        if (!quiet)
            log_error("metrics: cannot listen on %s: %s; /metrics is not served until it can (metrics.listen)",
                      name, strerror(errno));
        close(fd);
        return -1;
    }
    log_info("metrics: /metrics served on %s", name);
    return fd;
}

static enum MHD_Result admit(void *arg, const struct sockaddr *addr, socklen_t addrlen)
{
    const struct metricsd_ctx *ctx = arg;
    const struct rg_config *cfg = ctx->cfg;
    (void)addrlen;

    if (cidr_list_match(cfg->metrics_allowed_nets, cfg->metrics.allowed_clients.count, addr))
        return MHD_YES;
    STAT_ADD(ctx->shm, metrics_refused, 1);
    if (connlog_take(ctx->shm, CONNLOG_METRICS_REFUSED, NULL)) {
        char who[INET6_ADDRSTRLEN + 8];
        sockaddr_host(addr, who, sizeof(who));
        log_warning("metrics: connection from %s refused: not in metrics.allowed_clients", who);
    }
    return MHD_NO;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
                             enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (r == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result serve(void *arg, struct MHD_Connection *conn, const char *url, const char *method,
                             const char *version, const char *upload, size_t *upload_size, void **state)
{
    static char not_found[] = "rateguard serves its figures on /metrics\n";
    static char not_allowed[] = "/metrics answers GET and HEAD\n";
    const struct metricsd_ctx *ctx = arg;
    (void)version;
    (void)upload;
    (void)state;

    if (*upload_size != 0) {        /* a body nobody asked for: not read, and refused below */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/metrics") != 0)
        return reply(conn, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1, MHD_RESPMEM_PERSISTENT);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed, sizeof(not_allowed) - 1,
                     MHD_RESPMEM_PERSISTENT);

    char *body = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&body, &len);
    if (f == NULL)
        return MHD_NO;
    metrics_write_prometheus(f, ctx->shm, (unsigned)ctx->cfg->metrics.blocked_senders);
    if (fclose(f) != 0) {
        free(body);
        return MHD_NO;
    }
    STAT_ADD(ctx->shm, metrics_scrapes, 1);
    return reply(conn, MHD_HTTP_OK, body, len, MHD_RESPMEM_MUST_FREE);
}

/* libmicrohttpd's own complaints, into the daemon's log. */
static void mhd_log(void *arg, const char *fmt, va_list ap)
{
    char line[512];
    (void)arg;
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_warning("metrics: %s", line);
}

void metricsd_main(const struct metricsd_ctx *ctx)
{
    child_signals(on_term, false);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, admit, (void *)ctx, serve,
        (void *)ctx, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)ctx->listen_fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)METRICS_TIMEOUT_S, MHD_OPTION_END);
    if (d == NULL) {
        log_error("metrics: libmicrohttpd did not start; /metrics is not served until the next try");
        _exit(RG_CHILD_SICK);
    }
    log_debug("metrics %ld started", (long)getpid());
    struct pollfd p = {.fd = ctx->lifeline_fd, .events = POLLIN};
    while (!stop_requested)
        if (poll(&p, 1, 200) > 0)
            break;              /* the master is gone */
    MHD_stop_daemon(d);
    _exit(RG_CHILD_DONE);
}
