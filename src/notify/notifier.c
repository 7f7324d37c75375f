/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * notifier.c - webhook delivery (see notifier.h). The token or JWT is put
 * in the request only; log lines name the sender and the URL template,
 * never a token.
 */
#include "notifier.h"
#include "report.h"
#include "sentrysend.h"
#include "config.h"
#include "httppost.h"
#include "log.h"
#include "rateguard.h"
#include "shm.h"
#include "util.h"
#include "webhook.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MAX_S 300

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

enum outcome { DELIVERED, REFUSED, RETRY };

/* One attempt. *why describes a failure for the log. */
static enum outcome deliver(CURL *curl, const struct rg_config *cfg, const struct webhook_event *ev,
                            char *why, size_t whysize)
{
    static char url[8192], body[65536], jwt[4096], auth[4200];
    char token[65] = "";
    bool simple = webhook_wants_token(cfg->webhook.url);

    if (simple)
        webhook_token(cfg->webhook.secret, ev->sender, token);
    if (!webhook_payload(ev, body, sizeof(body)) ||
        !webhook_url(cfg->webhook.url, ev, simple ? token : NULL, url, sizeof(url))) {
        snprintf(why, whysize, "notification too large to send");
        return REFUSED;
    }
    struct curl_slist *headers = NULL;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Accept: application/json");
    if (!simple || cfg->webhook.use_jwt) {
        if (!webhook_jwt(cfg->webhook.secret, ev->sender, cfg->webhook.issuer, (int64_t)time(NULL), jwt,
                         sizeof(jwt))) {
            curl_slist_free_all(headers);
            snprintf(why, whysize, "webhook.secret is not base64, cannot sign a JWT");
            return REFUSED;
        }
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", jwt);
        headers = curl_slist_append(headers, auth);
    }

    long status;
    CURLcode rc = http_post(curl, url, headers, body, cfg->webhook.user_agent, cfg->webhook.timeout,
                            cfg->webhook.ca_file, &status, why, whysize);
    curl_slist_free_all(headers);
    /* The URL may hold the token: wipe our copies. */
    memset(url, 0, sizeof(url));
    memset(auth, 0, sizeof(auth));

    if (rc != CURLE_OK)
        return RETRY;
    if (status >= 200 && status < 300)
        return DELIVERED;
    /* 4xx is final, but for "try later" (408 timeout, 429 too many). */
    return status >= 400 && status < 500 && status != 408 && status != 429 ? REFUSED : RETRY;
}

/* The webhook event of a queued record (wqueue.h says where an episode's
 * fields travel). */
static struct webhook_event event_of(const struct msg_record *rec)
{
    struct webhook_event ev = {
        .event = rec->blocked ? NULL : "QUOTA_WARNING", .msgid = rec->msgid, .sender = rec->sender,
        .client_address = rec->client_address, .client_name = rec->client_name, .from_addr = rec->from_addr,
        .to_addr = rec->to_addr, .rcpt_count = rec->rcpt_count, .quota = rec->quota,
        .quota_reset = rec->quota_reset, .used = rec->used, .time_us = rec->created_us,
    };
    if (rec->event == NOTIFY_EPISODE) {
        ev.event = "SUSPECTED_HIJACK";
        ev.signals = rec->from_addr;
        ev.action = rec->client_name;
        ev.evidence = rec->to_addr;
        ev.from_addr = ev.to_addr = ev.client_name = ev.msgid = "";
    }
    return ev;
}

static void set_aside(const struct rg_config *cfg, const struct webhook_event *ev, const char *why)
{
    char path[4200], body[65536];
    snprintf(path, sizeof(path), "%s/webhook-failed.log", cfg->state_dir);
    FILE *f = fopen(path, "a");
    if (f && webhook_payload(ev, body, sizeof(body)))
        fprintf(f, "%s %s\n", why, body);
    if (f)
        fclose(f);
    log_error("webhook: notification for %s set aside in %s (%s)", ev->sender, f ? path : "(unwritable)", why);
}

/* The notifier's other duties, between webhooks and during their
 * backoff: Sentry events (sentrysend.c) and scheduled reports (report.c). */
static void side_work(const struct notifier_ctx *ctx)
{
    sentrysend_drain(ctx->cfg);
    if (ctx->cfg->report.enabled)
        report_send_pending(ctx->cfg);
}

/* Sleep up to seconds, returning early when told to stop. */
static void pause_for(const struct notifier_ctx *ctx, int seconds)
{
    struct pollfd p = {.fd = ctx->lifeline_fd, .events = POLLIN};
    for (int i = 0; i < seconds * 10 && !stop_requested; i++) {
        side_work(ctx);
        if (poll(&p, 1, 100) > 0)
            stop_requested = 1;
    }
}

void notifier_main(const struct notifier_ctx *ctx)
{
    static char buf[WQUEUE_MAX_RECORD];
    const struct rg_config *cfg = ctx->cfg;
    struct wqueue *q = &ctx->shm->notify;
    char why[512];

    child_signals(on_term, false);
    log_debug("notifier %ld started", (long)getpid());
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *curl = curl_easy_init();
    if (curl == NULL)
        log_fatal(RG_EXIT_RUNTIME, "webhook: curl_easy_init failed");

    while (!stop_requested) {
        struct wqueue_cursor cur;
        struct msg_record rec;
        size_t len;
        side_work(ctx);
        if (q->sh == NULL) {            /* the webhook is off: Sentry and reports only */
            pause_for(ctx, 1);
            continue;
        }
        wqueue_cursor_start(q, &cur);
        if (!wqueue_next(q, &cur, buf, sizeof(buf), &rec, &len)) {
            pause_for(ctx, 1);
            continue;
        }
        struct webhook_event ev = event_of(&rec);
        for (long attempt = 0;; attempt++) {
            enum outcome o = deliver(curl, cfg, &ev, why, sizeof(why));
            if (o == DELIVERED) {
                log_info("webhook: %s notified of %s for %s (%s)", cfg->webhook.url,
                         ev.event ? ev.event : "QUOTA_LIMIT_REACHED", ev.sender, why);
                if (ev.event == NULL)
                    report_note_webhook(cfg, ev.sender, true);
                break;
            }
            if (o == REFUSED || attempt >= cfg->webhook.retries) {
                set_aside(cfg, &ev, why);
                if (ev.event == NULL)
                    report_note_webhook(cfg, ev.sender, false);
                break;
            }
            int delay = attempt < 9 ? 1 << attempt : BACKOFF_MAX_S;
            if (delay > BACKOFF_MAX_S)
                delay = BACKOFF_MAX_S;
            log_warning("webhook: %s for %s failed (%s); retry %ld of %ld in %d s", cfg->webhook.url, ev.sender,
                        why, attempt + 1, cfg->webhook.retries, delay);
            pause_for(ctx, delay);
            if (stop_requested)
                goto out;       /* kept in the queue for the next start */
        }
        wqueue_release(q, &cur);
    }
out:
    sentrysend_close();
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    _exit(RG_EXIT_OK);
}
