/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * sentrysend.c - delivery of queued errors to Sentry (see sentrysend.h).
 * The key is in the auth header only; log lines show the masked DSN.
 */
#include "sentrysend.h"
#include "config.h"
#include "errqueue.h"
#include "httppost.h"
#include "log.h"
#include "sentry.h"
#include "rateguard.h"
#include "util.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PER_CALL 8
#define PAUSE_AFTER_FAILURE_MS 10000

static CURL *curl;
static int64_t paused_until_ms;

static bool post(const struct rg_config *cfg, const char *body, char *why, size_t whysize)
{
    char url[1200], auth[400];
    struct curl_slist *headers = NULL;

    sentry_envelope_url(&cfg->sentry_dsn, url, sizeof(url));
    sentry_auth_header(&cfg->sentry_dsn, auth, sizeof(auth));
    headers = curl_slist_append(headers, "Content-Type: application/x-sentry-envelope");
    headers = curl_slist_append(headers, auth);
    long status;
    CURLcode rc = http_post(curl, url, headers, body, "rateguard/" RATEGUARD_VERSION, cfg->sentry.timeout,
                            cfg->sentry.ca_file, &status, why, whysize);
    curl_slist_free_all(headers);
    memset(auth, 0, sizeof(auth));
    if (rc != CURLE_OK)
        return false;
    return status >= 200 && status < 300;
}

static const char *level_of(const struct errqueue_event *e)
{
    if (e->signal < 0)
        return "fatal";     /* log_fatal */
    switch (e->signal) {
    case SIGSEGV: case SIGBUS: case SIGILL: case SIGFPE: case SIGABRT:
        return "fatal";
    default:
        return "error";
    }
}

/* Send one event; false (logged as a warning) when it was not delivered. */
static bool send_one(const struct rg_config *cfg, const struct errqueue_event *ep)
{
    static char body[24576];
    char instance[64], host[256] = "localhost", why[256], masked[1200];
    const struct errqueue_event e = *ep;

    config_instance_name(cfg, instance, sizeof(instance));
    gethostname(host, sizeof(host) - 1);
    {
        struct sentry_event ev = {
            .time_us = e.time_us, .level = level_of(&e), .process = e.process, .instance = instance,
            .server_name = host, .release = cfg->sentry.release, .environment = cfg->sentry.environment,
            .message = e.text, .template = e.format, .signal = e.signal > 0 ? e.signal : 0, .pid = e.pid,
            .suppressed = e.suppressed,
        };
        sentry_event_id(ev.event_id);
        sentry_dsn_masked(&cfg->sentry_dsn, masked, sizeof(masked));
        if (!sentry_envelope(&cfg->sentry_dsn, &ev, clock_realtime_us(), body, sizeof(body))) {
            log_warning("sentry: event %s too large to send; dropped", ev.event_id);
            errqueue_count(false);
            return true;
        }
        bool ok = post(cfg, body, why, sizeof(why));
        memset(body, 0, sizeof(body));      /* the envelope header holds the DSN */
        errqueue_count(ok);
        if (ok) {
            log_debug("sentry: event %s sent to %s (%s)", ev.event_id, masked, why);
            return true;
        }
        log_warning("sentry: event %s not delivered to %s (%s); dropped, nothing sent for %d s", ev.event_id,
                    masked, why, PAUSE_AFTER_FAILURE_MS / 1000);
        return false;
    }
}

static bool have_curl(void)
{
    if (curl == NULL && (curl = curl_easy_init()) == NULL) {
        log_warning("sentry: curl_easy_init failed");
        return false;
    }
    return true;
}

void sentrysend_drain(const struct rg_config *cfg)
{
    struct errqueue_event e;

    if (cfg->sentry_dsn.key[0] == '\0' || clock_monotonic_ms() < paused_until_ms)
        return;
    if (!have_curl()) {
        paused_until_ms = clock_monotonic_ms() + PAUSE_AFTER_FAILURE_MS;
        return;
    }
    for (int i = 0; i < PER_CALL && errqueue_pop(&e); i++)
        if (!send_one(cfg, &e)) {
            paused_until_ms = clock_monotonic_ms() + PAUSE_AFTER_FAILURE_MS;
            break;
        }
}

static const struct rg_config *fatal_cfg;

static void send_fatal(const struct errqueue_event *e)
{
    if (fatal_cfg && fatal_cfg->sentry_dsn.key[0] && have_curl())
        send_one(fatal_cfg, e);
}

void sentrysend_fatal_to(const struct rg_config *cfg)
{
    fatal_cfg = cfg;
    errqueue_set_fatal_sender(send_fatal);
}

void sentrysend_close(void)
{
    if (curl)
        curl_easy_cleanup(curl);
    curl = NULL;
}
