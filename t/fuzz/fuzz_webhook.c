/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * fuzz_webhook.c - libFuzzer target for the webhook's pure parts
 * (webhook.c): the URL template expansion, the JSON payload, the simple
 * token and the JWT. Their inputs come from outside: the event fields are
 * what Postfix sent (read back from the queue or spool file, possibly
 * damaged), the URL template, secret and issuer from the configuration.
 *
 * The input is NUL-separated fields, so a field can hold any byte a C
 * string can (newlines and control bytes included):
 *
 *   url template, msgid, sender, client_address, client_name, from_addr,
 *   to_addr, secret, issuer, "rcpt quota quota_reset used time_us iat size"
 *
 * Missing fields are empty, missing numbers 0. Every output buffer is
 * malloc'd at exactly the size passed, so ASan sees a byte written past
 * it. The URL and the payload are compared with what they must be (an
 * expansion and a JSON reader written here), and each is tried at its
 * exact length (refused) and one byte more (accepted, same text).
 */
#include "webhook.h"
#include "fuzz_check.h"

#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { F_TMPL, F_MSGID, F_SENDER, F_ADDR, F_NAME, F_FROM, F_TO, F_SECRET, F_ISSUER, F_NUMBERS, N_FIELDS };

#define URL_MAX 65536           /* the oracle keeps this much; longer URLs are only measured */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* The timestamp is local time: make it the same on every machine. */
    setenv("TZ", "UTC", 1);
    tzset();
    return 0;
}

static void stamp_of(int64_t time_us, char out[32])
{
    time_t t = (time_t)(time_us / 1000000);
    struct tm tm;
    FUZZ_CHECK(localtime_r(&t, &tm) != NULL);
    strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm);
}

/* The expansion as webhook.h describes it; returns the full length and
 * keeps the first URL_MAX bytes in out. */
static size_t expected_url(const char *tmpl, const struct webhook_event *ev, const char *token, char *out)
{
    char numbers[4][16], stamp[32];
    size_t n = 0;

    snprintf(numbers[0], 16, "%u", ev->rcpt_count);
    snprintf(numbers[1], 16, "%u", ev->quota);
    snprintf(numbers[2], 16, "%u", ev->quota_reset);
    snprintf(numbers[3], 16, "%u", ev->used);
    stamp_of(ev->time_us, stamp);
    const char *names[] = {"msgid",   "sender",    "client_address", "client_name", "rcpt_count", "from_addr",
                           "to_addr", "timestamp", "quota",          "quota_reset", "used",       "event",
                           "token"};
    const char *values[] = {ev->msgid, ev->sender, ev->client_address, ev->client_name, numbers[0], ev->from_addr,
                            ev->to_addr, stamp, numbers[1], numbers[2], numbers[3], "QUOTA_LIMIT_REACHED",
                            token ? token : ""};

#define PUT(c) (n < URL_MAX ? (void)(out[n++] = (char)(c)) : (void)n++)
    for (const char *p = tmpl; *p;) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        size_t i = 0;
        for (; close && i < sizeof(names) / sizeof(names[0]); i++)
            if ((size_t)(close - p - 1) == strlen(names[i]) && memcmp(p + 1, names[i], strlen(names[i])) == 0)
                break;
        if (close == NULL || i == sizeof(names) / sizeof(names[0])) {
            PUT(*p++);
            continue;
        }
        /* "." and ".." are dot segments: every byte encoded. */
        bool dots = strcmp(values[i], ".") == 0 || strcmp(values[i], "..") == 0;
        for (const unsigned char *v = (const unsigned char *)values[i]; *v; v++)
            if (!dots && strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~", *v)) {
                PUT(*v);
            } else {
                PUT('%');
                PUT("0123456789ABCDEF"[*v >> 4]);
                PUT("0123456789ABCDEF"[*v & 15]);
            }
        p = close + 1;
    }
#undef PUT
    return n;
}

static void check_url(const char *tmpl, const struct webhook_event *ev, const char *token, size_t fuzz_size)
{
    char *expected = malloc(URL_MAX);
    size_t len = expected_url(tmpl, ev, token, expected);
    size_t sizes[3] = {fuzz_size, len, len + 1};

    for (int i = 0; i < 3; i++) {
        size_t size = sizes[i];
        if (size > URL_MAX)
            continue;
        char *out = malloc(size ? size : 1);
        bool ok = webhook_url(tmpl, ev, token, out, size);
        FUZZ_CHECK(ok == (len < size));
        if (ok)
            FUZZ_CHECK(memcmp(out, expected, len) == 0 && out[len] == '\0');
        free(out);
    }
    free(expected);
}

