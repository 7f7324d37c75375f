/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * webhook.h - what a webhook call consists of, pure: the JSON payload,
 * the URL with its {placeholders} filled in (URL-encoded), the simple
 * token (hex SHA-256 of secret string + sender) and the HS256 JWT (key =
 * base64-decoded secret). The notifier process (notifier.c) sends them.
 * Results are written into caller-provided buffers; false means the
 * buffer was too small or the input unusable.
 */
#ifndef RG_WEBHOOK_H
#define RG_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One notification: the first block of a sender in a period, or (event
 * "QUOTA_WARNING") the first message past quota.warning_percent. */
struct webhook_event {
    const char *event;          /* NULL: QUOTA_LIMIT_REACHED */
    const char *msgid, *sender, *client_address, *client_name, *from_addr, *to_addr;
    uint32_t rcpt_count, quota, quota_reset, used;
    int64_t time_us;            /* when the message was blocked */
    const char *signals, *action, *evidence;   /* SUSPECTED_HIJACK: what tripped, what was done; else NULL */
};

/* {"msgid": ..., "sender": ..., ..., "used": N} in PolicydRateGuard's key
 * order; numbers as JSON numbers, timestamp "YYYY-MM-DD HH:MM:SS" local.
 * A QUOTA_LIMIT_REACHED payload is PolicydRateGuard's exactly; any other
 * event adds "event": NAME last (SUSPECTED_HIJACK: then "signals",
 * "action" and "evidence"). */
bool webhook_payload(const struct webhook_event *ev, char *out, size_t size);

/* Hex SHA-256 of secret followed by sender (64 characters + NUL). */
void webhook_token(const char *secret, const char *sender, char out[65]);

/* HS256 JWT: header {"alg":"HS256","typ":"JWT"}, claims sub, iss, iat,
 * nbf (= iat), exp (= iat + 60). False if the secret is not base64. */
bool webhook_jwt(const char *secret_b64, const char *sender, const char *issuer, int64_t iat, char *out,
                 size_t size);

/* Expand {msgid} {sender} {client_address} {client_name} {rcpt_count}
 * {from_addr} {to_addr} {timestamp} {quota} {quota_reset} {used} {event} {token}
 * in the URL template, each value percent-encoded (RFC 3986 unreserved
 * characters kept). token may be NULL (then {token} expands to nothing).
 * Unknown {names} are left as they are. */
bool webhook_url(const char *tmpl, const struct webhook_event *ev, const char *token, char *out, size_t size);

/* True when the template uses {token} (simple token mode). */
bool webhook_wants_token(const char *tmpl);

#endif
