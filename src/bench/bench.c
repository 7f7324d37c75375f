/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * bench.c - rateguard-bench: the load generator and the bare reference
 * server used by `make bench`.
 *
 *   rateguard-bench --connect HOST:PORT|unix:/path -n CONNS -s SENDERS
 *                   (--requests R | --duration SECONDS) [--json]
 *                   [--rate R] [--reconnect] [--log FILE] [--rcpt-max N]
 *                   [--seed S] [--timeout S] [--serial N] [--networks K]
 *       N persistent connections, each with one request outstanding
 *       (Postfix's smtpd waits for each answer), full Postfix 3.7 DATA
 *       requests from a pool of S senders; prints requests/s and latency
 *       percentiles. By default each connection sends its next request as
 *       soon as it has its reply (closed loop). For `make soak`: --rate
 *       paces R requests/s in all (open loop, on whichever connection is
 *       idle); --reconnect opens a closed or reset connection again (the
 *       outstanding request is then unanswered) instead of ending the run,
 *       as does a reply overdue by --timeout (default 10 s); --log writes
 *       one line per request outcome; --rcpt-max N sends recipient_count
 *       1..N; --seed picks the senders' sequence; --serial N numbers the
 *       queue ids and instances from N (default: the time in microseconds),
 *       so that several clients started together never share one;
 *       --networks K sends each sender's requests from K client networks
 *       of its own (bench_client_address below; default 0: every request
 *       from 127.0.0.1). The JSON counts the replies that were HOLD ("held").
 *       SIGTERM or SIGINT ends the sending early, as the duration would.
 *   rateguard-bench --echo-server --listen HOST:PORT --workers W
 *       The same prefork shape as rateguard (W processes, one connection
 *       each, the same request scanner) answering action=DUNNO with no cache
 *       and no database: the physical limit of the design on this machine.
 *   rateguard-bench --sizes ENTRIES
 *       Shared memory per cached sender for a cache of ENTRIES, without and
 *       with the login's signals (WATCH_SIZE more per entry), and what a
 *       sliding window adds.
 */
#include "cache.h"
#include "netaddr.h"
#include "policy.h"
#include "watch.h"
#include "windows.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int open_socket(const struct listen_addr *la, bool server)
{
    int fd;
    if (la->kind == LISTEN_UNIX) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", la->path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (server) {
            unlink(la->path);
            if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 4096) < 0)
                return -1;
        } else if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
            return -1;
        return fd;
    }
    fd = socket(la->sa.ss_family, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (server) {
        if (bind(fd, (const struct sockaddr *)&la->sa, la->salen) < 0 || listen(fd, 4096) < 0)
            return -1;
    } else {
        if (connect(fd, (const struct sockaddr *)&la->sa, la->salen) < 0)
            return -1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

/* ---- the echo server ---- */

static void echo_serve(int fd)
{
    static char buf[POLICY_MAX_REQUEST];
    struct policy_scanner sc;
    size_t len = 0, reqlen;
    const char *reason;
    static const char reply[] = "action=DUNNO\n\n";

    policy_scanner_reset(&sc);
    for (;;) {
        enum policy_status st;
        while ((st = policy_scan(&sc, buf, len, &reqlen, &reason)) == POLICY_COMPLETE) {
            struct policy_request req;
            policy_parse(buf, reqlen, &req);
            if (write(fd, reply, sizeof(reply) - 1) < 0)
                return;
            memmove(buf, buf + reqlen, len - reqlen);
            len -= reqlen;
            policy_scanner_reset(&sc);
        }
        if (st == POLICY_MALFORMED)
            return;
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n <= 0)
            return;
        len += (size_t)n;
    }
}

static int echo_server(const struct listen_addr *la, int workers)
{
    int lfd = open_socket(la, true);
    if (lfd < 0) {
        perror("echo server: bind/listen");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < workers; i++)
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);   /* leave with the master */
            for (;;) {
                int fd = accept(lfd, NULL, NULL);
                if (fd < 0)
                    continue;
                echo_serve(fd);
                close(fd);
            }
        }
    printf("echo server: %d workers\n", workers);
    fflush(stdout);
    while (wait(NULL) > 0)
        ;
    return 0;
}

/* ---- the load generator ---- */

