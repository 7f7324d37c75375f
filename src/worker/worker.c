/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * worker.c - the accept loop and the per-connection request loop. Reads
 * are bounded (policy.h limits) and timed: read_timeout once a request
 * has started, idle_timeout between requests (longer than Postfix's own
 * 300 s idle limit, so Postfix is the one that closes idle connections).
 * Malformed input is logged with the client's address and the connection
 * closed without a reply, so Postfix applies its default_action. Under
 * stress (master.c) idle connections are given up and timeouts shortened.
 * Who may connect at all is admission.c's decision. Warnings about a
 * connection go through connlog.c: one line per kind a minute, so a flood
 * of bad connections cannot flood the log.
 */
#include "worker.h"
#include "blockjournal.h"
#include "admission.h"
#include "config.h"
#include "connlog.h"
#include "engine.h"
#include "log.h"
#include "netaddr.h"
#include "policy.h"
#include "rateguard.h"
#include "shm.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

/* SIGTERM: only sets the flag the loops check. */
static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
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

/* This worker's scoreboard state, for the master. */
static void set_state(const struct worker_ctx *ctx, enum worker_state st)
{
    __atomic_store_n(&ctx->shm->scoreboard.slot[ctx->slot].state, (uint8_t)st, __ATOMIC_RELEASE);
}

/* Whether the master asked this worker to retire. */
static bool retire_requested(const struct worker_ctx *ctx)
{
    return __atomic_load_n(&ctx->shm->scoreboard.slot[ctx->slot].retire, __ATOMIC_ACQUIRE) != 0;
}

/* Whether the master declared stress (every worker busy, connections waiting). */
static bool under_stress(const struct worker_ctx *ctx)
{
    return __atomic_load_n(&ctx->shm->hdr->stress, __ATOMIC_ACQUIRE) != 0;
}

/* SIGUSR1 from the master when stress begins: it only has to end ppoll. */
static void on_stress(int sig)
{
    (void)sig;
}

/* One connection between waits: what is buffered and since when it waits. */
struct conn {
    const struct worker_ctx *ctx;
    int fd;
    const char *peer;
    char *buf;                      /* POLICY_MAX_REQUEST bytes */
    size_t len;                     /* buffered, not yet answered */
    struct policy_scanner scanner;
    bool answered;                  /* at least one reply sent */
    bool wait_saw_stress;           /* stress was seen during this wait */
    int64_t wait_since;             /* accepted, last reply, or first byte */
};

/* Answer every complete request in the buffer (pipelining): false when
 * the connection is to be closed (a reply that cannot be sent, a
 * malformed request; both logged). */
static bool answer_buffered(struct conn *c, struct engine *eng)
{
    const struct worker_ctx *ctx = c->ctx;
    struct worker_slot *slot = &ctx->shm->scoreboard.slot[ctx->slot];
    size_t reqlen;
    const char *reason;
    enum policy_status st;

    while ((st = policy_scan(&c->scanner, c->buf, c->len, &reqlen, &reason)) == POLICY_COMPLETE) {
        struct policy_request req;
        char reply[1024];
        policy_parse(c->buf, reqlen, &req);
        size_t rlen = engine_answer(eng, &req, c->peer, reply, sizeof(reply));
        slot->requests++;
        if (!write_all(c->fd, reply, rlen, (int)ctx->cfg->workers.read_timeout)) {
            if (connlog_take(ctx->shm, CONNLOG_IO_ERROR, NULL))
                log_warning("client %s: cannot send reply: %s", c->peer, strerror(errno));
            return false;
        }
        memmove(c->buf, c->buf + reqlen, c->len - reqlen);
        c->len -= reqlen;
        policy_scanner_reset(&c->scanner);
        c->wait_since = clock_monotonic_ms();
        c->wait_saw_stress = false;
        c->answered = true;
    }
    if (st == POLICY_MALFORMED) {
        STAT_ADD(ctx->shm, malformed, 1);
        if (connlog_take(ctx->shm, CONNLOG_MALFORMED, reason))
            log_warning("client %s: malformed request (%s), disconnecting", c->peer, reason);
        return false;
    }
    return true;
}

