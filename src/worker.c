/*
 * worker.c - the accept loop and the per-connection request loop. Reads
 * are bounded (policy.h limits) and timed: read_timeout once a request
 * has started, idle_timeout between requests (longer than Postfix's own
 * 300 s idle limit, so Postfix is the one that closes idle connections).
 * Malformed input is logged with the client's address and the connection
 * closed without a reply, so Postfix applies its default_action.
 */
#include "worker.h"
#include "config.h"
#include "log.h"
#include "netaddr.h"
#include "policy.h"
#include "rateguard.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void worker_signals(void)
{
    struct sigaction sa = {.sa_handler = on_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* "192.0.2.1:4711" or "unix" for log lines. */
static void peer_name(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    char host[64];
    sockaddr_host((const struct sockaddr *)ss, host, sizeof(host));
    if (ss->ss_family == AF_INET)
        snprintf(buf, size, "%s:%u", host, ntohs(((const struct sockaddr_in *)ss)->sin_port));
    else if (ss->ss_family == AF_INET6)
        snprintf(buf, size, "[%s]:%u", host, ntohs(((const struct sockaddr_in6 *)ss)->sin6_port));
    else
        snprintf(buf, size, "unix");
}

static bool client_allowed(const struct rg_config *cfg, const struct sockaddr_storage *ss)
{
    if (ss->ss_family != AF_INET && ss->ss_family != AF_INET6)
        return true;    /* unix sockets: file permissions decide */
    if (cfg->allowed_clients.count == 0)
        return true;
    for (size_t i = 0; i < cfg->allowed_clients.count; i++)
        if (cidr_match(&cfg->allowed_nets[i], (const struct sockaddr *)ss))
            return true;
    return false;
}

/* Write all of buf, waiting at most timeout_s for the socket to drain. */
static bool write_all(int fd, const char *buf, size_t len, int timeout_s)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, timeout_s * 1000) > 0)
                continue;
        }
        return false;
    }
    return true;
}

/* Decide one request and format the reply line. */
static size_t answer(const struct rg_config *cfg, const struct policy_request *req,
                     char *reply, size_t size)
{
    (void)req;
    int n = snprintf(reply, size, "action=%s\n\n", cfg->action_accept);
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

static void serve_connection(const struct worker_ctx *ctx, int fd, const char *peer)
{
    const struct rg_config *cfg = ctx->cfg;
    static char buf[POLICY_MAX_REQUEST];
    struct policy_scanner scanner;
    size_t len = 0;

    policy_scanner_reset(&scanner);
    for (;;) {
        size_t reqlen;
        const char *reason;
        enum policy_status st;

        /* Answer every complete request in the buffer (pipelining). */
        while ((st = policy_scan(&scanner, buf, len, &reqlen, &reason)) == POLICY_COMPLETE) {
            struct policy_request req;
            char reply[1024];
            policy_parse(buf, reqlen, &req);
            size_t rlen = answer(cfg, &req, reply, sizeof(reply));
            if (!write_all(fd, reply, rlen, (int)cfg->workers.read_timeout)) {
                log_warning("client %s: cannot send reply: %s", peer, strerror(errno));
                return;
            }
            memmove(buf, buf + reqlen, len - reqlen);
            len -= reqlen;
            policy_scanner_reset(&scanner);
        }
        if (st == POLICY_MALFORMED) {
            log_warning("client %s: malformed request (%s), disconnecting", peer, reason);
            return;
        }
        if (stop_requested)
            return;

        int timeout_s = (int)(len > 0 ? cfg->workers.read_timeout : cfg->workers.idle_timeout);
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = ctx->lifeline_fd, .events = POLLIN}};
        int ready = poll(p, 2, timeout_s * 1000);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            log_panic("poll: %s", strerror(errno));
        if (p[1].revents)
            return;                 /* master gone: stop at once */
        if (ready == 0) {
            if (len > 0)
                log_warning("client %s: read timeout after %d s in a request, disconnecting",
                            peer, timeout_s);
            else
                log_info("client %s: idle for %d s, disconnecting", peer, timeout_s);
            return;
        }
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            log_warning("client %s: read: %s", peer, strerror(errno));
            return;
        }
        if (n == 0) {
            if (len > 0)
                log_warning("client %s: connection closed inside a request", peer);
            return;
        }
        len += (size_t)n;
    }
}

void worker_main(const struct worker_ctx *ctx)
{
    const struct rg_config *cfg = ctx->cfg;
    const struct listeners *ls = ctx->listeners;
    struct pollfd *p = calloc(ls->count + 1, sizeof(*p));
    long connections = 0;

    if (p == NULL)
        _exit(RG_EXIT_RUNTIME);
    worker_signals();
    for (size_t i = 0; i < ls->count; i++)
        p[i] = (struct pollfd){.fd = ls->fds[i], .events = POLLIN};
    p[ls->count] = (struct pollfd){.fd = ctx->lifeline_fd, .events = POLLIN};

    while (!stop_requested) {
        int ready = poll(p, ls->count + 1, -1);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            log_panic("poll: %s", strerror(errno));
        if (p[ls->count].revents)
            break;                  /* the master died or is stopping us */

        for (size_t i = 0; i < ls->count && !stop_requested; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            struct sockaddr_storage ss;
            socklen_t sslen = sizeof(ss);
            int fd = accept4(ls->fds[i], (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                continue;           /* another worker took it, or the client left */
            char peer[80];
            peer_name(&ss, peer, sizeof(peer));
            if (!client_allowed(cfg, &ss)) {
                log_warning("client %s: not in allowed_clients, connection refused", peer);
                close(fd);
                continue;
            }
            serve_connection(ctx, fd, peer);
            close(fd);
            if (cfg->workers.max_requests > 0 && ++connections >= cfg->workers.max_requests)
                stop_requested = 1;
        }
    }
    _exit(RG_EXIT_OK);
}
