/*
 * util.h - small helpers every module uses: allocation that never returns
 * NULL (it aborts with a message instead), bounded string copies and
 * strict number parsing.
 */
#ifndef RG_UTIL_H
#define RG_UTIL_H

#include <stddef.h>
#include <stdbool.h>

/* Allocation wrappers: never return NULL; on exhaustion they log and abort. */
void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);

/* Copy src into dst of size dstsize, always NUL-terminated.
 * Returns false when src had to be truncated. */
bool str_copy(char *dst, const char *src, size_t dstsize);

/* Parse a whole decimal string into *out (no sign, no spaces, no junk).
 * Returns false on empty input, junk or overflow past max. */
bool parse_ulong(const char *s, unsigned long max, unsigned long *out);

#endif
