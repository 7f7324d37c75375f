/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 07-text.c - text helpers: UTF-8 validation and sanitising, log-safe
 * copies, JSON escaping, and what root prints of a dump it did not write.
 */
#include "json.h"
#include "util.h"
#include "tap.h"

static char *json_of(const char *s)
{
    static char *buf;
    size_t len;
    free(buf);
    FILE *f = open_memstream(&buf, &len);
    json_write_string(f, s);
    fclose(f);
    return buf;
}

/* What root's status prints of a dump (static buffer, NULL when refused). */
static char *printed(const char *dump, bool json)
{
    static char *out;
    size_t len, bad_at;
    free(out);
    out = NULL;
    FILE *f = open_memstream(&out, &len);
    bool ok = true;
    if (json)
        ok = json_print_checked(f, dump, strlen(dump), &bad_at);
    else
        text_print_escaped(f, dump, strlen(dump));
    fclose(f);
    return ok ? out : NULL;
}

int main(void)
{
    char out[64];

    is_long(utf8_chars("plain"), 5, "ASCII");
    is_long(utf8_chars("J\xc3\xbcrgen"), 6, "two-byte character");
    is_long(utf8_chars("\xf0\x9f\x98\x80"), 1, "four-byte character");
    is_long(utf8_chars("\xc3"), -1, "truncated sequence");
    is_long(utf8_chars("\xc0\xaf"), -1, "overlong form");
    is_long(utf8_chars("\xed\xa0\x80"), -1, "surrogate");
    is_long(utf8_chars("\xff"), -1, "invalid byte");

    ok(!utf8_sanitize(out, sizeof(out), "J\xc3\xbcrgen", 100), "valid text unchanged");
    is_str(out, "J\xc3\xbcrgen", "valid text copied");
    ok(utf8_sanitize(out, sizeof(out), "a\xff" "b\xc3", 100), "invalid bytes replaced");
    is_str(out, "a?b?", "each invalid byte becomes ?");
    ok(utf8_sanitize(out, sizeof(out), "abcdef", 3), "truncated to max characters");
    is_str(out, "abc", "three characters kept");
    utf8_sanitize(out, sizeof(out), "\xc3\xbc\xc3\xbc\xc3\xbc", 2);
    is_str(out, "\xc3\xbc\xc3\xbc", "limit counts characters, not bytes");

    log_safe_copy(out, sizeof(out), "a\nb\tc\x7f", 100);
    is_str(out, "a\\x0ab\\x09c\\x7f", "control bytes become \\xNN");
    log_safe_copy(out, sizeof(out), "abcdefgh", 4);
    is_str(out, "abcd...", "long values cut with ...");
    log_safe_copy(out, sizeof(out), "abcd", 4);
    is_str(out, "abcd", "a value of exactly max bytes is not cut");
    text_escape(out, sizeof(out), "\x1b[31mred\r", 100);
    is_str(out, "\\x1b[31mred\\x0d", "escape sequence and CR escaped");
    text_escape(out, sizeof(out), "J\xc3\xbcrgen \xc2\x9b" "2J \xff", 100);
    is_str(out, "J\xc3\xbcrgen \\xc2\\x9b2J \\xff", "UTF-8 kept; C1 control (U+009B) and invalid byte escaped");
    is_long((long)text_escape(out, 6, "ab\x01" "cd", 100), 2, "stops at a whole escape when dst is full");
    is_str(out, "ab", "nothing half-escaped");

    is_str(json_of("plain"), "\"plain\"", "JSON: plain");
    is_str(json_of("a\"b\\c"), "\"a\\\"b\\\\c\"", "JSON: quote and backslash");
    is_str(json_of("x\ny\x01"), "\"x\\ny\\u0001\"", "JSON: control characters");
    is_str(json_of("J\xc3\xbcrgen"), "\"J\xc3\xbcrgen\"", "JSON: UTF-8 kept");
    is_str(json_of("bad\xff!"), "\"bad\\ufffd!\"", "JSON: invalid byte becomes U+FFFD");
    is_str(json_of("+&=?"), "\"+&=?\"", "JSON: URL characters untouched");
    is_str(json_of("c1 \xc2\x9b" "2J"), "\"c1 \\u009b2J\"", "JSON: C1 control escaped");

    /* issue 25: root prints a dump the daemon's user may have forged */
    text_escape(out, sizeof(out), "a\\x0a\\b", 100);
    is_str(out, "a\\\\x0a\\\\b", "a backslash is doubled: a literal \\x0a is not an escape");
    is_str(printed("one@example.org  3 ok\nJ\xc3\xbcrgen \\\\x0a \\x1b\n", false),
           "one@example.org  3 ok\nJ\xc3\xbcrgen \\\\x0a \\x1b\n", "the daemon's own escapes print unchanged");
    is_str(printed("\x1b]0;title\x07 \x1b]52;c;aGk=\x07 a\\b \\x1B \xc2\x9b \xff\r\n", false),
           "\\x1b]0;title\\x07 \\x1b]52;c;aGk=\\x07 a\\\\b \\\\x1B \\xc2\\x9b \\xff\\x0d\n",
           "forged text: control bytes, C1, a lone backslash and invalid UTF-8 escaped");
    is_str(printed("{\"senders\":[{\"sender\":\"a\\\\b\\u001b\"}],\"x\":-1.5e3,\"y\":true}\n", true),
           "{\"senders\":[{\"sender\":\"a\\\\b\\u001b\"}],\"x\":-1.5e3,\"y\":true}\n", "a JSON dump prints unchanged");
    is_str(printed("{\"s\":\"\x1b]0;t\x07\xc2\x9b\xff\"}", true), "{\"s\":\"\\u001b]0;t\\u0007\\u009b\\ufffd\"}",
           "forged JSON: raw control bytes in a string escaped as \\u00XX");
    ok(printed("{\"s\":1}\x1b]0;t\x07", true) == NULL, "forged JSON: a control byte outside strings refuses the dump");
    ok(printed("{\"s\":\"open", true) == NULL, "forged JSON: an unterminated string refuses the dump");
    ok(printed("{\"s\":\"\\q\"}", true) == NULL, "forged JSON: an escape JSON does not have refuses the dump");
    return done_testing();
}
