/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * log.h - the severity ladder and its sinks (syslog, an optional file,
 * the console). Levels: info and notice (normal events), warning (a peer
 * or input problem), error (ours, counted, we go on), fatal (environment
 * or configuration: log and exit with a documented code), panic (a bug:
 * abort). Never call from a signal handler; never pass secrets.
 */
#ifndef RG_LOG_H
#define RG_LOG_H

#include <stdbool.h>
#include <syslog.h>
#include <sys/types.h>

struct rg_config;

/* Before log_open() messages go to stderr only. Returns false when the
 * log file is refused (a symbolic link, not a regular file, more than one
 * hard link): log_file_refusal() says why; the other sinks work. A file
 * log.c creates has mode 0640 and the group of its directory. */
bool log_open(const struct rg_config *cfg, bool console);

/* Why the log file was refused at the last open, or NULL. */
const char *log_file_refusal(void);

/* Only warnings and worse on stderr from now on (--quiet: a cron job's
 * output is mailed to root, so a quiet success must print nothing). */
void log_console_quiet(void);

/* True when a line logged now reaches someone: a log file is open, or
 * syslog's socket (/dev/log) takes a connection. Console output does not
 * count: a daemon's stderr goes nowhere once it has daemonized. */
bool log_reaches_anyone(void);
void log_close(void);

/* Give the log file to the account the daemon drops to, so that it can
 * reopen it later (called as root, before the drop; its group is kept).
 * False (log_file_refusal() says why, the file is closed) when it belongs
 * to neither root nor uid. */
bool log_file_owner(uid_t uid);

/* Reopen the log file (after logrotate moved it). */
void log_reopen(void);

/* Share a generation counter (in shared memory) so that every process
 * reopens the file at its next message once the master bumps it. NULL
 * stops sharing (before the memory goes away). */
void log_share_generation(unsigned *generation);
void log_bump_generation(void);

/* Called with the level (LOG_ERR, or LOG_CRIT for fatal), the format and
 * the text of every error and fatal line (the Sentry queue, errqueue.c);
 * NULL removes it. The hook must not log. */
void log_set_error_hook(void (*hook)(int level, const char *format, const char *text));

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)

/* Log at the fatal level and exit with exit_code. */
__attribute__((noreturn, format(printf, 2, 3)))
void log_fatal(int exit_code, const char *fmt, ...);

/* A broken invariant: log and abort (core dump). */
__attribute__((noreturn, format(printf, 1, 2)))
void log_panic(const char *fmt, ...);

#endif