/*
 * Timeouts. Between requests the idle timeout runs, inside one the read
 * timeout. Under stress (every worker busy and connections waiting, see
 * master.c) a connection idle after a reply is closed at once, so its
 * worker can take a waiting one (Postfix reconnects by itself), and any
 * other wait is cut to workers.stress_read_timeout. A wait that saw stress
 * keeps the short deadline even if the stress ends meanwhile: every
 * connection that held a worker during stress is released in that time.
 * Returns the current wait's limit in ms; *stress_limit when it is the
 * stress one.
 */
static int64_t wait_limit_ms(const struct conn *c, bool idle_after_reply, bool *stress_limit)
{
    const struct rg_config *cfg = c->ctx->cfg;
    int64_t limit_ms = (c->len > 0 ? cfg->workers.read_timeout : cfg->workers.idle_timeout) * 1000;
    *stress_limit = c->wait_saw_stress && !idle_after_reply && cfg->workers.stress_read_timeout * 1000 < limit_ms;
    return *stress_limit ? cfg->workers.stress_read_timeout * 1000 : limit_ms;
}

/* Log why a wait ran out: the stress limit, the read or the idle timeout. */
static void log_timeout(const struct conn *c, bool stress_limit)
{
    const struct worker_ctx *ctx = c->ctx;
    const struct rg_config *cfg = ctx->cfg;
    if (stress_limit) {
        STAT_ADD(ctx->shm, stress_timeouts, 1);
        if (connlog_take(ctx->shm, CONNLOG_STRESS_TIMEOUT, NULL))
            log_warning("client %s: no complete request within %ld s while every worker is busy "
                        "(workers.stress_read_timeout), disconnecting", c->peer,
                        cfg->workers.stress_read_timeout);
    } else if (c->len > 0) {
        if (connlog_take(ctx->shm, CONNLOG_READ_TIMEOUT, NULL))
            log_warning("client %s: read timeout after %ld s in a request, disconnecting", c->peer,
                        cfg->workers.read_timeout);
    } else
        log_info("client %s: idle for %ld s, disconnecting", c->peer, cfg->workers.idle_timeout);
}

enum wait_result { WAIT_INTERRUPTED, WAIT_NOTHING, WAIT_READABLE, WAIT_MASTER_GONE };

/* Wait up to wait_ms for the client's data or the master's death; only
 * wake_mask's signals (SIGUSR1: stress began) interrupt it. */
static enum wait_result wait_input(const struct conn *c, const sigset_t *wake_mask, int64_t wait_ms)
{
    struct timespec ts = {.tv_sec = wait_ms / 1000, .tv_nsec = (wait_ms % 1000) * 1000000};
    struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = c->ctx->lifeline_fd, .events = POLLIN}};
    int ready = ppoll(p, 2, &ts, wake_mask);
    if (ready < 0 && errno == EINTR)
        return WAIT_INTERRUPTED;
    if (ready < 0)
        log_panic("ppoll: %s", strerror(errno));
    if (p[1].revents)
        return WAIT_MASTER_GONE;
    return ready == 0 ? WAIT_NOTHING : WAIT_READABLE;
}

/* Read what the client sent into the buffer: false when the connection is
 * to be closed (an error, or the client closed it; logged). The first
 * byte of a request starts its read timeout. */
static bool read_input(struct conn *c)
{
    const struct worker_ctx *ctx = c->ctx;
    ssize_t n = read(c->fd, c->buf + c->len, POLICY_MAX_REQUEST - c->len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n < 0) {
        if (connlog_take(ctx->shm, CONNLOG_IO_ERROR, NULL))
            log_warning("client %s: read: %s", c->peer, strerror(errno));
        return false;
    }
    if (n == 0) {
        if (c->len > 0 && connlog_take(ctx->shm, CONNLOG_CLOSED_IN_REQUEST, NULL))
            log_warning("client %s: connection closed inside a request", c->peer);
        return false;
    }
    if (c->len == 0) {
        c->wait_since = clock_monotonic_ms();
        c->wait_saw_stress = false;
    }
    c->len += (size_t)n;
    return true;
}

/* One connection: answer what is buffered, then wait (timeouts above) and
 * read, until the client leaves, a timeout, a retirement or a stop. */
