/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * fuzz_netaddr.c - libFuzzer target for the address forms of the
 * configuration (netaddr.c): the input, as one string, goes to the CIDR
 * parser (allowed_clients) and to the listen parser (listen). A refusal
 * must come with a reason that fits its buffer; an accepted network must
 * hold its own addresses and no other, in both spellings of an IPv4
 * client; an accepted listen address must read back the same from its
 * formatted form.
 */
#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

#define CHECK(cond) FUZZ_CHECK(cond)

/* A client address as accept() gives it: IPv4, or IPv6 (which may be
 * IPv4-mapped on a dual-stack socket). */
static void client(struct sockaddr_storage *ss, int family, const uint8_t *addr)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, addr, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, addr, 16);
    }
}

static void flip(uint8_t *addr, unsigned bit)
{
    addr[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8));
}

/* An error message: written, terminated inside a buffer of this size
 * (malloc'd to the byte, so ASan sees an overrun). */
static void check_refusal(bool ok, char *err, size_t errsize)
{
    if (!ok && errsize > 0)
        CHECK(memchr(err, '\0', errsize) != NULL && (errsize == 1 || err[0] != '\0'));
}

static void fuzz_cidr(const char *spec, const uint8_t *data, size_t size)
{
    struct cidr net, again;
    struct sockaddr_storage ss;
    char *err = malloc(256), text[INET6_ADDRSTRLEN + 8];

    err[0] = '\0';
    bool ok = cidr_parse(spec, &net, err, 256);
    check_refusal(ok, err, 256);
    free(err);
    /* A short error buffer too: the message is cut, not overrun. */
    size_t small = size ? data[0] % 16 + 1 : 1;
    err = malloc(small);
    CHECK(cidr_parse(spec, &again, err, small) == ok);
    check_refusal(ok, err, small);
    free(err);
    if (!ok)
        return;

    unsigned bits = net.family == AF_INET ? 32 : 128;
    CHECK(net.family == AF_INET || net.family == AF_INET6);
    CHECK(net.prefix <= bits);
    /* The host part is zero: 10.1.2.3/8 is 10.0.0.0/8. */
    for (unsigned b = net.prefix; b < bits; b++)
        CHECK((net.addr[b / 8] & (0x80u >> (b % 8))) == 0);
    for (unsigned b = bits; b < 128; b++)
        CHECK((net.addr[b / 8] & (0x80u >> (b % 8))) == 0);

    /* The network holds its own address, with any host bits set. */
    uint8_t a[16];
    memcpy(a, net.addr, 16);
    client(&ss, net.family, a);
    CHECK(cidr_match(&net, (struct sockaddr *)&ss));
    for (size_t i = 1; i < size && i < 9; i++) {
        unsigned b = data[i] % bits;
        memcpy(a, net.addr, 16);
        flip(a, b);
        client(&ss, net.family, a);
        /* ... and none that differs inside the prefix. */
        CHECK(cidr_match(&net, (struct sockaddr *)&ss) == (b >= net.prefix));
        if (net.family == AF_INET) {
            /* The same IPv4 client seen on a dual-stack socket. */
            uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            memcpy(mapped + 12, a, 4);
            client(&ss, AF_INET6, mapped);
            CHECK(cidr_match(&net, (struct sockaddr *)&ss) == (b >= net.prefix));
        }
    }
    /* A network never holds an address of the other family (bar the
     * IPv4-mapped form above). */
    memset(a, 0xff, 16);
    client(&ss, net.family == AF_INET ? AF_INET6 : AF_INET, a);
    CHECK(!cidr_match(&net, (struct sockaddr *)&ss));

    /* Written out again, it reads back the same. */
    CHECK(inet_ntop(net.family, net.addr, text, sizeof(text)) != NULL);
    snprintf(text + strlen(text), 8, "/%u", net.prefix);
    char err2[256];
    CHECK(cidr_parse(text, &again, err2, sizeof(err2)));
    CHECK(again.family == net.family && again.prefix == net.prefix && memcmp(again.addr, net.addr, 16) == 0);
}

static void fuzz_listen(const char *spec)
{
    struct listen_addr la, again;
    char err[256], text[sizeof(la.path) + 16];

    err[0] = '\0';
    bool ok = listen_addr_parse(spec, &la, err, sizeof(err));
    check_refusal(ok, err, sizeof(err));
    if (!ok)
        return;
    if (la.kind == LISTEN_UNIX) {
        CHECK(la.path[0] == '/' && strlen(la.path) < sizeof(la.path));
    } else {
        CHECK(la.kind == LISTEN_INET);
        if (la.sa.ss_family == AF_INET)
            CHECK(la.salen == sizeof(struct sockaddr_in) && ((struct sockaddr_in *)&la.sa)->sin_port != 0);
        else
            CHECK(la.sa.ss_family == AF_INET6 && la.salen == sizeof(struct sockaddr_in6) &&
                  ((struct sockaddr_in6 *)&la.sa)->sin6_port != 0);
    }
    listen_addr_format(&la, text, sizeof(text));
    CHECK(listen_addr_parse(text, &again, err, sizeof(err)));
    CHECK(again.kind == la.kind && again.salen == la.salen && memcmp(&again.sa, &la.sa, sizeof(la.sa)) == 0 &&
          strcmp(again.path, la.path) == 0);
    /* A short buffer cuts the text, terminated. */
    listen_addr_format(&la, text, 5);
    CHECK(memchr(text, '\0', 5) != NULL);
}

/* The counter name of an unauthenticated client (client_address comes
 * from Postfix): refused, or "[ADDRESS]" / "[NETWORK]/PREFIX" that fits,
 * and the same name for every address of that network. */
static void fuzz_counter_name(const char *addr, const uint8_t *rest, size_t rest_size)
{
    unsigned v4 = rest_size > 0 ? rest[0] % 40 : 32, v6 = rest_size > 1 ? rest[1] % 140 : 64;
    char name[64], again[64];
    if (!client_counter_name(addr, v4, v6, name, sizeof(name)))
        return;
    CHECK(memchr(name, '\0', sizeof(name)) != NULL && name[0] == '[' && strchr(name, ']') != NULL);
    /* The network's own address maps to the same name. */
    char net[INET6_ADDRSTRLEN + 1];
    size_t n = (size_t)(strchr(name, ']') - name - 1);
    CHECK(n < sizeof(net));
    memcpy(net, name + 1, n);
    net[n] = '\0';
    CHECK(client_counter_name(net, v4, v6, again, sizeof(again)));
    CHECK(strcmp(name, again) == 0);
    CHECK(!client_counter_name(addr, v4, v6, again, 3));   /* a buffer too small is refused */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The string is the input up to its first NUL or newline (a config
     * value holds neither); what follows steers the match checks. */
    size_t len = 0;
    while (len < size && data[len] != '\0' && data[len] != '\n')
        len++;
    char *spec = malloc(len + 1);
    memcpy(spec, data, len);
    spec[len] = '\0';
    const uint8_t *rest = data + len + (len < size);
    size_t rest_size = size - len - (len < size);

    fuzz_cidr(spec, rest, rest_size);
    fuzz_listen(spec);
    fuzz_counter_name(spec, rest, rest_size);
    free(spec);
    return 0;
}
