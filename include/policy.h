/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * policy.h - the Postfix policy delegation protocol, pure: an incremental
 * scanner that finds the end of one request in a byte buffer and enforces
 * the input bounds, and a parser that picks the attributes rateguard uses.
 * No I/O and no allocation: the worker owns the buffer, these functions
 * only look at it (policy_parse writes NUL terminators into it).
 *
 * Protocol (SMTPD_POLICY_README): "name=value\n" lines, an empty line ends
 * the request; "\r\n" is tolerated; unknown attributes are ignored.
 */
#ifndef RG_POLICY_H
#define RG_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#define POLICY_MAX_LINE 8192        /* bytes per line, without the newline */
#define POLICY_MAX_ATTRS 128        /* attributes per request (Postfix 3.7 sends 29) */
#define POLICY_MAX_REQUEST 65536    /* bytes per request, terminator included */
/* The largest recipient_count believed (Postfix's smtpd_recipient_limit
 * defaults to 1000); above it the request is answered on_error. It keeps
 * every count within the database's columns (messages.rcpt_count is a
 * signed INT). */
#define POLICY_MAX_RECIPIENT_COUNT 100000

enum policy_status { POLICY_INCOMPLETE, POLICY_COMPLETE, POLICY_MALFORMED };

/* Where scanning stopped, so that a request arriving byte by byte is
 * scanned once in total, not once per read. */
struct policy_scanner {
    size_t pos;          /* next byte to look at */
    size_t line_start;   /* first byte of the current line */
    unsigned attrs;      /* attribute lines seen so far */
};

void policy_scanner_reset(struct policy_scanner *s);

/*
 * Look for the end of the request that starts at buf[0]. Returns
 * POLICY_COMPLETE with *reqlen = bytes up to and including the empty line,
 * POLICY_INCOMPLETE when more input is needed, or POLICY_MALFORMED with a
 * static reason (overlong line, too many attributes, line without a name
 * or '=', NUL byte, request too large, empty request).
 */
enum policy_status policy_scan(struct policy_scanner *s, const char *buf, size_t len,
                               size_t *reqlen, const char **reason);

/* The attributes rateguard reads; each points into the request buffer and
 * is "" when absent. */
struct policy_request {
    const char *request;
    const char *protocol_state;
    const char *sasl_username;
    const char *sasl_method;
    const char *queue_id;
    const char *instance;
    const char *client_address;
    const char *client_name;
    const char *helo_name;
    const char *sender;
    const char *recipient;
    const char *recipient_count;
    const char *size;
    /* rateguard_test_now (unix microseconds): the decision's clock in the
     * test build (rateguard-testhooks) only, so that t/replay replays a
     * day of a trace in seconds; the daemon ignores it. */
    const char *rateguard_test_now;
    unsigned attr_count;
};

/* Split a complete request (as found by policy_scan) in place. */
void policy_parse(char *buf, size_t reqlen, struct policy_request *req);

/* What a refusing reply asks of Postfix, for the blocks' metric: the
 * action's word ("DEFER_IF_PERMIT ...", or a 4xx/5xx code: defer,
 * reject); OTHER for anything else an administrator may have configured
 * (WARN, OK, ...). */
enum policy_refusal { REFUSAL_DEFER_IF_PERMIT, REFUSAL_DEFER, REFUSAL_REJECT, REFUSAL_HOLD, REFUSAL_DISCARD,
                      REFUSAL_OTHER, POLICY_REFUSALS };
extern const char *const policy_refusal_names[POLICY_REFUSALS];    /* "defer_if_permit", ... */

/* The kind of an action text (without "action="). */
enum policy_refusal policy_refusal_of(const char *action);

#endif
