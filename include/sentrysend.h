/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * sentrysend.h - the notifier's side of Sentry: take the pending events
 * from errqueue.c and POST each as an envelope (sentry.h) to the DSN's
 * envelope endpoint with libcurl: http/https only, no redirects,
 * sentry.timeout for the whole request. Best effort: an event that cannot
 * be delivered is logged as a warning (never as an error, which would
 * queue another event) and dropped; after a failure nothing is tried for
 * 10 s (events wait in the ring, which drops and counts when full).
 */
#ifndef RG_SENTRYSEND_H
#define RG_SENTRYSEND_H

struct rg_config;

/* Send what is pending (up to a handful per call, so webhooks interleave).
 * Does nothing when sentry.dsn is unset. */
void sentrysend_drain(const struct rg_config *cfg);

/* Make fatal lines of this process go to Sentry at once (the master:
 * a damaged queue file stops the start, and no notifier would send it).
 * cfg is borrowed until the next call. */
void sentrysend_fatal_to(const struct rg_config *cfg);

/* Release the curl handle (the notifier's exit). */
void sentrysend_close(void);

#endif