static void check_payload(const struct webhook_event *ev, size_t fuzz_size)
{
    const char *strs[] = {ev->msgid, ev->sender, ev->client_address, ev->client_name, ev->from_addr, ev->to_addr};
    size_t big = 512;
    for (int i = 0; i < 6; i++)
        big += 6 * strlen(strs[i]);     /* \u00XX is the longest escape */
    char *out = malloc(big), stamp[32];

    /* Always room enough here: a refusal would be a miscounted size. */
    FUZZ_CHECK(webhook_payload(ev, out, big));
    size_t len = strlen(out);
    FUZZ_CHECK(len < big);

    struct fz_member m[FZ_MAX_MEMBERS];
    int n = fz_json_object(out, len, m);
    static const char *const keys[] = {"msgid",   "sender",    "client_address", "client_name",
                                       "rcpt_count", "from_addr", "to_addr",       "timestamp",
                                       "quota",   "quota_reset", "used"};
    stamp_of(ev->time_us, stamp);
    const char *svalues[] = {ev->msgid, ev->sender, ev->client_address, ev->client_name, NULL, ev->from_addr,
                             ev->to_addr, stamp, NULL, NULL, NULL};
    long long nvalues[] = {0, 0, 0, 0, ev->rcpt_count, 0, 0, 0, ev->quota, ev->quota_reset, ev->used};
    FUZZ_CHECK(n == 11);
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(strcmp(m[i].key, keys[i]) == 0);
        if (svalues[i] == NULL) {
            FUZZ_CHECK(m[i].str == NULL && m[i].num == nvalues[i]);
            continue;
        }
        char *expected = malloc(3 * strlen(svalues[i]) + 1);
        fz_json_expected(svalues[i], expected);
        FUZZ_CHECK(m[i].str != NULL && strcmp(m[i].str, expected) == 0);
        free(expected);
    }
    fz_members_free(m, n);

    /* Its exact length is refused, one byte more is enough. */
    size_t sizes[3] = {fuzz_size, len, len + 1};
    for (int i = 0; i < 3; i++) {
        char *small = malloc(sizes[i] ? sizes[i] : 1);
        bool ok = webhook_payload(ev, small, sizes[i]);
        FUZZ_CHECK(ok == (len < sizes[i]));
        if (ok)
            FUZZ_CHECK(strcmp(small, out) == 0);
        free(small);
    }
    free(out);
}

