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

static void set_state(const struct worker_ctx *ctx, enum worker_state st)
{
    __atomic_store_n(&ctx->shm->scoreboard.slot[ctx->slot].state, (uint8_t)st, __ATOMIC_RELEASE);
}

static bool retire_requested(const struct worker_ctx *ctx)
{
    return __atomic_load_n(&ctx->shm->scoreboard.slot[ctx->slot].retire, __ATOMIC_ACQUIRE) != 0;
}

static bool under_stress(const struct worker_ctx *ctx)
{
    return __atomic_load_n(&ctx->shm->hdr->stress, __ATOMIC_ACQUIRE) != 0;
}

/* SIGUSR1 from the master when stress begins: it only has to end ppoll. */
static void on_stress(int sig)
{
    (void)sig;
}

/*
 * Timeouts. Between requests the idle timeout runs, inside one the read
 * timeout. Under stress (every worker busy and connections waiting, see
 * master.c) a connection idle after a reply is closed at once, so its
 * worker can take a waiting one (Postfix reconnects by itself), and any
 * other wait is cut to workers.stress_read_timeout. A wait that saw stress
 * keeps the short deadline even if the stress ends meanwhile: every
 * connection that held a worker during stress is released in that time.
 */
static void serve_connection(const struct worker_ctx *ctx, int fd, const char *peer, const sigset_t *wake_mask)
{
    const struct rg_config *cfg = ctx->cfg;
    struct worker_slot *slot = &ctx->shm->scoreboard.slot[ctx->slot];
    struct engine eng = {.cfg = cfg, .shm = ctx->shm};
    static char buf[POLICY_MAX_REQUEST];
    struct policy_scanner scanner;
    size_t len = 0;
    bool answered = false, wait_saw_stress = false;
    int64_t wait_since = clock_monotonic_ms();     /* accepted, last reply, or first byte */

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
            size_t rlen = engine_answer(&eng, &req, peer, reply, sizeof(reply));
            slot->requests++;
            if (!write_all(fd, reply, rlen, (int)cfg->workers.read_timeout)) {
                if (connlog_take(ctx->shm, CONNLOG_IO_ERROR, NULL))
                    log_warning("client %s: cannot send reply: %s", peer, strerror(errno));
                return;
            }
            memmove(buf, buf + reqlen, len - reqlen);
            len -= reqlen;
            policy_scanner_reset(&scanner);
            wait_since = clock_monotonic_ms();
            wait_saw_stress = false;
            answered = true;
        }
        if (st == POLICY_MALFORMED) {
            STAT_ADD(ctx->shm, malformed, 1);
            if (connlog_take(ctx->shm, CONNLOG_MALFORMED, reason))
                log_warning("client %s: malformed request (%s), disconnecting", peer, reason);
            return;
        }
        /* Retire between requests, never before the first: the master may
         * have asked just as this connection arrived. */
        if (stop_requested || (len == 0 && answered && retire_requested(ctx)))
            return;

        bool stress = under_stress(ctx);
        bool idle_after_reply = len == 0 && answered;
        wait_saw_stress |= stress;
        int64_t limit_ms = (len > 0 ? cfg->workers.read_timeout : cfg->workers.idle_timeout) * 1000;
        bool stress_limit = wait_saw_stress && !idle_after_reply &&
                            cfg->workers.stress_read_timeout * 1000 < limit_ms;
        if (stress_limit)
            limit_ms = cfg->workers.stress_read_timeout * 1000;
        int64_t now = clock_monotonic_ms(), deadline = wait_since + limit_ms;
        if (now >= deadline) {
            if (stress_limit) {
                STAT_ADD(ctx->shm, stress_timeouts, 1);
                if (connlog_take(ctx->shm, CONNLOG_STRESS_TIMEOUT, NULL))
                    log_warning("client %s: no complete request within %ld s while every worker is busy "
                                "(workers.stress_read_timeout), disconnecting", peer,
                                cfg->workers.stress_read_timeout);
            } else if (len > 0) {
                if (connlog_take(ctx->shm, CONNLOG_READ_TIMEOUT, NULL))
                    log_warning("client %s: read timeout after %ld s in a request, disconnecting", peer,
                                cfg->workers.read_timeout);
            } else
                log_info("client %s: idle for %ld s, disconnecting", peer, cfg->workers.idle_timeout);
            return;
        }
        /* Wake each second to notice a retirement; under stress an idle
         * connection only gets a look for data already sent. */
        int64_t wait_ms = deadline - now < 1000 ? deadline - now : 1000;
        if (stress && idle_after_reply)
            wait_ms = 0;
        struct timespec ts = {.tv_sec = wait_ms / 1000, .tv_nsec = (wait_ms % 1000) * 1000000};
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = ctx->lifeline_fd, .events = POLLIN}};
        int ready = ppoll(p, 2, &ts, wake_mask);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            log_panic("ppoll: %s", strerror(errno));
        if (p[1].revents)
            return;                 /* master gone: stop at once */
        if (ready == 0 && stress && idle_after_reply) {
            STAT_ADD(ctx->shm, stress_idle_closed, 1);
            log_debug("client %s: idle while every worker is busy, disconnecting (it reconnects)", peer);
            return;
        }
        if (ready == 0)
            continue;
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            if (connlog_take(ctx->shm, CONNLOG_IO_ERROR, NULL))
                log_warning("client %s: read: %s", peer, strerror(errno));
            return;
        }
        if (n == 0) {
            if (len > 0 && connlog_take(ctx->shm, CONNLOG_CLOSED_IN_REQUEST, NULL))
                log_warning("client %s: connection closed inside a request", peer);
            return;
        }
        if (len == 0) {
            wait_since = clock_monotonic_ms();
            wait_saw_stress = false;
        }
        len += (size_t)n;
    }
}

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