static void serve_connection(const struct worker_ctx *ctx, int fd, const char *peer, const sigset_t *wake_mask)
{
    static char buf[POLICY_MAX_REQUEST];
    static struct blockjournal journal = {.fd = -1};     /* opened at the first change, kept */
    journal.path = ctx->journal_path;
    struct engine eng = {.cfg = ctx->cfg, .shm = ctx->shm, .journal = &journal};
    struct conn c = {.ctx = ctx, .fd = fd, .peer = peer, .buf = buf, .wait_since = clock_monotonic_ms()};

    policy_scanner_reset(&c.scanner);
    for (;;) {
        if (!answer_buffered(&c, &eng))
            return;
        /* Retire between requests, never before the first: the master may
         * have asked just as this connection arrived. */
        if (stop_requested || (c.len == 0 && c.answered && retire_requested(ctx)))
            return;

        bool stress = under_stress(ctx);
        bool idle_after_reply = c.len == 0 && c.answered;
        bool stress_limit;
        c.wait_saw_stress |= stress;
        int64_t limit_ms = wait_limit_ms(&c, idle_after_reply, &stress_limit);
        int64_t now = clock_monotonic_ms(), deadline = c.wait_since + limit_ms;
        if (now >= deadline) {
            log_timeout(&c, stress_limit);
            return;
        }
        /* Wake each second to notice a retirement; under stress an idle
         * connection only gets a look for data already sent. */
        int64_t wait_ms = deadline - now < 1000 ? deadline - now : 1000;
        if (stress && idle_after_reply)
            wait_ms = 0;
        enum wait_result w = wait_input(&c, wake_mask, wait_ms);
        if (w == WAIT_MASTER_GONE)
            return;                 /* master gone: stop at once */
        if (w == WAIT_NOTHING && stress && idle_after_reply) {
            STAT_ADD(ctx->shm, stress_idle_closed, 1);
            log_debug("client %s: idle while every worker is busy, disconnecting (it reconnects)", peer);
            return;
        }
        if (w == WAIT_READABLE && !read_input(&c))
            return;
    }
}

/* A worker's life: accept, admit, serve one connection at a time, until
 * stopped, retired, max_requests, or the master's death. */
void worker_main(const struct worker_ctx *ctx)
{
    const struct rg_config *cfg = ctx->cfg;
    const struct listeners *ls = ctx->listeners;
    struct worker_slot *slot = &ctx->shm->scoreboard.slot[ctx->slot];
    struct pollfd *p = calloc(ls->count + 1, sizeof(*p));

    if (p == NULL)
        _exit(RG_EXIT_RUNTIME);
    child_signals(on_term, true);
    /* SIGUSR1 stays blocked except inside ppoll, so a stress signal sent
     * at any moment ends the next wait instead of being lost. */
    struct sigaction sa = {.sa_handler = on_stress};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t block, wake_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &wake_mask);
    sigdelset(&wake_mask, SIGUSR1);
    slot->pid = getpid();
    set_state(ctx, SLOT_IDLE);
    for (size_t i = 0; i < ls->count; i++)
        p[i] = (struct pollfd){.fd = ls->fds[i], .events = POLLIN};
    p[ls->count] = (struct pollfd){.fd = ctx->lifeline_fd, .events = POLLIN};

    while (!stop_requested && !retire_requested(ctx)) {
        int ready = poll(p, ls->count + 1, 1000);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            log_panic("poll: %s", strerror(errno));
        if (p[ls->count].revents)
            break;                  /* the master died */
        if (retire_requested(ctx))
            break;                  /* leave new connections to fresh workers */

        for (size_t i = 0; i < ls->count && ready > 0 && !stop_requested; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            struct sockaddr_storage ss;
            socklen_t sslen = sizeof(ss);
            int fd = accept4(ls->fds[i], (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                continue;           /* another worker took it, or the client left */
            char peer[80];
            peer_name(&ss, peer, sizeof(peer));
            if (!admission_admit(ctx->shm, ctx->slot, cfg, fd, &ss, peer)) {
                close(fd);
                continue;
            }
            /* Turning busy: have the master check its spare workers now. */
            set_state(ctx, SLOT_BUSY);
            slot->connections++;
            if (write(ctx->master_poke_fd, "w", 1) < 0) {
                /* the master's pipe is full, so it is awake anyway */
            }
            serve_connection(ctx, fd, peer, &wake_mask);
            close(fd);
            admission_release(ctx->shm, ctx->slot);
            set_state(ctx, SLOT_IDLE);
            if (cfg->workers.max_requests > 0 && (long)slot->connections >= cfg->workers.max_requests)
                stop_requested = 1;
        }
    }
    _exit(RG_EXIT_OK);
}
