/*
 * log.c - writes each message to the configured sinks: syslog (ident
 * "rateguard", the configured facility), an optional append-only file
 * (one write(2) per line so lines from several processes never
 * interleave) and stderr when running on a console.
 */
#include "log.h"
#include "config.h"
#include "rateguard.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct {
    bool opened;
    bool use_syslog, use_console;
    int level;
    int file_fd;
    char file_path[4096];
    unsigned *shared_generation;    /* bumped by the master on SIGUSR2 */
    unsigned generation;            /* the one our file_fd belongs to */
    void (*error_hook)(int level, const char *format, const char *text);
} logstate = {.use_console = true, .level = LOG_INFO, .file_fd = -1};

void log_set_error_hook(void (*hook)(int level, const char *format, const char *text))
{
    logstate.error_hook = hook;
}

static const char *level_name(int level)
{
    switch (level) {
    case LOG_DEBUG: return "debug";
    case LOG_INFO: return "info";
    case LOG_NOTICE: return "notice";
    case LOG_WARNING: return "warning";
    case LOG_ERR: return "error";
    case LOG_CRIT: return "fatal";
    default: return "panic";
    }
}

static void open_file(void)
{
    if (logstate.file_path[0] == '\0')
        return;
    /* Opened as root at start, in a directory the daemon's user may own:
     * never through a symbolic link. */
    logstate.file_fd = open(logstate.file_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (logstate.file_fd < 0)
        fprintf(stderr, "rateguard: warning: open(%s): %s\n", logstate.file_path, strerror(errno));
}

void log_open(const struct rg_config *cfg, bool console)
{
    log_close();
    logstate.use_syslog = cfg->log.syslog;
    logstate.use_console = console || cfg->log.console;
    logstate.level = cfg->log_level;
    snprintf(logstate.file_path, sizeof(logstate.file_path), "%s", cfg->log.file);
    if (logstate.use_syslog)
        openlog(RATEGUARD_NAME, LOG_PID | LOG_NDELAY, cfg->syslog_facility);
    open_file();
    logstate.opened = true;
}

void log_close(void)
{
    if (logstate.file_fd >= 0)
        close(logstate.file_fd);
    logstate.file_fd = -1;
    if (logstate.opened && logstate.use_syslog)
        closelog();
    logstate.opened = false;
}

void log_file_owner(uid_t uid, gid_t gid)
{
    struct stat st;
    /* Only a plain file of one name: a hard link to another file must not
     * be given away. */
    if (logstate.file_fd < 0 || geteuid() != 0 || fstat(logstate.file_fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        st.st_nlink != 1)
        return;
    if (fchown(logstate.file_fd, uid, gid) < 0)
        fprintf(stderr, "rateguard: warning: fchown(%s): %s\n", logstate.file_path, strerror(errno));
}

void log_share_generation(unsigned *generation)
{
    logstate.shared_generation = generation;
    if (generation)
        logstate.generation = __atomic_load_n(generation, __ATOMIC_RELAXED);
}

void log_bump_generation(void)
{
    if (logstate.shared_generation)
        __atomic_fetch_add(logstate.shared_generation, 1, __ATOMIC_RELAXED);
    log_reopen();
}

void log_reopen(void)
{
    if (logstate.file_fd >= 0)
        close(logstate.file_fd);
    logstate.file_fd = -1;
    open_file();
}

static void log_write(int level, const char *fmt, va_list ap)
{
    char raw[2048], msg[4096], line[4200];
    int saved_errno = errno;

    if (level > logstate.level)
        return;
    /* Whatever a message quotes (a client's queue_id, a sender, a
     * database error), control characters reach no log or terminal. */
    vsnprintf(raw, sizeof(raw), fmt, ap);
    text_escape(msg, sizeof(msg), raw, sizeof(raw));
    if ((level == LOG_ERR || level == LOG_CRIT) && logstate.error_hook)
        logstate.error_hook(level, fmt, msg);
    if (logstate.shared_generation &&
        __atomic_load_n(logstate.shared_generation, __ATOMIC_RELAXED) != logstate.generation) {
        logstate.generation = __atomic_load_n(logstate.shared_generation, __ATOMIC_RELAXED);
        log_reopen();
    }

    if (logstate.opened && logstate.use_syslog)
        syslog(level, "%s%s%s", level <= LOG_WARNING ? level_name(level) : "",
               level <= LOG_WARNING ? ": " : "", msg);

    if (logstate.file_fd >= 0 || logstate.use_console) {
        char stamp[32];
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
        int len = snprintf(line, sizeof(line), "%s.%03ld rateguard[%ld]: %s: %s\n", stamp,
                           ts.tv_nsec / 1000000, (long)getpid(), level_name(level), msg);
        if (len < 0)
            len = 0;
        if ((size_t)len >= sizeof(line)) {
            len = sizeof(line) - 1;
            line[len - 1] = '\n';
        }
        /* A full disk must not stop mail: a failed write is dropped. */
        if (logstate.file_fd >= 0 && write(logstate.file_fd, line, (size_t)len) < 0) {
        }
        if (logstate.use_console && write(STDERR_FILENO, line, (size_t)len) < 0) {
        }
    }
    errno = saved_errno;
}

void log_msg(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_write(level, fmt, ap);
    va_end(ap);
}

void log_fatal(int exit_code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_write(LOG_CRIT, fmt, ap);
    va_end(ap);
    exit(exit_code);
}

void log_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_write(LOG_ALERT, fmt, ap);
    va_end(ap);
    abort();
}
