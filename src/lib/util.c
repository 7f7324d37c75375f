/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * util.c - allocation wrappers, bounded string copy, strict number parsing.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static void out_of_memory(size_t size)
{
    /* Nothing sensible can continue; the master respawns a worker. */
    fprintf(stderr, "rateguard: out of memory allocating %zu bytes\n", size);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        out_of_memory(size);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        out_of_memory(count * size);
    return p;
}

void *xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL)
        out_of_memory(size);
    return p;
}

char *xstrdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = xmalloc(len);
    memcpy(p, s, len);
    return p;
}

bool str_copy(char *dst, const char *src, size_t dstsize)
{
    size_t len = strlen(src);
    if (dstsize == 0)
        return len == 0;
    if (len >= dstsize) {
        memcpy(dst, src, dstsize - 1);
        dst[dstsize - 1] = '\0';
        return false;
    }
    memcpy(dst, src, len + 1);
    return true;
}

bool parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    unsigned long value = 0;

    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned digit = (unsigned)(*s - '0');
        if (value > (max - digit) / 10)
            return false;
        value = value * 10 + digit;
    }
    *out = value;
    return true;
}

size_t utf8_char_len(const unsigned char *p)
{
    static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
    unsigned c = *p;
    size_t extra;
    uint32_t cp;

    if (c == 0)
        return 0;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        extra = 1;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        extra = 2;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        extra = 3;
        cp = c & 0x07;
    } else
        return 0;
    /* A NUL is no continuation byte, so this never reads past the string. */
    for (size_t i = 1; i <= extra; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min_cp[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return extra + 1;
}

long utf8_chars(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    long chars = 0;

    while (*p) {
        size_t len = utf8_char_len(p);
        if (len == 0)
            return -1;
        p += len;
        chars++;
    }
    return chars;
}

size_t text_printable_len(const unsigned char *p)
{
    if (*p < 0x80)
        return *p >= 0x20 && *p != 0x7f ? 1 : 0;
    size_t len = utf8_char_len(p);
    if (len == 2 && p[0] == 0xc2 && p[1] < 0xa0)
        return 0;
    return len;
}

static size_t escape(char *dst, size_t dstsize, const char *src, size_t max, bool backslash)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)src;
    size_t n = 0, used = 0;

    if (dstsize == 0)
        return 0;
    while (*p && used < max) {
        /* a backslash doubled: a sender's literal "\\x0a" is not a newline */
        bool doubled = backslash && *p == '\\';
        size_t len = doubled ? 0 : text_printable_len(p);
        size_t out = len ? len : doubled ? 2 : 4;
        if (n + out + 1 > dstsize)
            break;
        if (len) {
            memcpy(dst + n, p, len);
        } else if (doubled) {
            dst[n] = dst[n + 1] = '\\';
            len = 1;
        } else {
            dst[n] = '\\';
            dst[n + 1] = 'x';
            dst[n + 2] = hex[*p >> 4];
            dst[n + 3] = hex[*p & 15];
            len = 1;
        }
        n += out;
        p += len;
        used += len;
    }
    dst[n] = '\0';
    return (size_t)((const char *)p - src);
}

size_t text_escape(char *dst, size_t dstsize, const char *src, size_t max)
{
    return escape(dst, dstsize, src, max, true);
}

size_t text_escape_controls(char *dst, size_t dstsize, const char *src, size_t max)
{
    return escape(dst, dstsize, src, max, false);
}

void log_safe_copy(char *dst, size_t dstsize, const char *src, size_t max)
{
    if (dstsize < 4) {
        text_escape(dst, dstsize, src, max);
        return;
    }
    size_t taken = text_escape(dst, dstsize - 3, src, max);
    if (src[taken] != '\0')
        strcat(dst, "...");
}

bool utf8_sanitize(char *dst, size_t dstsize, const char *src, size_t max_chars)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t n = 0, chars = 0;
    bool changed = false;

    while (*p && chars < max_chars) {
        size_t len = utf8_char_len(p);
        if (n + (len ? len : 1) + 1 > dstsize)
            break;
        if (len == 0) {
            dst[n++] = '?';
            p++;
            changed = true;
        } else {
            memcpy(dst + n, p, len);
            n += len;
            p += len;
        }
        chars++;
    }
    if (*p)
        changed = true;
    dst[n] = '\0';
    return changed;
}

uint64_t fnv1a64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int64_t clock_realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t clock_monotonic_ms(void)
{
    return clock_monotonic_us() / 1000;
}

int64_t clock_monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void child_signals(void (*on_stop)(int), bool stop_on_int)
{
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    if (stop_on_int)
        sigaction(SIGINT, &sa, NULL);
    else
        signal(SIGINT, SIG_IGN);
    int ignored[] = {SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGPIPE};
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
        signal(ignored[i], SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

void ascii_fold(char *dst, const char *src, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dst[i] = (char)(src[i] >= 'A' && src[i] <= 'Z' ? src[i] + 32 : src[i]);
    dst[len] = '\0';
}

void text_print_escaped(FILE *out, const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf, *end = p + len;

    while (p < end) {
        size_t n = 0;
        /* text_escape()'s own forms pass as they are, so a dump the daemon
         * wrote prints unchanged; a lone backslash is doubled */
        if (*p == '\\' && end - p >= 2 && p[1] == '\\')
            n = 2;
        else if (*p == '\\' && end - p >= 4 && p[1] == 'x' && isxdigit(p[2]) && isxdigit(p[3]) &&
                 !isupper(p[2]) && !isupper(p[3]))
            n = 4;
        else if (*p == '\n')
            n = 1;
        else if (*p != '\\' && *p != '\0') {
            /* a character cut by the end of buf is escaped byte by byte */
            n = text_printable_len(p);
            if (n > (size_t)(end - p))
                n = 0;
        }
        if (n) {
            fwrite(p, 1, n, out);
            p += n;
        } else {
            if (*p == '\\')
                fputs("\\\\", out);
            else
                fprintf(out, "\\x%02x", *p);
            p++;
        }
    }
}
