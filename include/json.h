/*
 * json.h - writing JSON strings with full escaping (quotes, backslashes,
 * control characters; bytes that are not valid UTF-8 become U+FFFD so the
 * output is always valid JSON).
 */
#ifndef RG_JSON_H
#define RG_JSON_H

#include <stdio.h>

/* Write s as a quoted JSON string. */
void json_write_string(FILE *out, const char *s);

#endif
