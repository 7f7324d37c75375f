/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 03-netaddr.c - listen endpoints and CIDR networks: parsing, formatting,
 * matching (IPv4, IPv6, IPv4-mapped IPv6); which hosts are this machine
 * (a credential may go to them in clear text).
 */
#include "netaddr.h"
#include "tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static void test_listen(void)
{
    struct listen_addr la;
    char err[256], buf[128];

    ok(listen_addr_parse("127.0.0.1:10033", &la, err, sizeof(err)), "IPv4 listen");
    listen_addr_format(&la, buf, sizeof(buf));
    is_str(buf, "127.0.0.1:10033", "IPv4 round trip");
    ok(listen_addr_parse("[::1]:10033", &la, err, sizeof(err)), "IPv6 listen");
    listen_addr_format(&la, buf, sizeof(buf));
    is_str(buf, "[::1]:10033", "IPv6 round trip");
    ok(listen_addr_parse("*:25", &la, err, sizeof(err)), "* means any IPv4 address");
    listen_addr_format(&la, buf, sizeof(buf));
    is_str(buf, "0.0.0.0:25", "* formats as 0.0.0.0");
    ok(listen_addr_parse("unix:/run/x.sock", &la, err, sizeof(err)), "unix listen");
    is_str(la.path, "/run/x.sock", "unix path");

    ok(!listen_addr_parse("::1:10033", &la, err, sizeof(err)), "bare IPv6 needs brackets");
    ok(!listen_addr_parse("127.0.0.1:70000", &la, err, sizeof(err)), "port above 65535");
    ok(!listen_addr_parse("127.0.0.1:", &la, err, sizeof(err)), "empty port");
    ok(!listen_addr_parse("127.0.0.1:1x", &la, err, sizeof(err)), "junk in port");
    ok(!listen_addr_parse("[127.0.0.1]:1", &la, err, sizeof(err)), "IPv4 in brackets");
    char longpath[200] = "unix:/";
    memset(longpath + 6, 'a', 150);
    longpath[156] = '\0';
    ok(!listen_addr_parse(longpath, &la, err, sizeof(err)), "unix path too long");
    ok(strncmp(err, "unix socket path longer than 107 bytes in '", 43) == 0, "too long: message");
}

static struct sockaddr_storage addr(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(text, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, text, &s6->sin6_addr);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        inet_pton(AF_INET, text, &s4->sin_addr);
    }
    return ss;
}

static void match(const char *net, const char *host, bool want)
{
    struct cidr c;
    char err[256];
    struct sockaddr_storage ss = addr(host);
    ok(cidr_parse(net, &c, err, sizeof(err)) && cidr_match(&c, (struct sockaddr *)&ss) == want,
       "%s %s %s", host, want ? "in" : "not in", net);
}

static void test_cidr(void)
{
    struct cidr c;
    char err[256];

    match("127.0.0.0/8", "127.1.2.3", true);
    match("127.0.0.0/8", "128.0.0.1", false);
    match("10.1.2.3/8", "10.200.0.1", true);            /* host bits ignored */
    match("192.0.2.1", "192.0.2.1", true);             /* bare address = /32 */
    match("192.0.2.1", "192.0.2.2", false);
    match("0.0.0.0/0", "203.0.113.9", true);
    match("192.0.2.128/25", "192.0.2.127", false);
    match("192.0.2.128/25", "192.0.2.200", true);
    match("::1/128", "::1", true);
    match("::1/128", "::2", false);
    match("2001:db8::/32", "2001:db8:ffff::1", true);
    match("2001:db8::/32", "2001:db9::1", false);
    match("2001:db8:0:1::/64", "2001:db8:0:1:abcd::1", true);
    match("2001:db8:0:1::/63", "2001:db8:0:2::1", false);
    match("127.0.0.0/8", "::ffff:127.0.0.1", true);     /* IPv4-mapped */
    match("::1/128", "127.0.0.1", false);
    match("127.0.0.0/8", "::1", false);

    ok(!cidr_parse("10.0.0.0/33", &c, err, sizeof(err)), "/33 refused");
    ok(!cidr_parse("::/129", &c, err, sizeof(err)), "/129 refused");
    ok(!cidr_parse("10.0.0.0/", &c, err, sizeof(err)), "empty prefix refused");
    ok(!cidr_parse("/8", &c, err, sizeof(err)), "empty address refused");
    ok(!cidr_parse("mail.example.com", &c, err, sizeof(err)), "hostname refused");
}

static void counter(const char *addr, unsigned v4, unsigned v6, const char *want)
{
    char out[64] = "";
    bool got = client_counter_name(addr, v4, v6, out, sizeof(out));
    if (want)
        is_str(got ? out : "(refused)", want, "%s", addr);
    else
        ok(!got, "not an address: refused");
}

static void test_counter_names(void)
{
    counter("192.0.2.7", 32, 64, "[192.0.2.7]");
    counter("192.0.2.7", 24, 64, "[192.0.2.0]/24");
    counter("2001:db8:1:2:aaaa::5", 32, 64, "[2001:db8:1:2::]/64");
    counter("2001:db8:1:2:aaaa::5", 32, 128, "[2001:db8:1:2:aaaa::5]");
    counter("2001:db8:1:2:aaaa::5", 32, 200, "[2001:db8:1:2:aaaa::5]");
    counter("2001:db8:1:2:aaaa::5", 32, 0, "[::]/0");
    counter("unknown", 32, 64, NULL);
    counter("", 32, 64, NULL);
}

static void test_loopback(void)
{
    static const struct {
        const char *host;
        bool want;
    } cases[] = {
        {"localhost", true}, {"LocalHost", true}, {"127.0.0.1", true}, {"127.255.0.9", true}, {"::1", true},
        {"[::1]", true}, {"::ffff:127.0.0.1", true}, {"[0:0:0:0:0:0:0:1]", true},
        {"127.example.com", false}, {"localhost.example.com", false}, {"128.0.0.1", false}, {"192.0.2.1", false},
        {"::2", false}, {"[2001:db8::1]", false}, {"::ffff:192.0.2.1", false}, {"[::1", false}, {"", false},
        {"sentry.example.com", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ok(netaddr_host_is_loopback(cases[i].host) == cases[i].want, "loopback '%s': %s", cases[i].host,
           cases[i].want ? "yes" : "no");
}

int main(void)
{
    test_listen();
    test_cidr();
    test_counter_names();
    test_loopback();
    return done_testing();
}
