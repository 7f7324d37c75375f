/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * smtp.h - handing one message to an SMTP server with libcurl: plain SMTP
 * or STARTTLS (then required: no fallback to clear text), optional AUTH,
 * a timeout for the whole exchange. Used by the report (report.c), from
 * `rateguard cleanup`/`report` and from the notifier.
 */
#ifndef RG_SMTP_H
#define RG_SMTP_H

#include <stdbool.h>
#include <stddef.h>

struct rg_config;

/*
 * Send message (RFC 5322 text, CRLF line ends) from report.from to every
 * report.to through report.smtp_server. False with the reason in why (the
 * server's answer where there was one; never the password).
 */
bool smtp_send(const struct rg_config *cfg, const char *from, const char *message, char *why, size_t whysize);

#endif
