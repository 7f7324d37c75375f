/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * webhook.c - payload, URL, token and JWT for the webhook (pure; OpenSSL
 * for SHA-256, HMAC and base64).
 */
#include "webhook.h"
#include "json.h"
#include "util.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void format_timestamp(int64_t time_us, char out[32])
{
    time_t t = (time_t)(time_us / 1000000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm);
}

bool webhook_payload(const struct webhook_event *ev, char *out, size_t size)
{
    char stamp[32];
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (f == NULL)
        return false;
    format_timestamp(ev->time_us, stamp);
    const struct {
        const char *key, *value;
    } strings1[] = {{"msgid", ev->msgid}, {"sender", ev->sender}, {"client_address", ev->client_address},
                    {"client_name", ev->client_name}};
    fputc('{', f);
    for (size_t i = 0; i < 4; i++) {
        fprintf(f, "%s\"%s\": ", i ? ", " : "", strings1[i].key);
        json_write_string(f, strings1[i].value);
    }
    fprintf(f, ", \"rcpt_count\": %u, \"from_addr\": ", ev->rcpt_count);
    json_write_string(f, ev->from_addr);
    fputs(", \"to_addr\": ", f);
    json_write_string(f, ev->to_addr);
    fputs(", \"timestamp\": ", f);
    json_write_string(f, stamp);
    fprintf(f, ", \"quota\": %u, \"quota_reset\": %u, \"used\": %u", ev->quota, ev->quota_reset, ev->used);
    if (ev->event) {
        fputs(", \"event\": ", f);
        json_write_string(f, ev->event);
    }
    const struct {
        const char *key, *value;
    } strings2[] = {{"signals", ev->signals}, {"action", ev->action}, {"evidence", ev->evidence}};
    for (size_t i = 0; i < 3; i++)
        if (strings2[i].value) {
            fprintf(f, ", \"%s\": ", strings2[i].key);
            json_write_string(f, strings2[i].value);
        }
    fputc('}', f);
    fclose(f);
    bool ok = len < size;
    if (ok)
        memcpy(out, buf, len + 1);
    free(buf);
    return ok;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void webhook_token(const char *secret, const char *sender, char out[65])
{
    unsigned char digest[32];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, secret, strlen(secret));
    EVP_DigestUpdate(ctx, sender, strlen(sender));
    EVP_DigestFinal_ex(ctx, digest, &len);
    EVP_MD_CTX_free(ctx);
    hex(digest, 32, out);
}

/* base64url without padding (RFC 7515). Returns the length written. */
static size_t base64url(const unsigned char *in, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    size_t k = 0;
    for (int i = 0; i < len; i++) {
        char c = out[i];
        if (c == '=')
            break;
        out[k++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[k] = '\0';
    return k;
}

bool webhook_jwt(const char *secret_b64, const char *sender, const char *issuer, int64_t iat, char *out,
                 size_t size)
{
    size_t slen = strlen(secret_b64);
    unsigned char key[1024];
    char claims[2048], *cbuf = NULL;
    size_t clen = 0;

    /* The secret: standard base64; EVP_DecodeBlock counts padding as zeros. */
    if (slen == 0 || slen % 4 != 0 || slen / 4 * 3 > sizeof(key))
        return false;
    int klen = EVP_DecodeBlock(key, (const unsigned char *)secret_b64, (int)slen);
    if (klen < 0)
        return false;
    if (secret_b64[slen - 1] == '=')
        klen--;
    if (secret_b64[slen - 2] == '=')
        klen--;

    FILE *f = open_memstream(&cbuf, &clen);
    fputs("{\"sub\":", f);
    json_write_string(f, sender);
    fputs(",\"iss\":", f);
    json_write_string(f, issuer);
    fprintf(f, ",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld}", (long long)iat, (long long)iat, (long long)iat + 60);
    fclose(f);
    if (clen >= sizeof(claims)) {
        free(cbuf);
        return false;
    }
    memcpy(claims, cbuf, clen + 1);
    free(cbuf);

    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    size_t need = (sizeof(header) + clen) * 4 / 3 + 64 + 2;
    if (need >= size)
        return false;
    size_t n = base64url((const unsigned char *)header, sizeof(header) - 1, out);
    out[n++] = '.';
    n += base64url((const unsigned char *)claims, clen, out + n);
    unsigned char mac[32];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), key, klen, (const unsigned char *)out, n, mac, &maclen);
    out[n++] = '.';
    base64url(mac, maclen, out + n);
    return true;
}

static bool append(char *out, size_t size, size_t *n, const char *s, size_t len)
{
    if (*n + len >= size)
        return false;
    memcpy(out + *n, s, len);
    *n += len;
    out[*n] = '\0';
    return true;
}

/* Percent-encode a value for any part of the URL. A value of "." or ".."
 * has its dots encoded too: as a path segment it would move the path
 * (libcurl, as RFC 3986 says, removes dot segments). */
static bool append_encoded(char *out, size_t size, size_t *n, const char *s)
{
    bool dot_segment = strcmp(s, ".") == 0 || strcmp(s, "..") == 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char enc[4];
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            (*p == '.' && !dot_segment) || *p == '_' || *p == '~') {
            if (!append(out, size, n, (const char *)p, 1))
                return false;
        } else {
            snprintf(enc, sizeof(enc), "%%%02X", *p);
            if (!append(out, size, n, enc, 3))
                return false;
        }
    }
    return true;
}

bool webhook_wants_token(const char *tmpl)
{
    return strstr(tmpl, "{token}") != NULL;
}

bool webhook_url(const char *tmpl, const struct webhook_event *ev, const char *token, char *out, size_t size)
{
    char numbers[4][16], stamp[32];
    size_t n = 0;

    snprintf(numbers[0], sizeof(numbers[0]), "%u", ev->rcpt_count);
    snprintf(numbers[1], sizeof(numbers[1]), "%u", ev->quota);
    snprintf(numbers[2], sizeof(numbers[2]), "%u", ev->quota_reset);
    snprintf(numbers[3], sizeof(numbers[3]), "%u", ev->used);
    format_timestamp(ev->time_us, stamp);
    const struct {
        const char *name, *value;
    } vars[] = {
        {"msgid", ev->msgid}, {"sender", ev->sender}, {"client_address", ev->client_address},
        {"client_name", ev->client_name}, {"rcpt_count", numbers[0]}, {"from_addr", ev->from_addr},
        {"to_addr", ev->to_addr}, {"timestamp", stamp}, {"quota", numbers[1]}, {"quota_reset", numbers[2]},
        {"used", numbers[3]}, {"event", ev->event ? ev->event : "QUOTA_LIMIT_REACHED"},
        {"token", token ? token : ""},
    };

    if (size == 0)
        return false;
    out[0] = '\0';
    for (const char *p = tmpl; *p;) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            bool done = false;
            for (size_t i = 0; close && i < sizeof(vars) / sizeof(vars[0]); i++)
                if (strlen(vars[i].name) == (size_t)(close - p - 1) &&
                    strncmp(p + 1, vars[i].name, (size_t)(close - p - 1)) == 0) {
                    if (!append_encoded(out, size, &n, vars[i].value))
                        return false;
                    p = close + 1;
                    done = true;
                    break;
                }
            if (done)
                continue;
        }
        if (!append(out, size, &n, p, 1))
            return false;
        p++;
    }
    return true;
}
