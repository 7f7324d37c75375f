/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * fuzz_policy.c - libFuzzer target for the policy protocol: the input is
 * fed to the scanner in random-sized reads, as a worker would see it, and
 * every complete request is parsed, as many as the buffer holds.
 */
#include "policy.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[POLICY_MAX_REQUEST];
    struct policy_scanner sc;
    size_t len = 0, pos = 0, reqlen;
    const char *reason;

    policy_scanner_reset(&sc);
    while (pos < size) {
        /* The first byte of each chunk says how long the chunk is. */
        size_t chunk = 1 + data[pos] % 64;
        pos++;
        if (chunk > size - pos)
            chunk = size - pos;
        if (chunk > sizeof(buf) - len)
            chunk = sizeof(buf) - len;
        memcpy(buf + len, data + pos, chunk);
        len += chunk;
        pos += chunk;
        enum policy_status st;
        while ((st = policy_scan(&sc, buf, len, &reqlen, &reason)) == POLICY_COMPLETE) {
            struct policy_request req;
            policy_parse(buf, reqlen, &req);
            if (strlen(req.sasl_username) > reqlen)
                __builtin_trap();
            memmove(buf, buf + reqlen, len - reqlen);
            len -= reqlen;
            policy_scanner_reset(&sc);
        }
        if (st == POLICY_MALFORMED || len >= sizeof(buf))
            return 0;
    }
    return 0;
}
