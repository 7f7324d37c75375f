/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * quota.h - the quota rules, pure (PolicydRateGuard compatible): count
 * first, then block when msg_counter > quota or rcpt_counter > quota.
 * Counters saturate instead of wrapping.
 */
#ifndef RG_QUOTA_H
#define RG_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

struct quota_decision {
    bool blocked;
    uint32_t msg_delta, rcpt_delta;   /* what to add to counters and totals */
};

/* Decide one message of `rcpt` recipients against the current counters:
 * blocked when the messages would pass msg_quota or the recipients
 * rcpt_quota (PolicydRateGuard: both are its one quota). With
 * count_blocked false a blocked message adds nothing. */
struct quota_decision quota_decide(uint32_t msg_quota, uint32_t rcpt_quota, uint32_t msg_counter,
                                   uint32_t rcpt_counter, uint32_t rcpt, bool count_blocked);

/* Whether the sender's next message, of one recipient, would be refused:
 * what `rateguard blocked` lists. True at exactly 100% of a quota (the
 * next message passes it), as Postfix will be answered. */
bool quota_next_refused(uint32_t msg_quota, uint32_t rcpt_quota, uint32_t msg_counter, uint32_t rcpt_counter);

/* The webhook fires on the first block of a period: true for a blocked
 * message when *notified is clear (and sets it); an accepted message clears
 * it, so a sender whose quota was raised is reported again when it passes
 * the new quota. */
bool quota_first_block(bool blocked, uint8_t *notified);

/* The warning threshold: used (the larger counter) has reached percent
 * of quota. Never with percent 0 (off) or quota 0. quota_first_block()
 * then tells the first message past it, as for blocks. */
bool quota_warning_reached(uint32_t quota, uint32_t used, unsigned percent);

/* a + b, capped at UINT32_MAX. */
uint32_t quota_sat_add(uint32_t a, uint32_t b);

#endif
