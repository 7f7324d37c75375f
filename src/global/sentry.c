/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * sentry.c - DSN parsing and the envelope format (pure; see sentry.h).
 * Format: https://develop.sentry.dev/sdk/envelopes/ and the event payload
 * of https://develop.sentry.dev/sdk/event-payloads/.
 */
#include "sentry.h"
#include "json.h"
#include "netaddr.h"
#include "rateguard.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <time.h>

static bool fail(char *err, size_t errsize, const char *why)
{
    snprintf(err, errsize, "%s", why);
    return false;
}

/* Characters a DSN key or host may hold: no spaces, controls, quotes. */
static bool plain_chars(const char *s, size_t n, const char *extra)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && strchr("-._~", c) == NULL && (extra == NULL || strchr(extra, c) == NULL))
            return false;
    }
    return true;
}

bool sentry_dsn_parse(const char *text, struct sentry_dsn *d, char *err, size_t errsize)
{
    memset(d, 0, sizeof(*d));
    const char *sep = strstr(text, "://");
    if (sep == NULL)
        return fail(err, errsize, "not a DSN (expected https://KEY@HOST/PROJECT_ID)");
    size_t slen = (size_t)(sep - text);
    if ((slen == 4 && strncmp(text, "http", 4) == 0) || (slen == 5 && strncmp(text, "https", 5) == 0))
        memcpy(d->scheme, text, slen);
    else
        return fail(err, errsize, "the scheme must be http or https");
    const char *rest = sep + 3;
    const char *at = strchr(rest, '@');
    const char *slash = strchr(rest, '/');
    if (at == NULL || (slash && slash < at))
        return fail(err, errsize, "no public key (expected https://KEY@HOST/PROJECT_ID)");
    /* KEY or KEY:SECRET (the secret is obsolete and not used) */
    size_t klen = strcspn(rest, ":@");
    if (klen == 0)
        return fail(err, errsize, "the public key is empty");
    if (klen >= sizeof(d->key) || !plain_chars(rest, klen, NULL))
        return fail(err, errsize, "the public key is not a plain token (letters, digits, - . _ ~)");
    if (rest[klen] == ':' && !plain_chars(rest + klen + 1, (size_t)(at - rest - (ptrdiff_t)klen - 1), NULL))
        return fail(err, errsize, "the secret key is not a plain token");
    memcpy(d->key, rest, klen);

    const char *h = at + 1, *hend;
    if (*h == '[') {
        hend = strchr(h, ']');
        if (hend == NULL || !plain_chars(h + 1, (size_t)(hend - h - 1), ":") || hend == h + 1)
            return fail(err, errsize, "bad IPv6 host");
        hend++;
    } else {
        hend = h + strcspn(h, ":/");
        if (hend == h || !plain_chars(h, (size_t)(hend - h), NULL))
            return fail(err, errsize, "no host, or a host with characters a host name cannot have");
    }
    if ((size_t)(hend - h) >= sizeof(d->host))
        return fail(err, errsize, "the host is too long");
    memcpy(d->host, h, (size_t)(hend - h));
    const char *p = hend;
    if (*p == ':') {
        p++;
        size_t plen = strspn(p, "0123456789");
        unsigned long port = 0;
        char digits[8] = "";
        if (plen == 0 || plen > 5 || (p[plen] != '/' && p[plen] != '\0'))
            return fail(err, errsize, "the port is not a number");
        memcpy(digits, p, plen);
        if (!parse_ulong(digits, 65535, &port) || port == 0)
            return fail(err, errsize, "the port is out of range 1..65535");
        memcpy(d->port, digits, plen + 1);
        p += plen;
    }
    if (*p != '/')
        return fail(err, errsize, "no project id (expected https://KEY@HOST/PROJECT_ID)");
    const char *last = strrchr(p, '/');
    const char *project = last + 1;
    size_t prlen = strlen(project);
    if (prlen == 0 || prlen >= sizeof(d->project) || strspn(project, "0123456789") != prlen)
        return fail(err, errsize, "the project id (the last part of the path) must be a number");
    if ((size_t)(last - p) >= sizeof(d->path) || !plain_chars(p, (size_t)(last - p), "/"))
        return fail(err, errsize, "the path holds characters a DSN path cannot have");
    memcpy(d->path, p, (size_t)(last - p));
    memcpy(d->project, project, prlen);
    /* The key goes in every request: over http only to this machine (a
     * local relay or test receiver), as report.user without STARTTLS. */
    if (strcmp(d->scheme, "http") == 0 && !netaddr_host_is_loopback(d->host)) {
        snprintf(err, errsize, "http would send the key in clear text to %s: use https "
                 "(http only to localhost, 127.0.0.0/8 or [::1])", d->host);
        return false;
    }
    return true;
}

static void base_url(const struct sentry_dsn *d, const char *key, char *out, size_t size)
{
    snprintf(out, size, "%s://%s%s%s%s%s%s", d->scheme, key ? key : "", key ? "@" : "", d->host,
             d->port[0] ? ":" : "", d->port, d->path);
}

