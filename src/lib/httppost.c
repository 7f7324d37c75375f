/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * httppost.c - the one place that sets up libcurl for a POST (see
 * httppost.h): the webhook and the Sentry sender share its limits.
 */
#include "httppost.h"

#include <stdio.h>
#include <string.h>

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

CURLcode http_post(CURL *curl, const char *url, struct curl_slist *headers, const char *body, const char *user_agent,
                   long timeout_s, const char *ca_file, long *status, char *why, size_t whysize)
{
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, user_agent);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, timeout_s);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    if (ca_file[0])
        curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file);
    CURLcode rc = curl_easy_perform(curl);
    *status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    if (rc != CURLE_OK)
        snprintf(why, whysize, "%s", curl_easy_strerror(rc));
    else
        snprintf(why, whysize, "HTTP %ld", *status);
    return rc;
}