static int b64_value(char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* Decode s[0..len) (no padding for base64url; standard base64 may end in
 * one or two '='); -1 when it is not that. out needs len bytes. */
static long b64_decode(const char *s, size_t len, bool url, unsigned char *out)
{
    size_t pad = 0;
    if (!url) {
        if (len == 0 || len % 4 != 0)
            return -1;
        while (pad < 2 && s[len - 1 - pad] == '=')
            pad++;
        len -= pad;
    }
    if (len % 4 == 1)
        return -1;
    long n = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(s[i], url);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Canonical only: the bits left over are zero (what encoders write). */
    return acc == 0 ? n : -1;
}

static void check_jwt(const char *secret, const char *sender, const char *issuer, int64_t iat, size_t fuzz_size)
{
    size_t slen = strlen(secret);
    unsigned char *key = malloc(slen + 1);
    long klen = b64_decode(secret, slen, false, key);
    size_t sizes[2] = {fuzz_size, 4096};    /* 4096: the notifier's buffer */

    for (int i = 0; i < 2; i++) {
        size_t size = sizes[i];
        char *out = malloc(size ? size : 1);
        bool ok = webhook_jwt(secret, sender, issuer, iat, out, size);
        /* Canonical base64 of a key up to 1024 bytes, short claims: must
         * be accepted when the buffer is the notifier's. */
        if (size == 4096 && klen >= 0 && slen / 4 * 3 <= 1024 && 6 * (strlen(sender) + strlen(issuer)) + 100 < 2048)
            FUZZ_CHECK(ok);
        if (!ok) {
            free(out);
            continue;
        }
        /* The secret the function took as base64 has its shape. */
        FUZZ_CHECK(slen > 0 && slen % 4 == 0);
        size_t len = strnlen(out, size);
        FUZZ_CHECK(len < size);
        char *dot1 = strchr(out, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
        FUZZ_CHECK(dot1 != NULL && dot2 != NULL && strchr(dot2 + 1, '.') == NULL);

        unsigned char *seg = malloc(len + 1);
        long n = b64_decode(out, (size_t)(dot1 - out), true, seg);
        FUZZ_CHECK(n == 27 && memcmp(seg, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", 27) == 0);

        n = b64_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), true, seg);
        FUZZ_CHECK(n > 0);
        seg[n] = '\0';
        struct fz_member m[FZ_MAX_MEMBERS];
        int members = fz_json_object((char *)seg, (size_t)n, m);
        FUZZ_CHECK(members == 5);
        char *want = malloc(3 * (strlen(sender) + strlen(issuer)) + 1);
        fz_json_expected(sender, want);
        FUZZ_CHECK(strcmp(m[0].key, "sub") == 0 && m[0].str && strcmp(m[0].str, want) == 0);
        fz_json_expected(issuer, want);
        FUZZ_CHECK(strcmp(m[1].key, "iss") == 0 && m[1].str && strcmp(m[1].str, want) == 0);
        FUZZ_CHECK(strcmp(m[2].key, "iat") == 0 && !m[2].str && m[2].num == iat);
        FUZZ_CHECK(strcmp(m[3].key, "nbf") == 0 && !m[3].str && m[3].num == iat);
        FUZZ_CHECK(strcmp(m[4].key, "exp") == 0 && !m[4].str && m[4].num == iat + 60);
        fz_members_free(m, members);
        free(want);

        /* The signature: HMAC-SHA256 of "header.claims" with the key the
         * secret decodes to (checked when the secret is canonical base64). */
        unsigned char mac[32], sig[64];
        n = b64_decode(dot2 + 1, strlen(dot2 + 1), true, sig);
        FUZZ_CHECK(n == 32);
        if (klen >= 0) {
            HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)out, (size_t)(dot2 - out), mac, NULL);
            FUZZ_CHECK(memcmp(mac, sig, 32) == 0);
        }
        free(seg);
        free(out);
    }
    free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    const char *field[N_FIELDS];
    size_t pos = 0;

    memcpy(buf, data, size);
    buf[size] = '\0';
    for (int i = 0; i < N_FIELDS; i++) {
        field[i] = buf + pos;
        pos += strlen(buf + pos);
        if (pos < size)
            pos++;
    }

    unsigned long long num[7] = {0, 0, 0, 0, 0, 0, 0};
    char *p = (char *)field[F_NUMBERS];
    for (int i = 0; i < 7 && *p; i++)
        num[i] = strtoull(p, &p, 10);
    struct webhook_event ev = {
        .msgid = field[F_MSGID], .sender = field[F_SENDER], .client_address = field[F_ADDR],
        .client_name = field[F_NAME], .from_addr = field[F_FROM], .to_addr = field[F_TO],
        .rcpt_count = (uint32_t)num[0], .quota = (uint32_t)num[1], .quota_reset = (uint32_t)num[2],
        .used = (uint32_t)num[3],
        .time_us = (int64_t)num[4],     /* any value: a damaged record's time */
    };
    /* iat is time(NULL) in the notifier, never from outside: keep it to
     * dates a clock can show (exp = iat + 60 must not overflow). */
    int64_t iat = (int64_t)(num[5] % (1ull << 40));
    size_t out_size = (size_t)(num[6] % (URL_MAX + 1));

    char *token = malloc(65);
    webhook_token(field[F_SECRET], ev.sender, token);
    FUZZ_CHECK(strlen(token) == 64 && strspn(token, "0123456789abcdef") == 64);

    /* As the notifier calls it, then with the other choice of token. */
    bool simple = webhook_wants_token(field[F_TMPL]);
    FUZZ_CHECK(simple == (strstr(field[F_TMPL], "{token}") != NULL));
    check_url(field[F_TMPL], &ev, simple ? token : NULL, out_size);
    check_url(field[F_TMPL], &ev, simple ? NULL : token, out_size);
    check_payload(&ev, out_size);
    check_jwt(field[F_SECRET], ev.sender, field[F_ISSUER], iat, out_size);

    free(token);
    free(buf);
    return 0;
}
