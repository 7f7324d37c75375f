/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * fuzz_json.c - libFuzzer target for JSON string escaping (json.c), which
 * carries senders, addresses and host names from Postfix into the webhook
 * payload and the JSON status dump. Whatever the bytes, the output must be
 * one JSON string that a strict reader accepts, and it must decode back to
 * the input with each byte that is not valid UTF-8 replaced by U+FFFD, as
 * json.h promises; the judge is fuzz_check.h, not util.c's own UTF-8 code.
 */
#include "json.h"
#include "fuzz_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1), *out = NULL;
    size_t outlen = 0, declen = 0;

    /* A C string: json_write_string stops at the first NUL, and so do we. */
    memcpy(in, data, size);
    in[size] = '\0';
    FILE *f = open_memstream(&out, &outlen);
    FUZZ_CHECK(f != NULL);
    json_write_string(f, in);
    FUZZ_CHECK(fclose(f) == 0);

    FUZZ_CHECK(outlen >= 2 && out[0] == '"' && out[outlen - 1] == '"');
    const char *p = out;
    char *decoded = malloc(outlen + 1), *expected = malloc(3 * strlen(in) + 1);
    FUZZ_CHECK(fz_json_string(&p, out + outlen, decoded, &declen));
    /* The closing quote is the last byte: no quote left unescaped inside. */
    FUZZ_CHECK(p == out + outlen);
    size_t explen = fz_json_expected(in, expected);
    FUZZ_CHECK(declen == explen && memcmp(decoded, expected, explen) == 0);

    free(expected);
    free(decoded);
    free(out);
    free(in);
    return 0;
}
