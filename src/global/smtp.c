/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * smtp.c - the SMTP client of the report (see smtp.h). libcurl speaks the
 * protocol (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA with dot-stuffing);
 * this file only feeds it the settings and the message.
 */
#include "smtp.h"
#include "config.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

struct upload {
    const char *data;
    size_t left;
};

static size_t read_message(char *buf, size_t size, size_t n, void *arg)
{
    struct upload *u = arg;
    size_t room = size * n, take = u->left < room ? u->left : room;
    memcpy(buf, u->data, take);
    u->data += take;
    u->left -= take;
    return take;
}

bool smtp_send(const struct rg_config *cfg, const char *from, const char *message, char *why, size_t whysize)
{
    char url[400], sender[300], errbuf[CURL_ERROR_SIZE] = "";
    struct upload up = {.data = message, .left = strlen(message)};
    struct curl_slist *rcpt = NULL;
    CURL *curl = curl_easy_init();

    if (curl == NULL) {
        snprintf(why, whysize, "curl_easy_init failed");
        return false;
    }
    bool v6 = strchr(cfg->smtp_host, ':') != NULL;
    snprintf(url, sizeof(url), "smtp://%s%s%s:%ld", v6 ? "[" : "", cfg->smtp_host, v6 ? "]" : "", cfg->smtp_port);
    snprintf(sender, sizeof(sender), "<%s>", from);
    for (size_t i = 0; i < cfg->report.to.count; i++) {
        char to[300];
        snprintf(to, sizeof(to), "<%s>", cfg->report.to.items[i]);
        rcpt = curl_slist_append(rcpt, to);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp");
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, sender);
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_message);
    curl_easy_setopt(curl, CURLOPT_READDATA, &up);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, cfg->report.timeout);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, cfg->report.timeout);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    if (cfg->report.starttls)
        curl_easy_setopt(curl, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    if (cfg->report.ca_file[0])
        curl_easy_setopt(curl, CURLOPT_CAINFO, cfg->report.ca_file);
    if (cfg->report.user[0]) {
        curl_easy_setopt(curl, CURLOPT_USERNAME, cfg->report.user);
        curl_easy_setopt(curl, CURLOPT_PASSWORD, cfg->report.password);
    }
    CURLcode rc = curl_easy_perform(curl);
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(curl);
    if (rc == CURLE_OK)
        return true;
    snprintf(why, whysize, "%s%s%s (last reply %ld)", curl_easy_strerror(rc), errbuf[0] ? ": " : "", errbuf, code);
    return false;
}
