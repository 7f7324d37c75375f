/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 02-policy.c - the policy protocol scanner and parser: complete, split,
 * pipelined and CRLF requests; every malformed case with its reason; the
 * bounds (line length, attribute count, request size).
 */
#include "policy.h"
#include "tap.h"

static const char postfix_request[] =
    "request=smtpd_access_policy\nprotocol_state=DATA\nprotocol_name=ESMTP\n"
    "client_address=127.0.0.1\nclient_name=localhost\nclient_port=53080\n"
    "reverse_client_name=localhost\nserver_address=127.0.0.1\nserver_port=2525\n"
    "helo_name=client.example.org\nsender=alice@example.org\nrecipient=\nrecipient_count=3\n"
    "queue_id=DA616A7C20E\ninstance=6899.6b025926.d97ac.0\nsize=0\netrn_domain=\nstress=\n"
    "sasl_method=PLAIN\nsasl_username=alice@example.org\nsasl_sender=\nccert_subject=\n"
    "ccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\n"
    "encryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n";

static enum policy_status scan_all(const char *buf, size_t len, size_t *reqlen, const char **reason)
{
    struct policy_scanner s;
    policy_scanner_reset(&s);
    return policy_scan(&s, buf, len, reqlen, reason);
}

static void test_postfix_request(void)
{
    static char buf[sizeof(postfix_request)];
    struct policy_request req;
    size_t reqlen = 0;
    const char *reason = NULL;

    memcpy(buf, postfix_request, sizeof(postfix_request));
    is_long(scan_all(buf, sizeof(postfix_request) - 1, &reqlen, &reason), POLICY_COMPLETE,
            "Postfix 3.7 DATA request is complete");
    is_long((long)reqlen, (long)sizeof(postfix_request) - 1, "request length includes the empty line");
    policy_parse(buf, reqlen, &req);
    is_long(req.attr_count, 29, "29 attributes");
    is_str(req.request, "smtpd_access_policy", "request");
    is_str(req.protocol_state, "DATA", "protocol_state");
    is_str(req.sasl_username, "alice@example.org", "sasl_username");
    is_str(req.sasl_method, "PLAIN", "sasl_method");
    is_str(req.queue_id, "DA616A7C20E", "queue_id");
    is_str(req.instance, "6899.6b025926.d97ac.0", "instance");
    is_str(req.client_address, "127.0.0.1", "client_address");
    is_str(req.client_name, "localhost", "client_name");
    is_str(req.helo_name, "client.example.org", "helo_name");
    is_str(req.sender, "alice@example.org", "sender");
    is_str(req.recipient, "", "recipient empty (several recipients)");
    is_str(req.recipient_count, "3", "recipient_count");
    is_str(req.size, "0", "size");
}

static void test_incremental(void)
{
    struct policy_scanner s;
    size_t reqlen = 0, len = sizeof(postfix_request) - 1;
    const char *reason;
    enum policy_status st = POLICY_INCOMPLETE;
    size_t completed_at = 0;

    /* One byte at a time: incomplete until the very last byte. */
    policy_scanner_reset(&s);
    for (size_t n = 1; n <= len && st == POLICY_INCOMPLETE; n++) {
        st = policy_scan(&s, postfix_request, n, &reqlen, &reason);
        completed_at = n;
    }
    is_long(st, POLICY_COMPLETE, "byte by byte: complete");
    is_long((long)completed_at, (long)len, "byte by byte: complete exactly at the last byte");
    is_long((long)reqlen, (long)len, "byte by byte: length");
}

static void test_pipelined_and_crlf(void)
{
    char buf[] = "request=a\r\nsasl_username=x\r\n\r\nrequest=b\nsasl_username=y\n\n";
    struct policy_request req;
    size_t reqlen;
    const char *reason;

    is_long(scan_all(buf, strlen(buf), &reqlen, &reason), POLICY_COMPLETE, "pipelined: first complete");
    is_long((long)reqlen, 30, "pipelined: first ends after CRLF CRLF");
    char *second = buf + reqlen;
    size_t rest = strlen(second);
    policy_parse(buf, reqlen, &req);
    is_str(req.sasl_username, "x", "CRLF stripped from values");
    is_str(req.request, "a", "first request attribute");
    is_long(scan_all(second, rest, &reqlen, &reason), POLICY_COMPLETE, "pipelined: second complete");
    policy_parse(second, reqlen, &req);
    is_str(req.sasl_username, "y", "second request's sender");
}

