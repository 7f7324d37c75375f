/*
 * json.c - JSON string escaping (RFC 8259).
 */
#include "json.h"
#include "util.h"

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
            int len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 1;
            char one[5] = {0};
            size_t avail = strnlen((const char *)p, 4);
            if ((size_t)len <= avail)
                memcpy(one, p, (size_t)len);
            if (len > 1 && (size_t)len <= avail && utf8_chars(one) == 1) {
                fwrite(p, 1, (size_t)len, out);
                p += len;
            } else {
                fputs("\\ufffd", out);
                p++;
            }
        }
    }
    fputc('"', out);
}
