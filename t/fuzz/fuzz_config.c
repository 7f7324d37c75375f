/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * fuzz_config.c - libFuzzer target for the configuration reader: any text
 * either loads or is refused with a message and an exit code, never more.
 */
#include "config.h"
#include "rateguard.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), err[1024];
    int code = 0;

    memcpy(text, data, size);
    text[size] = '\0';
    struct rg_config *c = config_load_string(text, "fuzz.conf", err, sizeof(err), &code);
    if (c == NULL && (err[0] == '\0' || (code != RG_EXIT_CONFIG && code != RG_EXIT_BAD_LISTEN)))
        __builtin_trap();
    if (c != NULL && code != RG_EXIT_OK)
        __builtin_trap();
    config_free(c);
    free(text);
    return 0;
}
