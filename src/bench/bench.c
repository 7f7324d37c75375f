/*
 * bench.c - rateguard-bench: the load generator and the bare reference
 * server used by `make bench`.
 *
 *   rateguard-bench --connect HOST:PORT|unix:/path -n CONNS -s SENDERS
 *                   (--requests R | --duration SECONDS) [--json]
 *       N persistent connections, each with one request outstanding
 *       (Postfix's smtpd waits for each answer), full Postfix 3.7 DATA
 *       requests from a pool of S senders; prints requests/s and latency
 *       percentiles.
 *   rateguard-bench --echo-server --listen HOST:PORT --workers W
 *       The same prefork shape as rateguard (W processes, one connection
 *       each, the same request scanner) answering action=DUNNO with no cache
 *       and no database: the physical limit of the design on this machine.
 *   rateguard-bench --sizes ENTRIES
 *       Shared memory per cached sender for a cache of ENTRIES.
 */
#include "cache.h"
#include "netaddr.h"
#include "policy.h"

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

struct conn {
    int fd;
    double sent_at;
    size_t got;             /* reply bytes so far */
    char reply[256];
};

static int build_request(char *buf, size_t size, unsigned sender, unsigned long serial)
{
    return snprintf(buf, size,
                    "request=smtpd_access_policy\nprotocol_state=DATA\nprotocol_name=ESMTP\n"
                    "client_address=127.0.0.1\nclient_name=localhost\nclient_port=53080\n"
                    "reverse_client_name=localhost\nserver_address=127.0.0.1\nserver_port=25\n"
                    "helo_name=client.example.org\nsender=user%u@bench.example.org\nrecipient=\n"
                    "recipient_count=1\nqueue_id=B%010lX\ninstance=bench.%lu.0\nsize=0\netrn_domain=\nstress=\n"
                    "sasl_method=PLAIN\nsasl_username=user%u@bench.example.org\nsasl_sender=\nccert_subject=\n"
                    "ccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\n"
                    "encryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n",
                    sender, serial, serial, sender);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int load(const struct listen_addr *la, int nconn, unsigned senders, long requests, double duration,
                bool json)
{
    struct conn *c = calloc((size_t)nconn, sizeof(*c));
    long cap = requests > 0 ? requests : 20000000;
    double *lat = malloc((size_t)cap * sizeof(double));
    long sent = 0, done = 0, errors = 0;
    unsigned long serial = (unsigned long)time(NULL) * 1000000ul;
    unsigned seed = (unsigned)getpid();
    char req[2048];
    int ep = epoll_create1(0);

    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < nconn; i++) {
        c[i].fd = open_socket(la, false);
        if (c[i].fd < 0) {
            perror("connect");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
    }
    double start = now_s(), end_at = duration > 0 ? start + duration : 0;
    for (int i = 0; i < nconn && (requests == 0 || sent < requests); i++) {
        int n = build_request(req, sizeof(req), (unsigned)rand_r(&seed) % senders, serial++);
        c[i].sent_at = now_s();
        if (write(c[i].fd, req, (size_t)n) != n)
            errors++;
        sent++;
    }
    struct epoll_event evs[256];
    while (done < sent) {
        int k = epoll_wait(ep, evs, 256, 10000);
        if (k <= 0) {
            fprintf(stderr, "bench: no reply for 10 s (%ld of %ld answered)\n", done, sent);
            return 1;
        }
        for (int e = 0; e < k; e++) {
            struct conn *cn = &c[evs[e].data.u32];
            ssize_t r = read(cn->fd, cn->reply + cn->got, sizeof(cn->reply) - 1 - cn->got);
            if (r <= 0) {
                fprintf(stderr, "bench: connection closed by the server\n");
                return 1;
            }
            cn->got += (size_t)r;
            cn->reply[cn->got] = '\0';
            if (cn->got < 2 || strcmp(cn->reply + cn->got - 2, "\n\n") != 0)
                continue;
            double t = now_s();
            if (done < cap)
                lat[done] = t - cn->sent_at;
            done++;
            cn->got = 0;
            bool more = requests > 0 ? sent < requests : t < end_at;
            if (more) {
                int n = build_request(req, sizeof(req), (unsigned)rand_r(&seed) % senders, serial++);
                cn->sent_at = now_s();
                if (write(cn->fd, req, (size_t)n) != n)
                    errors++;
                sent++;
            }
        }
    }
    double elapsed = now_s() - start;
    long kept = done < cap ? done : cap;
    qsort(lat, (size_t)kept, sizeof(double), cmp_double);
#define PCT(p) (lat[(long)((double)(kept - 1) * (p))] * 1000.0)
    if (json)
        printf("{\"connections\":%d,\"senders\":%u,\"requests\":%ld,\"seconds\":%.3f,\"rps\":%.0f,"
               "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%ld}\n",
               nconn, senders, done, elapsed, (double)done / elapsed, PCT(0.5), PCT(0.9), PCT(0.99), PCT(0.999),
               lat[kept - 1] * 1000.0, errors);
    else
        printf("%d connections, %u senders: %ld requests in %.2f s = %.0f requests/s; latency ms p50 %.3f "
               "p90 %.3f p99 %.3f p99.9 %.3f max %.3f\n",
               nconn, senders, done, elapsed, (double)done / elapsed, PCT(0.5), PCT(0.9), PCT(0.99), PCT(0.999),
               lat[kept - 1] * 1000.0);
    for (int i = 0; i < nconn; i++)
        close(c[i].fd);
    free(c);
    free(lat);
    return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"connect", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
        {"echo-server", no_argument, NULL, 'e'}, {"workers", required_argument, NULL, 'w'},
        {"requests", required_argument, NULL, 'r'}, {"duration", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'}, {"sizes", required_argument, NULL, 'z'}, {NULL, 0, NULL, 0},
    };
    const char *addr = NULL;
    int nconn = 1, workers = 140, opt;
    unsigned senders = 1000;
    long requests = 0;
    double duration = 0;
    bool echo = false, json = false;

    while ((opt = getopt_long(argc, argv, "n:s:", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': case 'l': addr = optarg; break;
        case 'e': echo = true; break;
        case 'w': workers = atoi(optarg); break;
        case 'r': requests = atol(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'j': json = true; break;
        case 'n': nconn = atoi(optarg); break;
        case 's': senders = (unsigned)atol(optarg); break;
        case 'z': {
            uint32_t entries = (uint32_t)atol(optarg);
            printf("cache of %u entries: %zu bytes of shared memory, %.1f bytes per sender (entry %zu)\n",
                   entries, cache_region_size(entries, 0), (double)cache_region_size(entries, 0) / entries,
                   sizeof(struct cache_entry));
            return 0;
        }
        default:
            fprintf(stderr, "usage: rateguard-bench --connect ADDR -n CONNS -s SENDERS (--requests R | "
                            "--duration S) [--json]\n       rateguard-bench --echo-server --listen ADDR "
                            "[--workers W]\n       rateguard-bench --sizes ENTRIES\n");
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
    if (senders == 0 || nconn < 1 || (requests <= 0 && duration <= 0)) {
        fprintf(stderr, "rateguard-bench: need -n >= 1, -s >= 1 and --requests or --duration\n");
        return 64;
    }
    return load(&la, nconn, senders, requests, duration, json);
}
