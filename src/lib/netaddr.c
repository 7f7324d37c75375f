/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * netaddr.c - listen endpoint and CIDR parsing and matching (pure).
 * Only numeric addresses are accepted: a policy daemon must not depend on
 * DNS to start.
 */
#include "netaddr.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool parse_port(const char *s, uint16_t *port)
{
    unsigned long value;
    if (!parse_ulong(s, 65535, &value) || value == 0)
        return false;
    *port = (uint16_t)value;
    return true;
}

bool listen_addr_parse(const char *spec, struct listen_addr *out,
                       char *err, size_t errsize)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_str;
    uint16_t port;

    memset(out, 0, sizeof(*out));
    if (strncmp(spec, "unix:", 5) == 0) {
        const char *path = spec + 5;
        if (path[0] != '/') {
            snprintf(err, errsize, "unix socket path must be absolute in '%s'", spec);
            return false;
        }
        if (!str_copy(out->path, path, sizeof(out->path))) {
            snprintf(err, errsize, "unix socket path longer than %zu bytes in '%s'",
                     sizeof(out->path) - 1, spec);
            return false;
        }
        out->kind = LISTEN_UNIX;
        return true;
    }

    out->kind = LISTEN_INET;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof(host)) {
            snprintf(err, errsize, "expected [IPv6]:port, got '%s'", spec);
            return false;
        }
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        port_str = close + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (colon == NULL || strchr(spec, ':') != colon ||
            (size_t)(colon - spec) >= sizeof(host)) {
            snprintf(err, errsize, "expected IPv4:port, [IPv6]:port or unix:/path, got '%s'", spec);
            return false;
        }
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port_str = colon + 1;
    }
    if (!parse_port(port_str, &port)) {
        snprintf(err, errsize, "bad port in '%s' (1-65535)", spec);
        return false;
    }

    struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;
    if (spec[0] != '[' && (strcmp(host, "*") == 0 || inet_pton(AF_INET, host, &sin->sin_addr) == 1)) {
        if (strcmp(host, "*") == 0)
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        out->salen = sizeof(*sin);
        return true;
    }
    if (spec[0] == '[' && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        out->salen = sizeof(*sin6);
        return true;
    }
    snprintf(err, errsize, "'%s' is not a numeric %s address in '%s'", host,
             spec[0] == '[' ? "IPv6" : "IPv4", spec);
    return false;
}

void listen_addr_format(const struct listen_addr *la, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN];

    if (la->kind == LISTEN_UNIX) {
        snprintf(buf, size, "unix:%s", la->path);
        return;
    }
    sockaddr_host((const struct sockaddr *)&la->sa, host, sizeof(host));
    if (la->sa.ss_family == AF_INET6)
        snprintf(buf, size, "[%s]:%u", host,
                 ntohs(((const struct sockaddr_in6 *)&la->sa)->sin6_port));
    else
        snprintf(buf, size, "%s:%u", host,
                 ntohs(((const struct sockaddr_in *)&la->sa)->sin_port));
}

bool cidr_parse(const char *spec, struct cidr *out, char *err, size_t errsize)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(spec, '/');
    size_t hostlen = slash ? (size_t)(slash - spec) : strlen(spec);
    unsigned long prefix;

    memset(out, 0, sizeof(*out));
    if (hostlen == 0 || hostlen >= sizeof(host)) {
        snprintf(err, errsize, "'%s' is not an address or network", spec);
        return false;
    }
    memcpy(host, spec, hostlen);
    host[hostlen] = '\0';

    if (inet_pton(AF_INET, host, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, host, out->addr) == 1)
        out->family = AF_INET6;
    else {
        snprintf(err, errsize, "'%s' is not a numeric IPv4 or IPv6 address in '%s'", host, spec);
        return false;
    }

    unsigned maxbits = out->family == AF_INET ? 32 : 128;
    if (slash == NULL)
        prefix = maxbits;
    else if (!parse_ulong(slash + 1, maxbits, &prefix)) {
        snprintf(err, errsize, "bad prefix length in '%s' (0-%u)", spec, maxbits);
        return false;
    }
    out->prefix = (unsigned)prefix;

    /* Zero the host part so that 10.1.2.3/8 means 10.0.0.0/8. */
    for (unsigned bit = out->prefix; bit < maxbits; bit++)
        out->addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
    return true;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return (a[whole] & mask) == (b[whole] & mask);
}

bool cidr_match(const struct cidr *net, const struct sockaddr *sa)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        return net->family == AF_INET &&
               prefix_equal(net->addr, (const uint8_t *)&sin->sin_addr, net->prefix);
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (net->family == AF_INET6)
            return prefix_equal(net->addr, a, net->prefix);
        if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0)
            return prefix_equal(net->addr, a + 12, net->prefix);
    }
    return false;
}

bool cidr_list_match(const struct cidr *nets, size_t count, const struct sockaddr *sa)
{
    for (size_t i = 0; i < count; i++)
        if (cidr_match(&nets[i], sa))
            return true;
    return false;
}

bool sockaddr_parse_host(const char *text, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

bool netaddr_host_is_loopback(const char *host)
{
    char bare[INET6_ADDRSTRLEN + 2];
    size_t len = strlen(host);
    if (strcasecmp(host, "localhost") == 0)
        return true;
    /* "[::1]" as a URL writes it */
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(bare)) {
        memcpy(bare, host + 1, len - 2);
        bare[len - 2] = '\0';
        host = bare;
    }
    struct sockaddr_storage ss;
    if (!sockaddr_parse_host(host, &ss))
        return false;       /* a name other than localhost: resolved elsewhere, not ours to trust */
    return netaddr_is_loopback((const struct sockaddr *)&ss);
}

bool netaddr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family != AF_INET6)
        return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

bool client_counter_name(const char *addr, unsigned v4_prefix, unsigned v6_prefix, char *out, size_t size)
{
    struct sockaddr_storage ss;
    if (!sockaddr_parse_host(addr, &ss))
        return false;
    bool v4 = ss.ss_family == AF_INET;
    uint8_t *bytes = v4 ? (uint8_t *)&((struct sockaddr_in *)&ss)->sin_addr
                        : ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
    unsigned bits = v4 ? 32 : 128, prefix = v4 ? v4_prefix : v6_prefix;
    if (prefix > bits)
        prefix = bits;
    for (unsigned i = prefix; i < bits; i++)            /* host part to zero */
        bytes[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
    char text[INET6_ADDRSTRLEN];
    inet_ntop(ss.ss_family, bytes, text, sizeof(text));
    int n = prefix == bits ? snprintf(out, size, "[%s]", text) : snprintf(out, size, "[%s]/%u", text, prefix);
    return n > 0 && (size_t)n < size;
}

void sockaddr_host(const struct sockaddr *sa, char *buf, size_t size)
{
    const void *addr;

    if (sa->sa_family == AF_INET)
        addr = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    else {
        str_copy(buf, "unix", size);
        return;
    }
    if (inet_ntop(sa->sa_family, addr, buf, (socklen_t)size) == NULL)
        str_copy(buf, "?", size);
}
