/*
 * 07-text.c - text helpers: UTF-8 validation and sanitising, log-safe
 * copies, JSON escaping.
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
    return done_testing();
}
