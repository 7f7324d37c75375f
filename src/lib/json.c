/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * json.c - JSON string escaping (RFC 8259), and the check of a JSON dump
 * that root prints after a less trusted process wrote it.
 */
#include "json.h"
#include "util.h"

#include <stdbool.h>
#include <string.h>

void json_write_string(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    fputc('"', out);
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc((int)c, out);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            switch (c) {
            case '\n': fputs("\\n", out); break;
            case '\r': fputs("\\r", out); break;
            case '\t': fputs("\\t", out); break;
            default: fprintf(out, "\\u%04x", c); break;
            }
            p++;
        } else if (c < 0x80) {
            fputc((int)c, out);
            p++;
        } else {
            size_t len = utf8_char_len(p);
            if (len == 2 && c == 0xc2 && p[1] < 0xa0) {
                fprintf(out, "\\u%04x", p[1]);      /* C1: a terminal would obey it */
                p += 2;
            } else if (len) {
                fwrite(p, 1, len, out);
                p += len;
            } else {
                fputs("\\ufffd", out);
                p++;
            }
        }
    }
    fputc('"', out);
}

/* Outside strings a dump holds only punctuation, numbers, true, false,
 * null, spaces and newlines: nothing a terminal would obey. */
static bool json_token_byte(unsigned c)
{
    return (c >= '0' && c <= '9') || (c && strchr("{}[],:-+.eE truefalsn\n", (int)c) != NULL);
}

bool json_print_checked(FILE *out, const char *buf, size_t len, size_t *bad_at)
{
    const unsigned char *p = (const unsigned char *)buf, *end = p + len;
    bool in_string = false;

    while (p < end) {
        unsigned c = *p;
        if (!in_string) {
            if (c == '"')
                in_string = true;
            else if (!json_token_byte(c))
                break;
            fputc((int)c, out);
            p++;
        } else if (c == '"') {
            in_string = false;
            fputc('"', out);
            p++;
        } else if (c == '\\') {
            /* an escape of JSON's own passes; any other is not JSON */
            if (end - p < 2 || strchr("\"\\/bfnrtu", p[1]) == NULL || p[1] == '\0')
                break;
            fwrite(p, 1, 2, out);
            p += 2;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc((int)c, out);
            p++;
        } else {
            size_t n = utf8_char_len(p);
            if (n == 0 || n > (size_t)(end - p)) {
                fputs("\\ufffd", out);
                p++;
            } else if (n == 2 && c == 0xc2 && p[1] < 0xa0) {
                fprintf(out, "\\u%04x", p[1]);       /* a C1 control, which terminals obey */
                p += 2;
            } else {
                fwrite(p, 1, n, out);
                p += n;
            }
        }
    }
    if (p == end && !in_string)
        return true;
    *bad_at = (size_t)(p - (const unsigned char *)buf);
    return false;
}
