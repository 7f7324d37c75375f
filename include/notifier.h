/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * notifier.h - the notifier process: sends the webhook notifications that
 * workers queue (state_dir/<instance>.webhook, a file like the write-back
 * queue, so pending notifications survive a restart) with libcurl, one at
 * a time, in order. Any 2xx is success; a 4xx is final (logged); network
 * errors and other answers are retried webhook.retries times with
 * exponential backoff, then the notification is set aside in
 * state_dir/webhook-failed.log. A policy reply never waits for any of it.
 *
 * The same process sends the daemon's errors to Sentry (sentrysend.c)
 * and the reports a scheduled period reset left (report.c), between
 * webhooks and during their backoff; it runs when any of the three is
 * configured.
 */
#ifndef RG_NOTIFIER_H
#define RG_NOTIFIER_H

struct rg_config;
struct shm;

struct notifier_ctx {
    const struct rg_config *cfg;
    struct shm *shm;
    int lifeline_fd;
};

__attribute__((noreturn)) void notifier_main(const struct notifier_ctx *ctx);

#endif
