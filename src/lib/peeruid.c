/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * peeruid.c - the owner of a local TCP peer, from the kernel's socket
 * table through NETLINK_SOCK_DIAG (an inet_diag_req_v2 naming the exact
 * four-tuple, not a dump).
 *
 * Why sock_diag and not /proc/net/tcp: the kernel answers an exact lookup
 * from its hash tables, O(1) per accept, where /proc/net/tcp prints every
 * socket of the host (a flood of connections would make each accept read
 * thousands of lines: the attack itself would slow the check); and the
 * systemd unit hides /proc/net (ProcSubset=pid). sock_diag needs no
 * privilege for reading, only AF_NETLINK in RestrictAddressFamilies.
 *
 * The peer's socket is looked up with the peer as source and our end as
 * destination: the kernel finds a socket by its own local address first.
 */
#include "peeruid.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int diag_fd = -1;
static unsigned diag_seq;

/* An IPv4-mapped IPv6 address as IPv4; other addresses as they are. */
static void unmap(const struct sockaddr_storage *in, struct sockaddr_storage *out)
{
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)in;
    *out = *in;
    if (in->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)out;
        uint16_t port = s6->sin6_port;
        struct in_addr a;
        memcpy(&a, &s6->sin6_addr.s6_addr[12], 4);
        memset(out, 0, sizeof(*out));
        s4->sin_family = AF_INET;
        s4->sin_port = port;
        s4->sin_addr = a;
    }
}

/* Address and port of a socket address into an inet_diag id half. */
static void put_end(const struct sockaddr_storage *ss, __be16 *port, __be32 addr[4])
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        *port = s4->sin_port;
        memcpy(addr, &s4->sin_addr, 4);
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        *port = s6->sin6_port;
        memcpy(addr, &s6->sin6_addr, 16);
    }
}

static bool diag_open(char *err, size_t errsize)
{
    if (diag_fd >= 0)
        return true;
    diag_fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (diag_fd < 0) {
        snprintf(err, errsize, "socket(AF_NETLINK, NETLINK_SOCK_DIAG): %s", strerror(errno));
        return false;
    }
    return true;
}

static void diag_close(void)
{
    close(diag_fd);
    diag_fd = -1;
}

enum peeruid_result peeruid_lookup(const struct sockaddr_storage *peer_in, const struct sockaddr_storage *local_in,
                                   uid_t *uid, char *err, size_t errsize)
{
    struct sockaddr_storage peer, local;
    unmap(peer_in, &peer);
    unmap(local_in, &local);
    if ((peer.ss_family != AF_INET && peer.ss_family != AF_INET6) || peer.ss_family != local.ss_family) {
        snprintf(err, errsize, "address families %d and %d cannot be looked up", peer.ss_family, local.ss_family);
        return PEERUID_FAILED;
    }
    if (!diag_open(err, errsize))
        return PEERUID_FAILED;

    struct {
        struct nlmsghdr nh;
        struct inet_diag_req_v2 req;
    } msg;
    memset(&msg, 0, sizeof(msg));
    msg.nh.nlmsg_len = sizeof(msg);
    msg.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nh.nlmsg_flags = NLM_F_REQUEST;     /* no NLM_F_DUMP: one socket, by its key */
    msg.nh.nlmsg_seq = ++diag_seq;
    msg.req.sdiag_family = (__u8)peer.ss_family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0u;
    put_end(&peer, &msg.req.id.idiag_sport, msg.req.id.idiag_src);
    put_end(&local, &msg.req.id.idiag_dport, msg.req.id.idiag_dst);
    msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(diag_fd, &msg, sizeof(msg), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        snprintf(err, errsize, "sendto(NETLINK_SOCK_DIAG): %s", strerror(errno));
        diag_close();
        return PEERUID_FAILED;
    }
    /* The kernel answers before sendto returns; the wait only guards
     * against a reply that never comes. Replies to an earlier, abandoned
     * request (other sequence number) are skipped. */
    for (;;) {
        union {
            struct nlmsghdr nh;
            char bytes[8192];
        } buf;
        struct pollfd p = {.fd = diag_fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0) {
            snprintf(err, errsize, "NETLINK_SOCK_DIAG: no answer");
            diag_close();
            return PEERUID_FAILED;
        }
        ssize_t n = recv(diag_fd, &buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errsize, "recv(NETLINK_SOCK_DIAG): %s", strerror(errno));
            diag_close();
            return PEERUID_FAILED;
        }
        size_t len = (size_t)n;
        for (struct nlmsghdr *nh = &buf.nh; NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
            if (nh->nlmsg_seq != diag_seq)
                continue;
            if (nh->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(nh);
                if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(*e))) {
                    snprintf(err, errsize, "NETLINK_SOCK_DIAG: short error message");
                    return PEERUID_FAILED;
                }
                if (e->error == -ENOENT)
                    return PEERUID_REMOTE;
                snprintf(err, errsize, "NETLINK_SOCK_DIAG: %s", strerror(-e->error));
                return PEERUID_FAILED;
            }
            if (nh->nlmsg_type == SOCK_DIAG_BY_FAMILY && nh->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
                const struct inet_diag_msg *m = NLMSG_DATA(nh);
                /* A socket no process holds reports no inode, and in
                 * TIME_WAIT uid 0: its owner is unknown, not root. */
                if (m->idiag_inode == 0)
                    return PEERUID_CLOSED;
                *uid = (uid_t)m->idiag_uid;
                return PEERUID_FOUND;
            }
        }
    }
}