/* What the load generator is asked to do (main's options). */
struct load_opts {
    int nconn;
    unsigned senders;
    long requests;          /* stop after this many (0: --duration decides) */
    double duration;        /* stop sending after this many seconds */
    double rate;            /* 0: closed loop (each connection sends at once); else requests/s in all */
    double timeout;         /* seconds without a reply */
    unsigned rcpt_max;      /* recipient_count 1..rcpt_max */
    unsigned seed;
    unsigned long serial;   /* first queue id number (0: from the clock) */
    unsigned networks;      /* client networks per sender (0: all from 127.0.0.1) */
    bool reconnect;         /* a closed connection is opened again instead of ending the run */
    bool json;
    FILE *log;              /* one line per request outcome, or NULL */
};

struct conn {
    int fd;                 /* -1: closed, to be opened at retry_at */
    bool busy;              /* a request is outstanding */
    double sent_at;
    double wall_at;         /* wall clock of the send, for the log */
    double retry_at;
    unsigned sender, rcpt;
    unsigned long serial;
    size_t got;             /* reply bytes so far */
    char reply[256];
};

struct load_state {
    const struct load_opts *o;
    const struct listen_addr *la;
    struct conn *c;
    int ep;
    double *lat;
    long cap, sent, done, unanswered, errors, reconnects, held;
    unsigned long serial;
    unsigned seed;
};

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A 32-bit mix (murmur3's finaliser). */
static uint32_t mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/*
 * The client address of a request of sender from its network j (of
 * --networks K) and a host number: each (sender, j) is a /24 of its own in
 * one of four ranges, 10.0.0.0/8, 172.16.0.0/12, 100.64.0.0/10 and
 * 192.168.0.0/16 (the range picked by the hash too, so a sender's networks
 * are usually in different ranges), the host 1..254. t/bench-run's
 * country database gives each /16 of these ranges a country.
 */
static void bench_client_address(char *buf, size_t size, unsigned sender, unsigned j, unsigned host)
{
    uint32_t h = mix32(sender * 2654435761u + j * 40503u + 1u);
    unsigned a = (h >> 8) & 0xff, b = (h >> 16) & 0xff;
    host = 1 + host % 254;
    switch (h & 3) {
    case 0: snprintf(buf, size, "10.%u.%u.%u", a, b, host); break;
    case 1: snprintf(buf, size, "172.%u.%u.%u", 16 + (a & 15), b, host); break;
    case 2: snprintf(buf, size, "100.%u.%u.%u", 64 + (a & 63), b, host); break;
    default: snprintf(buf, size, "192.168.%u.%u", b, host); break;
    }
}

static int build_request(char *buf, size_t size, unsigned sender, unsigned rcpt, unsigned long serial,
                         const char *client_address)
{
    return snprintf(buf, size,
                    "request=smtpd_access_policy\nprotocol_state=DATA\nprotocol_name=ESMTP\n"
                    "client_address=%s\nclient_name=localhost\nclient_port=53080\n"
                    "reverse_client_name=localhost\nserver_address=127.0.0.1\nserver_port=25\n"
                    "helo_name=client.example.org\nsender=user%u@bench.example.org\nrecipient=\n"
                    "recipient_count=%u\nqueue_id=B%010lX\ninstance=bench.%lu.0\nsize=0\netrn_domain=\nstress=\n"
                    "sasl_method=PLAIN\nsasl_username=user%u@bench.example.org\nsasl_sender=\nccert_subject=\n"
                    "ccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\n"
                    "encryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n",
                    client_address, sender, rcpt, serial, serial, sender);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One line per request outcome: queue_id, sender, recipient_count, the
 * reply's action text (or "unanswered"), latency in ms, wall clock of the
 * send. */
static void log_outcome(struct load_state *ls, const struct conn *cn, const char *outcome, double latency)
{
    if (ls->o->log)
        fprintf(ls->o->log, "B%010lX\tuser%u@bench.example.org\t%u\t%s\t%.3f\t%.3f\n", cn->serial, cn->sender,
                cn->rcpt, outcome, latency * 1000.0, cn->wall_at);
}

/* Open connection i (its fd -1); false if that failed. */
static bool conn_open(struct load_state *ls, int i)
{
    struct conn *cn = &ls->c[i];
    cn->fd = open_socket(ls->la, false);
    if (cn->fd < 0)
        return false;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(ls->ep, EPOLL_CTL_ADD, cn->fd, &ev);
    return true;
}

/* The server closed or reset connection i, or its reply is overdue: the
 * outstanding request is unanswered; it is opened again from retry_at. */
static void conn_lost(struct load_state *ls, int i, double now)
{
    struct conn *cn = &ls->c[i];
    if (cn->fd >= 0)
        close(cn->fd);      /* also leaves the epoll set */
    cn->fd = -1;
    if (cn->busy) {
        log_outcome(ls, cn, "unanswered", now - cn->sent_at);
        ls->unanswered++;
        ls->done++;
        cn->busy = false;
    }
    cn->got = 0;
    cn->retry_at = now;
}

/* Send the next request on idle connection i. */
static void conn_send(struct load_state *ls, int i)
{
    struct conn *cn = &ls->c[i];
    char req[2048];
    cn->sender = (unsigned)rand_r(&ls->seed) % ls->o->senders;
    cn->rcpt = 1 + (ls->o->rcpt_max > 1 ? (unsigned)rand_r(&ls->seed) % ls->o->rcpt_max : 0);
    cn->serial = ls->serial++;
    char addr[48] = "127.0.0.1";
    if (ls->o->networks > 0) {
        unsigned j = (unsigned)rand_r(&ls->seed) % ls->o->networks;
        bench_client_address(addr, sizeof(addr), cn->sender, j, (unsigned)rand_r(&ls->seed));
    }
    int n = build_request(req, sizeof(req), cn->sender, cn->rcpt, cn->serial, addr);
    cn->sent_at = now_s();
    cn->wall_at = wall_s();
    cn->busy = true;
    cn->got = 0;
    ls->sent++;
    if (write(cn->fd, req, (size_t)n) != n) {
        if (ls->o->reconnect)
            conn_lost(ls, i, now_s());
        else
            ls->errors++;
    }
}

/* Read what connection i has; a whole reply completes its request. */
static bool conn_read(struct load_state *ls, int i)
{
    struct conn *cn = &ls->c[i];
    ssize_t r = read(cn->fd, cn->reply + cn->got, sizeof(cn->reply) - 1 - cn->got);
    if (r <= 0 || !cn->busy) {
        if (r < 0 && errno == EAGAIN)
            return true;
        if (!ls->o->reconnect) {
            fprintf(stderr, "bench: connection closed by the server\n");
            return false;
        }
        conn_lost(ls, i, now_s());
        ls->reconnects++;
        return true;
    }
    cn->got += (size_t)r;
    cn->reply[cn->got] = '\0';
    if (cn->got < 2 || strcmp(cn->reply + cn->got - 2, "\n\n") != 0)
        return true;
    double t = now_s();
    if (ls->done - ls->unanswered < ls->cap)
        ls->lat[ls->done - ls->unanswered] = t - cn->sent_at;
    ls->done++;
    if (strncmp(cn->reply, "action=HOLD", 11) == 0)
        ls->held++;
    cn->busy = false;
    cn->got = 0;
    if (ls->o->log) {
        char *text = strncmp(cn->reply, "action=", 7) == 0 ? cn->reply + 7 : cn->reply;
        text[strcspn(text, "\n")] = '\0';
        log_outcome(ls, cn, text, t - cn->sent_at);
    }
    return true;
}

/* SIGTERM or SIGINT: stop sending now, as if the duration were over (the
 * outstanding replies are awaited, the figures and the log written). */
static volatile sig_atomic_t stop_early;
static void on_stop(int sig)
{
    (void)sig;
    stop_early = 1;
}

static void load_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
}

static int load(const struct listen_addr *la, const struct load_opts *o)
{
    struct load_state ls = {.o = o, .la = la, .c = calloc((size_t)o->nconn, sizeof(struct conn)),
                            .ep = epoll_create1(0), .seed = o->seed,
                            .serial = o->serial ? o->serial : (unsigned long)time(NULL) * 1000000ul};
    ls.cap = o->requests > 0 ? o->requests : 20000000;
    ls.lat = malloc((size_t)ls.cap * sizeof(double));

    load_signals();
    for (int i = 0; i < o->nconn; i++) {
        ls.c[i].fd = -1;
        if (!conn_open(&ls, i) && !o->reconnect) {
            perror("connect");
            return 1;
        }
    }
    double start = now_s(), end_at = o->duration > 0 ? start + o->duration : 0;
    double next_at = start;             /* open loop: when the next request is due */
    int rr = 0;                         /* open loop: where to look for an idle connection */
    struct epoll_event evs[256];

    for (;;) {
        double now = now_s();
        bool more = !stop_early && (o->requests > 0 ? ls.sent < o->requests : now < end_at);
        int busy = 0;
        for (int i = 0; i < o->nconn; i++) {
            struct conn *cn = &ls.c[i];
            if (cn->fd < 0 && now >= cn->retry_at && !conn_open(&ls, i))
                cn->retry_at = now + 0.05;
            if (cn->busy && now - cn->sent_at > o->timeout) {
                if (!o->reconnect) {
                    fprintf(stderr, "bench: no reply for %.0f s (%ld of %ld answered)\n", o->timeout, ls.done,
                            ls.sent);
                    return 1;
                }
                conn_lost(&ls, i, now);
            }
            if (cn->fd >= 0 && !cn->busy && more && o->rate <= 0 && (o->requests == 0 || ls.sent < o->requests))
                conn_send(&ls, i);
            busy += cn->busy;
        }
        if (more && o->rate > 0) {
            if (now - next_at > 1.0)
                next_at = now - 1.0;    /* no burst after a stall longer than a second */
            while (next_at <= now && (o->requests == 0 || ls.sent < o->requests)) {
                int k = 0;
                while (k < o->nconn && (ls.c[rr].fd < 0 || ls.c[rr].busy)) {
                    rr = (rr + 1) % o->nconn;
                    k++;
                }
                if (k == o->nconn)
                    break;              /* none idle: the request waits for one */
                conn_send(&ls, rr);
                busy++;
                rr = (rr + 1) % o->nconn;
                next_at += 1.0 / o->rate;
            }
        }
        if (!more && busy == 0)
            break;
        int wait_ms = 100;
        if (more && o->rate > 0 && next_at > now && (next_at - now) * 1000.0 < wait_ms)
            wait_ms = (int)((next_at - now) * 1000.0) + 1;
        int k = epoll_wait(ls.ep, evs, 256, wait_ms);
        for (int e = 0; e < k; e++)
            if (!conn_read(&ls, (int)evs[e].data.u32))
                return 1;
    }
    double elapsed = now_s() - start;
    long answered = ls.done - ls.unanswered;
    long kept = answered < ls.cap ? answered : ls.cap;
    if (kept == 0) {
        fprintf(stderr, "bench: no request answered\n");
        return 1;
    }
    qsort(ls.lat, (size_t)kept, sizeof(double), cmp_double);
#define PCT(p) (ls.lat[(long)((double)(kept - 1) * (p))] * 1000.0)
    if (o->json)
        printf("{\"connections\":%d,\"senders\":%u,\"requests\":%ld,\"seconds\":%.3f,\"rps\":%.0f,"
               "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%ld,"
               "\"unanswered\":%ld,\"reconnects\":%ld,\"held\":%ld}\n",
               o->nconn, o->senders, answered, elapsed, (double)answered / elapsed, PCT(0.5), PCT(0.9), PCT(0.99),
               PCT(0.999), ls.lat[kept - 1] * 1000.0, ls.errors, ls.unanswered, ls.reconnects, ls.held);
    else
        printf("%d connections, %u senders: %ld requests in %.2f s = %.0f requests/s; latency ms p50 %.3f "
               "p90 %.3f p99 %.3f p99.9 %.3f max %.3f; %ld unanswered, %ld reconnects, %ld held\n",
               o->nconn, o->senders, answered, elapsed, (double)answered / elapsed, PCT(0.5), PCT(0.9), PCT(0.99),
               PCT(0.999), ls.lat[kept - 1] * 1000.0, ls.unanswered, ls.reconnects, ls.held);
    for (int i = 0; i < o->nconn; i++)
        if (ls.c[i].fd >= 0)
            close(ls.c[i].fd);
    free(ls.c);
    free(ls.lat);
    if (o->log && fflush(o->log) != 0) {
        perror("bench: --log");
        return 1;
    }
    return ls.errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"connect", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
        {"echo-server", no_argument, NULL, 'e'}, {"workers", required_argument, NULL, 'w'},
        {"requests", required_argument, NULL, 'r'}, {"duration", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'}, {"sizes", required_argument, NULL, 'z'},
        {"rate", required_argument, NULL, 'R'}, {"reconnect", no_argument, NULL, 'C'},
        {"log", required_argument, NULL, 'L'}, {"rcpt-max", required_argument, NULL, 'm'},
        {"seed", required_argument, NULL, 'S'}, {"timeout", required_argument, NULL, 'T'},
        {"serial", required_argument, NULL, 'N'}, {"networks", required_argument, NULL, 'K'},
        {NULL, 0, NULL, 0},
    };
    const char *addr = NULL, *log_path = NULL;
    int workers = 140, opt;
    struct load_opts o = {.nconn = 1, .senders = 1000, .timeout = 10, .rcpt_max = 1, .seed = (unsigned)getpid()};
    bool echo = false;

    while ((opt = getopt_long(argc, argv, "n:s:", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': case 'l': addr = optarg; break;
        case 'e': echo = true; break;
        case 'w': workers = atoi(optarg); break;
        case 'r': o.requests = atol(optarg); break;
        case 'd': o.duration = atof(optarg); break;
        case 'j': o.json = true; break;
        case 'n': o.nconn = atoi(optarg); break;
        case 's': o.senders = (unsigned)atol(optarg); break;
        case 'R': o.rate = atof(optarg); break;
        case 'C': o.reconnect = true; break;
        case 'L': log_path = optarg; break;
        case 'm': o.rcpt_max = (unsigned)atol(optarg); break;
        case 'S': o.seed = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'T': o.timeout = atof(optarg); break;
        case 'N': o.serial = strtoul(optarg, NULL, 10); break;
        case 'K': o.networks = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'z': {
            uint32_t entries = (uint32_t)atol(optarg);
            size_t plain = cache_region_size(entries, 0), watched = cache_region_size(entries, WATCH_SIZE);
            printf("cache of %u entries: %zu bytes of shared memory, %.1f bytes per sender (entry %zu)\n",
                   entries, plain, (double)plain / entries, sizeof(struct cache_entry));
            printf("with signals: %zu bytes of shared memory, %.1f bytes per login (entry %zu + watch %d)\n",
                   watched, (double)watched / entries, sizeof(struct cache_entry), WATCH_SIZE);
            printf("each sliding window: %zu bytes more per sender\n", sizeof(struct window_counts));
            return 0;
        }
        default:
            fprintf(stderr, "usage: rateguard-bench --connect ADDR -n CONNS -s SENDERS (--requests R | "
                            "--duration S) [--json]\n"
                            "           [--rate R] [--reconnect] [--log FILE] [--rcpt-max N] [--seed S] "
                            "[--timeout S] [--networks K]\n"
                            "       rateguard-bench --echo-server --listen ADDR [--workers W]\n"
                            "       rateguard-bench --sizes ENTRIES\n");
            return 64;
        }
    }
    struct listen_addr la;
    char err[256];
    if (addr == NULL || !listen_addr_parse(addr, &la, err, sizeof(err))) {
        fprintf(stderr, "rateguard-bench: need --connect/--listen ADDR (%s)\n", addr ? err : "missing");
        return 64;
    }
    if (echo)
        return echo_server(&la, workers);
    if (o.senders == 0 || o.nconn < 1 || (o.requests <= 0 && o.duration <= 0) || o.rate < 0 || o.rcpt_max < 1 ||
        o.timeout <= 0) {
        fprintf(stderr, "rateguard-bench: need -n >= 1, -s >= 1, --requests or --duration, --rate >= 0, "
                        "--rcpt-max >= 1, --timeout > 0\n");
        return 64;
    }
    if (log_path && (o.log = fopen(log_path, "w")) == NULL) {
        fprintf(stderr, "rateguard-bench: %s: %s\n", log_path, strerror(errno));
        return 1;
    }
    int rc = load(&la, &o);
    if (o.log && fclose(o.log) != 0)
        rc = 1;
    return rc;
}
