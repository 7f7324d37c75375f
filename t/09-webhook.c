/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 09-webhook.c - the webhook's pure parts against PolicydRateGuard's
 * vectors (reference/facts.md): simple token, JWT, payload, URL expansion
 * with encoding.
 */
#include "webhook.h"
#include "tap.h"

#include <stdlib.h>
#include <time.h>

static const char secret[] = "Wk9YZXliVlVtY2pQcFlFUm9KY1U1ZkFFaUpWTk1FU20=";

int main(void)
{
    char token[65], jwt[2048], buf[4096];

    setenv("TZ", "UTC", 1);
    tzset();
    webhook_token(secret, "test@example.com", token);
    is_str(token, "34caa5c52fce98bc56fa3bfd8274a92328f09a6e0b27da2b5d89c1b5c5ed05c5", "simple token vector");

    ok(webhook_jwt(secret, "test@example.com", "policyd-rate-guard", 1700000000, jwt, sizeof(jwt)), "JWT made");
    is_str(jwt,
           "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ0ZXN0QGV4YW1wbGUuY29tIiwiaXNzIjoicG9saWN5ZC1yYXRlLWd1YXJkIiwiaWF0IjoxNzAwMDAwMDAwLCJuYmYiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMDA2MH0.mTYl2RNtit9i1bq_0W-jbGEftsivWdPE4C6qfVDo_Cg",
           "JWT vector");
    ok(!webhook_jwt("not base64!", "a", "b", 1, jwt, sizeof(jwt)), "a secret that is not base64 is refused");
    ok(!webhook_jwt(secret, "a", "b", 1, jwt, 40), "a small buffer is refused");

    struct webhook_event ev = {
        .msgid = "TEST1234567", .sender = "a+b&c@example.org", .client_address = "172.19.0.2",
        .client_name = "unknown", .from_addr = "test-from@example.com", .to_addr = "x\"y@example.com",
        .rcpt_count = 10, .quota = 1000, .quota_reset = 1000, .used = 1005,
        .time_us = 1694090096000000,   /* 2023-09-07 12:34:56 UTC */
    };
    ok(webhook_payload(&ev, buf, sizeof(buf)), "payload made");
    is_str(buf,
           "{\"msgid\": \"TEST1234567\", \"sender\": \"a+b&c@example.org\", \"client_address\": \"172.19.0.2\", "
           "\"client_name\": \"unknown\", \"rcpt_count\": 10, \"from_addr\": \"test-from@example.com\", "
           "\"to_addr\": \"x\\\"y@example.com\", \"timestamp\": \"2023-09-07 12:34:56\", \"quota\": 1000, "
           "\"quota_reset\": 1000, \"used\": 1005}",
           "payload: keys in order, numbers as numbers, strings escaped");
    ok(!webhook_payload(&ev, buf, 20), "payload: small buffer refused");

    ok(webhook_url("https://api.example.com/policyd/{sender}?token={token}&q={quota}&t={timestamp}&x={nope}",
                   &ev, "abc", buf, sizeof(buf)), "URL expanded");
    is_str(buf, "https://api.example.com/policyd/a%2Bb%26c%40example.org?token=abc&q=1000&t=2023-09-07%2012%3A34%3A56&x={nope}",
           "placeholders URL-encoded, unknown ones kept");
    struct webhook_event dots = ev;
    dots.sender = "..";
    ok(webhook_url("http://x/hook/{sender}/blocked", &dots, NULL, buf, sizeof(buf)), "URL of sender ..");
    is_str(buf, "http://x/hook/%2E%2E/blocked", "a sender of .. is encoded, never a dot segment");
    dots.sender = ".";
    ok(webhook_url("http://x/hook/{sender}/blocked", &dots, NULL, buf, sizeof(buf)), "URL of sender .");
    is_str(buf, "http://x/hook/%2E/blocked", "a sender of . is encoded");
    dots.sender = "a..b";
    ok(webhook_url("http://x/hook/{sender}", &dots, NULL, buf, sizeof(buf)), "URL of sender a..b");
    is_str(buf, "http://x/hook/a..b", "dots inside a name stay as they are");
    ok(webhook_wants_token("http://x/{token}"), "{token} detected");
    ok(!webhook_wants_token("http://x/{sender}"), "no {token}");
    ok(webhook_url("http://x/{token}", &ev, NULL, buf, sizeof(buf)) && strcmp(buf, "http://x/") == 0,
       "{token} without a token expands to nothing");
    ok(!webhook_url("http://x/{sender}{sender}{sender}", &ev, NULL, buf, 30), "URL: small buffer refused");
    ok(webhook_url("http://x/?e={event}", &ev, NULL, buf, sizeof(buf)), "URL with {event}");
    is_str(buf, "http://x/?e=QUOTA_LIMIT_REACHED", "{event} of a block");

    ev.event = "QUOTA_WARNING";
    ok(webhook_url("http://x/?e={event}", &ev, NULL, buf, sizeof(buf)), "URL with {event}");
    is_str(buf, "http://x/?e=QUOTA_WARNING", "{event} of a warning");
    ok(webhook_payload(&ev, buf, sizeof(buf)), "warning payload made");
    const char *tail = ", \"used\": 1005, \"event\": \"QUOTA_WARNING\"}";
    ok(strlen(buf) > strlen(tail) && strcmp(buf + strlen(buf) - strlen(tail), tail) == 0,
       "a warning's payload ends with its event; a block's has none (PolicydRateGuard's)");
    return done_testing();
}
