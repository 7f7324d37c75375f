/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 14-sentry.c - the pure parts of Sentry reporting: DSN parsing (good and
 * bad vectors, table-driven), the masked DSN, the envelope URL, the auth
 * header, and the envelope's exact layout; a legacy KEY:SECRET DSN whose
 * secret stays out of the envelope, and http refused to any host but this
 * one (issue 25).
 */
#include "sentry.h"
#include "tap.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
    static const struct {
        const char *dsn, *scheme, *key, *host, *port, *path, *project, *url, *masked;
    } good[] = {
        {"https://abc123@o1.ingest.sentry.io/42", "https", "abc123", "o1.ingest.sentry.io", "", "", "42",
         "https://o1.ingest.sentry.io/api/42/envelope/", "https://****@o1.ingest.sentry.io/42"},
        {"http://k:oldsecret@127.0.0.1:9000/sentry/x/7", "http", "k", "127.0.0.1", "9000", "/sentry/x", "7",
         "http://127.0.0.1:9000/sentry/x/api/7/envelope/", "http://****@127.0.0.1:9000/sentry/x/7"},
        {"https://k@[::1]:8443/1", "https", "k", "[::1]", "8443", "", "1", "https://[::1]:8443/api/1/envelope/",
         "https://****@[::1]:8443/1"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct sentry_dsn d;
        char err[200] = "", buf[1200];
        ok(sentry_dsn_parse(good[i].dsn, &d, err, sizeof(err)), "parses %s", good[i].dsn);
        is_str(d.scheme, good[i].scheme, "scheme");
        is_str(d.key, good[i].key, "key");
        is_str(d.host, good[i].host, "host");
        is_str(d.port, good[i].port, "port");
        is_str(d.path, good[i].path, "path");
        is_str(d.project, good[i].project, "project");
        sentry_envelope_url(&d, buf, sizeof(buf));
        is_str(buf, good[i].url, "envelope URL");
        sentry_dsn_masked(&d, buf, sizeof(buf));
        is_str(buf, good[i].masked, "masked");
    }

    static const struct {
        const char *dsn, *why;
    } bad[] = {
        {"", "not a DSN (expected https://KEY@HOST/PROJECT_ID)"},
        {"ftp://k@h/1", "the scheme must be http or https"},
        {"https://h/1", "no public key (expected https://KEY@HOST/PROJECT_ID)"},
        {"https://@h/1", "the public key is empty"},
        {"https://k y@h/1", "the public key is not a plain token (letters, digits, - . _ ~)"},
        {"https://k@/1", "no host, or a host with characters a host name cannot have"},
        {"https://k@h", "no project id (expected https://KEY@HOST/PROJECT_ID)"},
        {"https://k@h/", "the project id (the last part of the path) must be a number"},
        {"https://k@h/p1", "the project id (the last part of the path) must be a number"},
        {"https://k@h:0/1", "the port is out of range 1..65535"},
        {"https://k@h:x/1", "the port is not a number"},
        {"https://k@h/a b/1", "the path holds characters a DSN path cannot have"},
        /* the key in clear text across the network (issue 25) */
        {"http://k@sentry.example.com/1",
         "http would send the key in clear text to sentry.example.com: use https (http only to localhost, "
         "127.0.0.0/8 or [::1])"},
        {"http://k:s@192.0.2.7:9000/1",
         "http would send the key in clear text to 192.0.2.7: use https (http only to localhost, 127.0.0.0/8 or [::1])"},
        {"http://k@[2001:db8::1]/1",
         "http would send the key in clear text to [2001:db8::1]: use https (http only to localhost, 127.0.0.0/8 or [::1])"},
        {"http://k@127.example.com/1",
         "http would send the key in clear text to 127.example.com: use https (http only to localhost, 127.0.0.0/8 or [::1])"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sentry_dsn d;
        char err[300] = "";
        ok(!sentry_dsn_parse(bad[i].dsn, &d, err, sizeof(err)), "refuses '%s'", bad[i].dsn);
        is_str(err, bad[i].why, "reason");
    }

    /* http to this machine stays allowed: the tests' receivers. */
    static const char *local[] = {"http://k@127.0.0.1:9000/1", "http://k@127.1.2.3/1", "http://k@[::1]:9000/1",
                                  "http://k@localhost:9000/1", "http://k@LOCALHOST/1", "http://k@[::ffff:127.0.0.1]/1"};
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
        struct sentry_dsn d;
        char err[300] = "";
        ok(sentry_dsn_parse(local[i], &d, err, sizeof(err)), "http to this machine: %s %s", local[i], err);
    }

    struct sentry_dsn d;
    char err[300], buf[1200], env[8192];
    sentry_dsn_parse("https://abc123@o1.ingest.sentry.io/42", &d, err, sizeof(err));
    sentry_auth_header(&d, buf, sizeof(buf));
    is_str(buf, "X-Sentry-Auth: Sentry sentry_version=7, sentry_key=abc123, sentry_client=rateguard/0.1.0", "auth header");

    struct sentry_event ev = {
        .event_id = "0123456789abcdef0123456789abcdef", .time_us = 1700000000123456, .level = "error",
        .process = "writer", .instance = "rateguard-0011223344556677", .server_name = "mx1", .release = "r1",
        .environment = "test", .message = "db \"down\"", .template = "db %s", .signal = 0, .pid = 42,
        .suppressed = 3,
    };
    ok(sentry_envelope(&d, &ev, 1700000001000000, env, sizeof(env)), "envelope");
    const char *payload =
        "{\"event_id\":\"0123456789abcdef0123456789abcdef\",\"timestamp\":\"2023-11-14T22:13:20.123456Z\","
        "\"level\":\"error\",\"logger\":\"rateguard.writer\",\"platform\":\"c\",\"server_name\":\"mx1\","
        "\"release\":\"r1\",\"environment\":\"test\",\"message\":{\"formatted\":\"db \\\"down\\\"\",\"message\":\"db %s\"},"
        "\"fingerprint\":[\"db %s\"],\"tags\":{\"process\":\"writer\",\"instance\":\"rateguard-0011223344556677\"},"
        "\"extra\":{\"pid\":42,\"suppressed_repeats\":3},\"sdk\":{\"name\":\"rateguard\",\"version\":\"0.1.0\"}}";
    char want[8192];
    snprintf(want, sizeof(want),
             "{\"event_id\":\"0123456789abcdef0123456789abcdef\",\"dsn\":\"https://abc123@o1.ingest.sentry.io/42\","
             "\"sent_at\":\"2023-11-14T22:13:21.000000Z\"}\n{\"type\":\"event\",\"length\":%zu}\n%s\n",
             strlen(payload), payload);
    is_str(env, want, "the envelope, byte for byte");

    /* A legacy KEY:SECRET DSN: the envelope's dsn is KEY@host, the secret
     * is nowhere in what is sent (issue 25). */
    struct sentry_dsn legacy;
    ok(sentry_dsn_parse("https://abc123:topsecret99@o1.ingest.sentry.io:8443/sub/42", &legacy, err, sizeof(err)),
       "a legacy DSN with a secret parses");
    sentry_dsn_public(&legacy, buf, sizeof(buf));
    is_str(buf, "https://abc123@o1.ingest.sentry.io:8443/sub/42", "public DSN: the key, no secret");
    ok(sentry_envelope(&legacy, &ev, 1700000001000000, env, sizeof(env)), "its envelope");
    ok(strstr(env, "\"dsn\":\"https://abc123@o1.ingest.sentry.io:8443/sub/42\",") != NULL, "the envelope's dsn: KEY@host");
    ok(strstr(env, "topsecret99") == NULL, "the secret is nowhere in the envelope");
    sentry_auth_header(&legacy, buf, sizeof(buf));
    ok(strstr(buf, "topsecret99") == NULL, "nor in the auth header");
    sentry_dsn_masked(&legacy, buf, sizeof(buf));
    is_str(buf, "https://****@o1.ingest.sentry.io:8443/sub/42", "the masked DSN (for logs): neither key nor secret");
    ev.signal = 11;
    ok(sentry_event_json(&ev, env, sizeof(env)), "a dead child's event");
    ok(strstr(env, "\"fingerprint\":[\"db %s\",\"signal 11\"]") != NULL, "the signal is in the fingerprint");
    ok(strstr(env, "\"tags\":{\"process\":\"writer\",\"instance\":\"rateguard-0011223344556677\",\"signal\":\"11\"}") != NULL,
       "and a tag");
    ok(!sentry_event_json(&ev, env, 100), "too small a buffer: false");

    char id1[33], id2[33];
    sentry_event_id(id1);
    sentry_event_id(id2);
    ok(strlen(id1) == 32 && strspn(id1, "0123456789abcdef") == 32, "event id: 32 hex digits");
    ok(strcmp(id1, id2) != 0, "event ids differ");
    return done_testing();
}
