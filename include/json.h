/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * json.h - writing JSON strings with full escaping (quotes, backslashes,
 * control characters, the C1 range too, which terminals obey; bytes that
 * are not valid UTF-8 become U+FFFD so the output is always valid JSON).
 */
#ifndef RG_JSON_H
#define RG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Write s as a quoted JSON string. */
void json_write_string(FILE *out, const char *s);

/* Print len bytes of JSON that a less trusted process wrote (the status
 * dump) so that no control byte reaches out: inside strings a control
 * character becomes \u00XX (C1 too) and a byte that is not UTF-8
 * \ufffd; outside strings only JSON's punctuation, numbers, literals,
 * spaces and newlines are allowed. Returns false, with the offset of the
 * first byte that is not JSON in *bad_at, when the dump is refused; what
 * out holds then is to be discarded (write to a buffer). Not a full
 * parser: a refused dump is never printed, an accepted one is safe. */
bool json_print_checked(FILE *out, const char *buf, size_t len, size_t *bad_at);

#endif
