/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * policy.c - scanner and parser for the policy delegation protocol.
 * Bounds are checked while scanning, before a request is complete, so a
 * client cannot make a worker buffer more than POLICY_MAX_REQUEST bytes.
 */
#include "policy.h"

#include <string.h>
#include <strings.h>

void policy_scanner_reset(struct policy_scanner *s)
{
    memset(s, 0, sizeof(*s));
}

enum policy_status policy_scan(struct policy_scanner *s, const char *buf, size_t len,
                               size_t *reqlen, const char **reason)
{
    for (; s->pos < len; s->pos++) {
        char c = buf[s->pos];
        if (c == '\0') {
            *reason = "NUL byte in request";
            return POLICY_MALFORMED;
        }
        if (c != '\n')
            continue;

        size_t line_len = s->pos - s->line_start;
        if (line_len > 0 && buf[s->pos - 1] == '\r')
            line_len--;
        if (line_len > POLICY_MAX_LINE) {
            *reason = "line too long";
            return POLICY_MALFORMED;
        }
        if (line_len == 0) {
            if (s->attrs == 0) {
                *reason = "empty request";
                return POLICY_MALFORMED;
            }
            *reqlen = s->pos + 1;
            return POLICY_COMPLETE;
        }
        const char *line = buf + s->line_start;
        const char *eq = memchr(line, '=', line_len);
        if (eq == NULL) {
            *reason = "line without '='";
            return POLICY_MALFORMED;
        }
        if (eq == line) {
            *reason = "attribute without a name";
            return POLICY_MALFORMED;
        }
        if (++s->attrs > POLICY_MAX_ATTRS) {
            *reason = "too many attributes";
            return POLICY_MALFORMED;
        }
        s->line_start = s->pos + 1;
    }
    if (s->pos - s->line_start > POLICY_MAX_LINE + 1) {
        *reason = "line too long";
        return POLICY_MALFORMED;
    }
    if (len >= POLICY_MAX_REQUEST) {
        *reason = "request too large";
        return POLICY_MALFORMED;
    }
    return POLICY_INCOMPLETE;
}

static const struct {
    const char *name;
    size_t offset;
} known_attrs[] = {
#define ATTR(n) {#n, offsetof(struct policy_request, n)}
    ATTR(request), ATTR(protocol_state), ATTR(sasl_username), ATTR(sasl_method),
    ATTR(queue_id), ATTR(instance), ATTR(client_address), ATTR(client_name),
    ATTR(helo_name), ATTR(sender), ATTR(recipient), ATTR(recipient_count), ATTR(size),
    ATTR(rateguard_test_now),
#undef ATTR
};

void policy_parse(char *buf, size_t reqlen, struct policy_request *req)
{
    char *end = buf + reqlen;

    for (size_t i = 0; i < sizeof(known_attrs) / sizeof(known_attrs[0]); i++)
        *(const char **)((char *)req + known_attrs[i].offset) = "";
    req->attr_count = 0;

    for (char *line = buf; line < end;) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        if (nl == NULL)
            break;
        char *next = nl + 1;
        if (nl > line && nl[-1] == '\r')
            nl--;
        if (nl == line)
            break;              /* the empty line that ends the request */
        *nl = '\0';
        char *eq = strchr(line, '=');
        if (eq) {               /* always true for scanned input */
            *eq = '\0';
            req->attr_count++;
            for (size_t i = 0; i < sizeof(known_attrs) / sizeof(known_attrs[0]); i++)
                if (strcmp(line, known_attrs[i].name) == 0) {
                    *(const char **)((char *)req + known_attrs[i].offset) = eq + 1;
                    break;
                }
        }
        line = next;
    }
}

const char *const policy_refusal_names[POLICY_REFUSALS] = {"defer_if_permit", "defer", "reject", "hold",
                                                           "discard", "other"};

enum policy_refusal policy_refusal_of(const char *action)
{
    static const struct {
        const char *word;
        enum policy_refusal kind;
    } words[] = {{"DEFER_IF_PERMIT", REFUSAL_DEFER_IF_PERMIT}, {"DEFER", REFUSAL_DEFER}, {"REJECT", REFUSAL_REJECT},
                 {"HOLD", REFUSAL_HOLD}, {"DISCARD", REFUSAL_DISCARD}};
    size_t len = strcspn(action, " \t\n");

    if (len == 3 && (action[0] == '4' || action[0] == '5') && action[1] >= '0' && action[1] <= '9' &&
        action[2] >= '0' && action[2] <= '9')
        return action[0] == '4' ? REFUSAL_DEFER : REFUSAL_REJECT;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strlen(words[i].word) == len && strncasecmp(action, words[i].word, len) == 0)
            return words[i].kind;
    return REFUSAL_OTHER;
}
