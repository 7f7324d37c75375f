/*
 * util.c - allocation wrappers, bounded string copy, strict number parsing.
 */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

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

long utf8_chars(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    long chars = 0;

    while (*p) {
        unsigned c = *p;
        int extra;
        uint32_t cp;
        if (c < 0x80) {
            p++;
            chars++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            extra = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3;
            cp = c & 0x07;
        } else
            return -1;
        for (int i = 1; i <= extra; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return -1;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return -1;
        p += extra + 1;
        chars++;
    }
    return chars;
}

void log_safe_copy(char *dst, size_t dstsize, const char *src, size_t max)
{
    size_t n = 0;

    if (dstsize == 0)
        return;
    for (; *src && n + 1 < dstsize; src++) {
        if (n >= max) {
            if (n + 4 <= dstsize) {
                memcpy(dst + n, "...", 3);
                n += 3;
            }
            break;
        }
        unsigned char c = (unsigned char)*src;
        dst[n++] = (char)(c < 0x20 || c == 0x7f ? '?' : c);
    }
    dst[n] = '\0';
}

bool utf8_sanitize(char *dst, size_t dstsize, const char *src, size_t max_chars)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t n = 0, chars = 0;
    bool changed = false;

    while (*p && chars < max_chars) {
        char one[5] = {0};
        int len = 1;
        unsigned c = *p;
        if (c >= 0x80) {
            len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
            bool valid = len > 0;
            for (int i = 1; valid && i < len; i++)
                valid = (p[i] & 0xc0) == 0x80;
            if (valid) {
                memcpy(one, p, (size_t)len);
                valid = utf8_chars(one) == 1;
            }
            if (!valid) {
                len = 1;
                c = '?';
                changed = true;
            }
        }
        if (n + (size_t)len + 1 > dstsize)
            break;
        if (c == '?' && *p != '?')
            dst[n] = '?';
        else
            memcpy(dst + n, p, (size_t)len);
        n += (size_t)len;
        p += len;
        chars++;
    }
    if (*p)
        changed = true;
    dst[n] = '\0';
    return changed;
}
