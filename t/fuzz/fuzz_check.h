/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * fuzz_check.h - what the json and webhook fuzz targets use to judge
 * rateguard's JSON: a strict UTF-8 check and a small JSON reader, written
 * apart from src/lib/util.c and src/lib/json.c so that the code under test is
 * checked against a second opinion, not against itself. A violation
 * aborts, which libFuzzer reports as a crash with the input that caused it.
 */
#ifndef RG_FUZZ_CHECK_H
#define RG_FUZZ_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* Bytes of the well-formed UTF-8 sequence at p (n bytes available), 0
 * when there is none: the Unicode standard's table 3-7, byte by byte. */
static inline size_t fz_utf8_len(const unsigned char *p, size_t n)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len;

    if (n == 0)
        return 0;
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        len = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        if (p[0] == 0xe0)
            lo = 0xa0;
        if (p[0] == 0xed)
            hi = 0x9f;          /* no surrogates */
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        if (p[0] == 0xf0)
            lo = 0x90;
        if (p[0] == 0xf4)
            hi = 0x8f;          /* nothing past U+10FFFF */
    } else
        return 0;
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

/* What json.h promises a JSON string carries for the C string s: s itself,
 * except that each byte not starting a well-formed sequence is U+FFFD.
 * out needs 3 * strlen(s) + 1 bytes. Returns the length. */
static inline size_t fz_json_expected(const char *s, char *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), o = 0;

    for (size_t i = 0; i < n;) {
        size_t len = fz_utf8_len(p + i, n - i);
        if (len) {
            memcpy(out + o, p + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return o;
}

static inline void fz_skip_ws(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r'))
        (*p)++;
}

static inline int fz_hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/*
 * Read one JSON string at *p, decoding it into out (the decoded text is
 * never longer than its JSON form, so end - *p bytes suffice) and moving
 * *p past the closing quote. False on anything json_write_string must
 * never produce: a raw control byte or DEL, an unknown escape, \u0000, a
 * surrogate escape (it never writes pairs), ill-formed UTF-8.
 */
static inline bool fz_json_string(const char **p, const char *end, char *out, size_t *outlen)
{
    const unsigned char *s = (const unsigned char *)*p, *e = (const unsigned char *)end;
    size_t o = 0;

    if (s >= e || *s != '"')
        return false;
    s++;
    for (;;) {
        if (s >= e)
            return false;
        if (*s == '"')
            break;
        if (*s < 0x20 || *s == 0x7f)
            return false;
        if (*s == '\\') {
            if (e - s < 2)
                return false;
            const char *simple = strchr("\"\\/bfnrt", s[1]);
            if (simple != NULL && s[1] != '\0') {
                out[o++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
                s += 2;
                continue;
            }
            if (s[1] != 'u' || e - s < 6)
                return false;
            int cp = 0;
            for (int i = 2; i < 6; i++) {
                int h = fz_hex((char)s[i]);
                if (h < 0)
                    return false;
                cp = cp * 16 + h;
            }
            if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
                return false;
            if (cp < 0x80)
                out[o++] = (char)cp;
            else if (cp < 0x800) {
                out[o++] = (char)(0xc0 | cp >> 6);
                out[o++] = (char)(0x80 | (cp & 0x3f));
            } else {
                out[o++] = (char)(0xe0 | cp >> 12);
                out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[o++] = (char)(0x80 | (cp & 0x3f));
            }
            s += 6;
            continue;
        }
        size_t len = fz_utf8_len(s, (size_t)(e - s));
        if (len == 0)
            return false;
        memcpy(out + o, s, len);
        o += len;
        s += len;
    }
    out[o] = '\0';
    *outlen = o;
    *p = (const char *)s + 1;
    return true;
}

/* One member of a flat JSON object: a string or an integer value. */
struct fz_member {
    char *key, *str;            /* str NULL for a number */
    long long num;
};

#define FZ_MAX_MEMBERS 16

static inline void fz_members_free(struct fz_member *m, int n)
{
    for (int i = 0; i < n; i++) {
        free(m[i].key);
        free(m[i].str);
    }
}

/* Read text[0..len) (NUL-terminated) as one flat JSON object, string and
 * integer values only (what rateguard writes), into m with the strings
 * decoded and malloc'd. Returns the number of members, or -1 when it is
 * not such an object. */
static inline int fz_json_object(const char *text, size_t len, struct fz_member *m)
{
    const char *p = text, *end = text + len;
    int n = 0;

    fz_skip_ws(&p, end);
    if (p >= end || *p++ != '{')
        goto fail;
    fz_skip_ws(&p, end);
    if (p < end && *p == '}')
        p++;
    else
        for (;;) {
            size_t l;
            if (n == FZ_MAX_MEMBERS)
                goto fail;
            m[n].key = malloc(len + 1);
            m[n].str = NULL;
            n++;
            if (!fz_json_string(&p, end, m[n - 1].key, &l))
                goto fail;
            fz_skip_ws(&p, end);
            if (p >= end || *p++ != ':')
                goto fail;
            fz_skip_ws(&p, end);
            if (p < end && *p == '"') {
                m[n - 1].str = malloc(len + 1);
                if (!fz_json_string(&p, end, m[n - 1].str, &l))
                    goto fail;
            } else {
                char *num_end;
                if (p >= end || (*p != '-' && (*p < '0' || *p > '9')))
                    goto fail;
                m[n - 1].num = strtoll(p, &num_end, 10);
                if (num_end > end)
                    goto fail;
                p = num_end;
            }
            fz_skip_ws(&p, end);
            if (p < end && *p == ',') {
                p++;
                fz_skip_ws(&p, end);
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            goto fail;
        }
    fz_skip_ws(&p, end);
    if (p == end)
        return n;
fail:
    fz_members_free(m, n);
    return -1;
}

#endif