static void test_unknown_order_missing(void)
{
    char buf[] = "future_attribute=1\nsasl_username=bob\nrequest=smtpd_access_policy\nx=a=b\n\n";
    struct policy_request req;
    size_t reqlen;
    const char *reason;

    is_long(scan_all(buf, strlen(buf), &reqlen, &reason), POLICY_COMPLETE, "unknown attributes accepted");
    policy_parse(buf, reqlen, &req);
    is_str(req.sasl_username, "bob", "any attribute order");
    is_str(req.queue_id, "", "missing attribute is empty");
    is_long(req.attr_count, 4, "unknown attributes counted, ignored");
}

static void malformed(const char *what, const char *buf, size_t len, const char *want_reason)
{
    size_t reqlen;
    const char *reason = NULL;
    is_long(scan_all(buf, len, &reqlen, &reason), POLICY_MALFORMED, "%s: malformed", what);
    is_str(reason, want_reason, "%s: reason", what);
}

static void test_malformed(void)
{
    static char big[80000];

    malformed("line without =", "request=x\nnonsense\n\n", 19, "line without '='");
    malformed("empty name", "=value\n\n", 8, "attribute without a name");
    malformed("NUL byte", "request=a\0b\n\n", 13, "NUL byte in request");
    malformed("empty request", "\n", 1, "empty request");

    /* A line of exactly the maximum is fine; one byte more is not. */
    memset(big, 'x', sizeof(big));
    memcpy(big, "helo_name=", 10);
    big[POLICY_MAX_LINE] = '\n';
    big[POLICY_MAX_LINE + 1] = '\n';
    size_t reqlen;
    const char *reason;
    is_long(scan_all(big, POLICY_MAX_LINE + 2, &reqlen, &reason), POLICY_COMPLETE,
            "line of POLICY_MAX_LINE bytes accepted");
    memset(big, 'x', sizeof(big));
    memcpy(big, "helo_name=", 10);
    big[POLICY_MAX_LINE + 1] = '\n';
    malformed("line one byte too long", big, POLICY_MAX_LINE + 2, "line too long");
    /* Too long is detected before the newline arrives. */
    big[POLICY_MAX_LINE + 1] = 'x';
    malformed("overlong line without newline yet", big, POLICY_MAX_LINE + 3, "line too long");

    /* Many attributes. */
    size_t len = 0;
    for (int i = 0; i <= POLICY_MAX_ATTRS; i++)
        len += (size_t)snprintf(big + len, sizeof(big) - len, "a%d=1\n", i);
    malformed("too many attributes", big, len, "too many attributes");

    /* Many short lines below the attribute limit but a huge request: the
     * size bound catches it. */
    memset(big, 'v', sizeof(big));
    len = 0;
    for (int i = 0; i < 9; i++) {
        memcpy(big + len, "a=", 2);
        len += 8000;
        big[len - 1] = '\n';
    }
    malformed("request too large", big, POLICY_MAX_REQUEST, "request too large");
}

static void test_helo_sender_1500(void)
{
    /* PolicydRateGuard read one 2048-byte chunk and lost sasl_username
     * behind long helo_name and sender; here they are just long lines. */
    static char buf[8192];
    char longv[1501];
    struct policy_request req;
    size_t reqlen;
    const char *reason;

    memset(longv, 'h', 1500);
    longv[1500] = '\0';
    int n = snprintf(buf, sizeof(buf), "request=smtpd_access_policy\nhelo_name=%s\nsender=%s\n"
                     "sasl_username=carol@example.org\n\n", longv, longv);
    is_long(scan_all(buf, (size_t)n, &reqlen, &reason), POLICY_COMPLETE, "1500-byte helo and sender");
    policy_parse(buf, reqlen, &req);
    is_str(req.sasl_username, "carol@example.org", "sasl_username after 3000 bytes");
    is_long((long)strlen(req.sender), 1500, "sender kept whole");
}

int main(void)
{
    test_postfix_request();
    test_incremental();
    test_pipelined_and_crlf();
    test_unknown_order_missing();
    test_malformed();
    test_helo_sender_1500();
    return done_testing();
}
