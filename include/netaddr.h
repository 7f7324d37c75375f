/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * netaddr.h - pure parsing of the address forms the configuration uses:
 * listen endpoints ("127.0.0.1:10033", "[::1]:10033", "unix:/path") and
 * client networks in CIDR notation ("192.0.2.0/24", "2001:db8::/32").
 * No I/O: the master binds what these functions describe.
 */
#ifndef RG_NETADDR_H
#define RG_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

enum listen_kind { LISTEN_INET, LISTEN_UNIX };

struct listen_addr {
    enum listen_kind kind;
    struct sockaddr_storage sa;     /* LISTEN_INET: address and port */
    socklen_t salen;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* LISTEN_UNIX */
};

/* Parse one listen specification. On failure writes a reason to err. */
bool listen_addr_parse(const char *spec, struct listen_addr *out,
                       char *err, size_t errsize);

/* Format a listen address back for logs ("[::1]:10033", "unix:/x"). */
void listen_addr_format(const struct listen_addr *la, char *buf, size_t size);

struct cidr {
    int family;            /* AF_INET or AF_INET6 */
    uint8_t addr[16];      /* network bytes, host part zeroed */
    unsigned prefix;       /* 0..32 or 0..128 */
};

/* Parse "addr/prefix" or a bare address (a host route). */
bool cidr_parse(const char *spec, struct cidr *out, char *err, size_t errsize);

/* True when the socket address (AF_INET or AF_INET6, IPv4-mapped IPv6
 * compared as IPv4) lies inside the network. */
bool cidr_match(const struct cidr *net, const struct sockaddr *sa);

/* True when the address lies inside any of the count networks. */
bool cidr_list_match(const struct cidr *nets, size_t count, const struct sockaddr *sa);

/* A numeric IPv4 or IPv6 address ("192.0.2.1", "2001:db8::1") as a socket
 * address (port 0); false when it is neither. */
bool sockaddr_parse_host(const char *text, struct sockaddr_storage *out);

/* True when host names this machine: "localhost", an IPv4 address in
 * 127.0.0.0/8, "::1" or "[::1]" (IPv4-mapped loopback too). Any other name
 * is false: where it resolves is not known here. Used to allow a
 * credential over a clear-text connection (SMTP report, Sentry http). */
bool netaddr_host_is_loopback(const char *host);

/* An address of 127.0.0.0/8, ::1, or 127.0.0.0/8 mapped into IPv6; false
 * for any other family. */
bool netaddr_is_loopback(const struct sockaddr *sa);

/* The counter name of an unauthenticated client: its address, or the
 * network of the given prefix it lies in ("[192.0.2.7]",
 * "[2001:db8:1:2::]/64"); false when addr is not a numeric address. */
bool client_counter_name(const char *addr, unsigned v4_prefix, unsigned v6_prefix, char *out, size_t size);

/* Write the numeric host of a socket address ("192.0.2.1", "::1", "unix"). */
void sockaddr_host(const struct sockaddr *sa, char *buf, size_t size);

#endif
