/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * httppost.h - one HTTP POST as rateguard sends them (webhooks, Sentry
 * events): http or https only, no redirects, a bound on the whole call,
 * the body of the answer discarded. Used by the notifier process only.
 */
#ifndef RG_HTTPPOST_H
#define RG_HTTPPOST_H

#include <curl/curl.h>
#include <stddef.h>

/* POST body (a string) to url with headers (borrowed), on the reused
 * handle curl. timeout_s bounds connecting and the whole call; ca_file ""
 * means the system's CAs. *status gets the HTTP status (0 without an
 * answer); why gets "HTTP N" or libcurl's reason. Returns libcurl's code. */
CURLcode http_post(CURL *curl, const char *url, struct curl_slist *headers, const char *body, const char *user_agent,
                   long timeout_s, const char *ca_file, long *status, char *why, size_t whysize);

#endif
