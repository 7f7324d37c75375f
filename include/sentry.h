/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * sentry.h - what a Sentry event consists of, pure: the DSN parsed and
 * checked (scheme, public key, host, optional port and path, numeric
 * project id), the DSN with its key masked (for logs), the envelope
 * endpoint, the X-Sentry-Auth header and the envelope itself (envelope
 * header, item header, event payload). No I/O: the notifier sends
 * (sentrysend.c), errqueue.c collects the errors.
 *
 * Results go into caller-provided buffers; false means the buffer was too
 * small or the input unusable. The key is in struct sentry_dsn and in the
 * auth header only: never log either, log sentry_dsn_masked().
 */
#ifndef RG_SENTRY_H
#define RG_SENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* <scheme>://<public key>[:<secret>]@<host>[:<port>][/<path>]/<project id> */
struct sentry_dsn {
    char scheme[8];             /* "http" or "https" */
    char key[128];              /* the public key: a credential */
    char host[256];             /* as written ("[::1]" keeps its brackets) */
    char port[8];               /* "" when absent */
    char path[512];             /* "" or "/prefix" without a trailing slash */
    char project[24];           /* digits */
};

/* Parse and check a DSN; err receives the reason (never the key). http
 * is refused unless the host is this machine (netaddr_host_is_loopback):
 * the key would cross the network in clear text. */
bool sentry_dsn_parse(const char *text, struct sentry_dsn *out, char *err, size_t errsize);

/* The DSN with the key replaced by "****": safe to log. */
void sentry_dsn_masked(const struct sentry_dsn *d, char *out, size_t size);

/* <scheme>://<key>@<host>[:<port>][<path>]/<project>: the DSN as Sentry
 * issues it today, without a legacy secret (for the envelope header; it
 * holds the key: never log it). */
void sentry_dsn_public(const struct sentry_dsn *d, char *out, size_t size);

/* <scheme>://<host>[:<port>]<path>/api/<project>/envelope/ */
void sentry_envelope_url(const struct sentry_dsn *d, char *out, size_t size);

/* "X-Sentry-Auth: Sentry sentry_version=7, sentry_key=<key>,
 * sentry_client=rateguard/<version>" (a whole header line for libcurl). */
void sentry_auth_header(const struct sentry_dsn *d, char *out, size_t size);

/* One event: an error line of the daemon, or a child killed by a signal. */
struct sentry_event {
    char event_id[33];          /* 32 lower-case hex digits */
    int64_t time_us;            /* when it happened (unix microseconds) */
    const char *level;          /* "error", "fatal" */
    const char *process;        /* master, worker, writer, notifier */
    const char *instance;       /* rateguard-<hash> */
    const char *server_name, *release, *environment;
    const char *message;        /* the log line's text */
    const char *template;       /* its printf format: the fingerprint */
    int signal;                 /* > 0: the child's signal (a tag) */
    long pid;                   /* the process that logged it */
    uint64_t suppressed;        /* repeats of this error not sent since the last event */
};

/* A fresh random event id. */
void sentry_event_id(char out[33]);

/* The event's JSON payload (see docs/notifications.md, "Sentry", for the exact fields). */
bool sentry_event_json(const struct sentry_event *ev, char *out, size_t size);

/* The whole envelope: header line {"event_id","dsn","sent_at"}, item
 * header {"type":"event","length":N}, the payload, each ending in \n.
 * The header's dsn is sentry_dsn_public(d): no secret (it goes to Sentry
 * only). */
bool sentry_envelope(const struct sentry_dsn *d, const struct sentry_event *ev, int64_t sent_us, char *out,
                     size_t size);

/* ISO 8601 UTC with microseconds: 2026-12-04T18:40:00.123456Z */
void sentry_timestamp(int64_t time_us, char out[40]);

#endif