void sentry_dsn_masked(const struct sentry_dsn *d, char *out, size_t size)
{
    char base[1024];
    base_url(d, "****", base, sizeof(base));
    snprintf(out, size, "%s/%s", base, d->project);
}

void sentry_dsn_public(const struct sentry_dsn *d, char *out, size_t size)
{
    char base[1024];
    base_url(d, d->key, base, sizeof(base));
    snprintf(out, size, "%s/%s", base, d->project);
}

void sentry_envelope_url(const struct sentry_dsn *d, char *out, size_t size)
{
    char base[1024];
    base_url(d, NULL, base, sizeof(base));
    snprintf(out, size, "%s/api/%s/envelope/", base, d->project);
}

void sentry_auth_header(const struct sentry_dsn *d, char *out, size_t size)
{
    snprintf(out, size, "X-Sentry-Auth: Sentry sentry_version=7, sentry_key=%s, sentry_client=%s/%s", d->key,
             RATEGUARD_NAME, RATEGUARD_VERSION);
}

void sentry_event_id(char out[33])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char r[16];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        /* No entropy to be had: time and pid still make it unique enough. */
        uint64_t a = (uint64_t)clock_realtime_us(), b = (uint64_t)getpid() ^ (uint64_t)clock_monotonic_ms() << 20;
        memcpy(r, &a, 8);
        memcpy(r + 8, &b, 8);
    }
    for (int i = 0; i < 16; i++) {
        out[2 * i] = digits[r[i] >> 4];
        out[2 * i + 1] = digits[r[i] & 15];
    }
    out[32] = '\0';
}

void sentry_timestamp(int64_t time_us, char out[40])
{
    time_t t = (time_t)(time_us / 1000000);
    struct tm tm;
    char date[32];
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    unsigned frac = (unsigned)(time_us % 1000000);
    snprintf(out, 40, "%.20s.%06uZ", date, frac % 1000000u);
}

static void tag(FILE *f, bool first, const char *key, const char *value)
{
    fprintf(f, "%s\"%s\":", first ? "" : ",", key);
    json_write_string(f, value ? value : "");
}

/* Close the stream (which settles buf and len), copy it out. */
static bool finish(FILE *f, char **buf, const size_t *len, char *out, size_t size)
{
    fclose(f);
    bool ok = *len < size;
    if (ok)
        memcpy(out, *buf, *len + 1);
    free(*buf);
    return ok;
}

bool sentry_event_json(const struct sentry_event *ev, char *out, size_t size)
{
    char *buf = NULL, stamp[40], logger[64];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return false;
    sentry_timestamp(ev->time_us, stamp);
    snprintf(logger, sizeof(logger), "%s.%s", RATEGUARD_NAME, ev->process ? ev->process : "daemon");
    fputc('{', f);
    tag(f, true, "event_id", ev->event_id);
    tag(f, false, "timestamp", stamp);
    tag(f, false, "level", ev->level);
    tag(f, false, "logger", logger);
    tag(f, false, "platform", "c");
    tag(f, false, "server_name", ev->server_name);
    tag(f, false, "release", ev->release);
    tag(f, false, "environment", ev->environment);
    fputs(",\"message\":{", f);
    tag(f, true, "formatted", ev->message);
    tag(f, false, "message", ev->template);
    fputs("},\"fingerprint\":[", f);
    json_write_string(f, ev->template);
    if (ev->signal > 0)
        fprintf(f, ",\"signal %d\"", ev->signal);
    fputs("],\"tags\":{", f);
    tag(f, true, "process", ev->process);
    tag(f, false, "instance", ev->instance);
    if (ev->signal > 0) {
        char sig[16];
        snprintf(sig, sizeof(sig), "%d", ev->signal);
        tag(f, false, "signal", sig);
    }
    fprintf(f, "},\"extra\":{\"pid\":%ld,\"suppressed_repeats\":%llu}", ev->pid,
            (unsigned long long)ev->suppressed);
    fputs(",\"sdk\":{", f);
    tag(f, true, "name", RATEGUARD_NAME);
    tag(f, false, "version", RATEGUARD_VERSION);
    fputs("}}", f);
    return finish(f, &buf, &len, out, size);
}

bool sentry_envelope(const struct sentry_dsn *d, const struct sentry_event *ev, int64_t sent_us, char *out,
                     size_t size)
{
    static char payload[16384];
    char *buf = NULL, stamp[40], dsn[1200];
    size_t len = 0;

    if (!sentry_event_json(ev, payload, sizeof(payload)))
        return false;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return false;
    sentry_timestamp(sent_us, stamp);
    fputc('{', f);
    tag(f, true, "event_id", ev->event_id);
    /* Rebuilt from its parts: a legacy KEY:SECRET never leaves the host. */
    sentry_dsn_public(d, dsn, sizeof(dsn));
    tag(f, false, "dsn", dsn);
    tag(f, false, "sent_at", stamp);
    fprintf(f, "}\n{\"type\":\"event\",\"length\":%zu}\n%s\n", strlen(payload), payload);
    return finish(f, &buf, &len, out, size);
}
