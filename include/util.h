/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * util.h - small helpers every module uses: allocation that never returns
 * NULL (it aborts with a message instead), bounded string copies and
 * strict number parsing.
 */
#ifndef RG_UTIL_H
#define RG_UTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>

/* Allocation wrappers: never return NULL; on exhaustion they log and abort. */
void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);

/* Copy src into dst of size dstsize, always NUL-terminated.
 * Returns false when src had to be truncated. */
bool str_copy(char *dst, const char *src, size_t dstsize);

/* The len bytes of src in ASCII lower case, then a NUL, into dst (len + 1
 * bytes): the case folding of sender names, cache keys and domains. */
void ascii_fold(char *dst, const char *src, size_t len);

/* Parse a whole decimal string into *out (no sign, no spaces, no junk).
 * Returns false on empty input, junk or overflow past max. */
bool parse_ulong(const char *s, unsigned long max, unsigned long *out);

/* Bytes of the valid UTF-8 character at p (1 for ASCII), 0 at the NUL or
 * when p does not start a valid character. */
size_t utf8_char_len(const unsigned char *p);

/* Number of UTF-8 characters in s, or -1 when s is not valid UTF-8
 * (overlong forms, surrogates and code points past U+10FFFF refused). */
long utf8_chars(const char *s);

/* Copy src into dst (always terminated) for a log line or a terminal:
 * control characters (C0, DEL, the C1 range of UTF-8) and bytes that are
 * not valid UTF-8 become \xNN, a backslash becomes \\ (so the escapes
 * are unambiguous); the rest is copied. Stops after max bytes of src or
 * when dst is full, at a character boundary. Returns the bytes
 * of src consumed. The one escaping of untrusted text for humans. */
size_t text_escape(char *dst, size_t dstsize, const char *src, size_t max);

/* text_escape() leaving backslashes as they are: the log sink's last
 * pass over a line whose quoted fields were escaped already (a second
 * doubling would garble them). */
size_t text_escape_controls(char *dst, size_t dstsize, const char *src, size_t max);

/* Bytes of the character at p when it is shown as it is: printable ASCII
 * and valid UTF-8 other than the C1 controls (U+0080..U+009F, which
 * terminals obey); 0 when it must be escaped. */
size_t text_printable_len(const unsigned char *p);

/* Print len bytes of text that a less trusted process wrote (a status
 * dump): what text_escape() would write ("\\\\", "\\xNN", newlines,
 * printable characters) passes unchanged; every other byte is escaped the
 * same way, so no control byte reaches out. buf[len] must be readable
 * (a NUL), as getdelim() leaves it. */
void text_print_escaped(FILE *out, const char *buf, size_t len);

/* text_escape() with "..." appended when src was not copied whole. */
void log_safe_copy(char *dst, size_t dstsize, const char *src, size_t max);

/* Copy src into dst (dstsize bytes) keeping at most max_chars UTF-8
 * characters; each byte that is not part of valid UTF-8 becomes '?'.
 * Returns true when the copy differs from src. */
bool utf8_sanitize(char *dst, size_t dstsize, const char *src, size_t max_chars);

/* FNV-1a, 64 bits: hashing for tables and checksums, not for security. */
uint64_t fnv1a64(const void *data, size_t len);

/* Signals of a freshly forked child (worker, writer, notifier): TERM, and
 * INT when stop_on_int, call on_stop; the master's own signals (HUP, USR1,
 * USR2, WINCH) and SIGPIPE are ignored; nothing stays blocked. */
void child_signals(void (*on_stop)(int), bool stop_on_int);

/* Wall-clock time in microseconds since the epoch. */
int64_t clock_realtime_us(void);

/* Monotonic time in milliseconds (timeouts, durations). */
int64_t clock_monotonic_ms(void);

/* Monotonic time in microseconds (measured durations). */
int64_t clock_monotonic_us(void);

#endif
