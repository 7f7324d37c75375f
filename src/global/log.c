/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * log.c - writes each message to the configured sinks: syslog (ident
 * "rateguard", the configured facility), an optional append-only file
 * (one write(2) per line so lines from several processes never
 * interleave) and stderr when running on a console. The file is opened
 * as root at start in a directory of the daemon's user: only a regular
 * file of one name, owned by root or that user, is appended to.
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
#include <paths.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct {
    bool opened;
    bool use_syslog, use_console;
    int level;
    int console_level;              /* the least severe level written to stderr */
    int file_fd;
    char file_path[4096];
    char refused[4300];             /* why the file at file_path is not used */
    unsigned *shared_generation;    /* bumped by the master on SIGUSR2 */
    unsigned generation;            /* the one our file_fd belongs to */
    void (*error_hook)(int level, const char *format, const char *text);
} logstate = {.use_console = true, .level = LOG_INFO, .console_level = LOG_DEBUG, .file_fd = -1};

void log_console_quiet(void)
{
    logstate.console_level = LOG_WARNING;
}

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

/* Refuse the file at the configured path (kept for log_file_refusal()). */
static bool refuse(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool refuse(int fd, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(logstate.refused, sizeof(logstate.refused), "refusing log file %s: ", logstate.file_path);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(logstate.refused))
        vsnprintf(logstate.refused + n, sizeof(logstate.refused) - (size_t)n, fmt, ap);
    va_end(ap);
    if (fd >= 0)
        close(fd);
    return false;
}

/* The group of the directory that holds the log file, which a new file
 * takes (issue 26: /var/log/rateguard is postfix:adm, as logrotate's
 * create line): -1 when unknown. */
static gid_t directory_group(void)
{
    char dir[sizeof(logstate.file_path)];
    struct stat st;
    snprintf(dir, sizeof(dir), "%s", logstate.file_path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else
        slash[slash == dir] = '\0';       /* "/x.log" -> "/" */
    return stat(dir, &st) == 0 ? st.st_gid : (gid_t)-1;
}

/* Open the log file for appending. Root opens it at start in a directory
 * the daemon's user owns, so whatever that user left at the path is
 * suspect: a symbolic link, a FIFO (which would hang the open) or a hard
 * link to another file are refused (false, the reason in refused[]); a
 * file that merely cannot be opened is a warning and logging goes on
 * without it. */
static bool open_file(void)
{
    const int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
    struct stat st;
    bool created = false;

    logstate.refused[0] = '\0';
    if (logstate.file_path[0] == '\0')
        return true;
    int fd = open(logstate.file_path, flags);
    if (fd < 0 && errno == ENOENT) {
        fd = open(logstate.file_path, flags | O_CREAT | O_EXCL, 0640);
        created = fd >= 0;
        if (fd < 0 && errno == EEXIST)      /* made meanwhile: as any other */
            fd = open(logstate.file_path, flags);
    }
    if (fd < 0) {
        if (errno == ELOOP)
            return refuse(-1, "a symbolic link");
        if (errno == ENXIO || errno == EISDIR)      /* a FIFO no one reads, a directory */
            return refuse(-1, "not a regular file");
        fprintf(stderr, "rateguard: warning: open(%s): %s\n", logstate.file_path, strerror(errno));
        return true;
    }
    if (fstat(fd, &st) < 0)
        return refuse(fd, "fstat: %s", strerror(errno));
    if (!S_ISREG(st.st_mode))
        return refuse(fd, "not a regular file");
    if (st.st_nlink != 1)
        return refuse(fd, "%lu hard links (a link to another file is not appended to)", (unsigned long)st.st_nlink);
    /* Writes of a line to a regular file do not block anyway; a full
     * disk is dropped (log_write). */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    gid_t group = created ? directory_group() : (gid_t)-1;
    if (group != (gid_t)-1 && group != st.st_gid && fchown(fd, (uid_t)-1, group) < 0 && geteuid() == 0)
        fprintf(stderr, "rateguard: warning: fchown(%s): %s\n", logstate.file_path, strerror(errno));
    logstate.file_fd = fd;
    return true;
}

const char *log_file_refusal(void)
{
    return logstate.refused[0] ? logstate.refused : NULL;
}

bool log_open(const struct rg_config *cfg, bool console)
{
    log_close();
    logstate.use_syslog = cfg->log.syslog;
    logstate.use_console = console || cfg->log.console;
    logstate.level = cfg->log_level;
    snprintf(logstate.file_path, sizeof(logstate.file_path), "%s", cfg->log.file);
    if (logstate.use_syslog)
        openlog(RATEGUARD_NAME, LOG_PID | LOG_NDELAY, cfg->syslog_facility);
    bool ok = open_file();
    logstate.opened = true;
    return ok;
}

bool log_reaches_anyone(void)
{
    if (logstate.file_fd >= 0)
        return true;
    if (!logstate.use_syslog)
        return false;
    /* syslog(3) drops lines silently when nothing listens on its socket. */
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    str_copy(sun.sun_path, _PATH_LOG, sizeof(sun.sun_path));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bool reached = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    if (fd >= 0)
        close(fd);
    return reached;
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

bool log_file_owner(uid_t uid)
{
    struct stat st;

    if (logstate.file_fd < 0 || geteuid() != 0)
        return true;
    if (fstat(logstate.file_fd, &st) < 0) {
        fprintf(stderr, "rateguard: warning: fstat(%s): %s\n", logstate.file_path, strerror(errno));
        return true;
    }
    /* open_file() saw a regular file of one name; the owner is the last
     * thing the daemon's user could have chosen. */
    if (st.st_uid != 0 && st.st_uid != uid) {
        bool ok = refuse(logstate.file_fd, "owned by uid %ld, neither root nor the daemon's user", (long)st.st_uid);
        logstate.file_fd = -1;
        return ok;
    }
    /* the group stays: the directory's (open_file) or logrotate's */
    if (st.st_uid != uid && fchown(logstate.file_fd, uid, (gid_t)-1) < 0)
        fprintf(stderr, "rateguard: warning: fchown(%s): %s\n", logstate.file_path, strerror(errno));
    return true;
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
    /* No caller to hand a refusal to (SIGUSR2, at a message): it goes to
     * syslog and stderr, and the daemon goes on without the file. */
    if (!open_file()) {
        if (logstate.opened && logstate.use_syslog)
            syslog(LOG_ERR, "error: %s", logstate.refused);
        fprintf(stderr, "rateguard: error: %s\n", logstate.refused);
    }
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
    text_escape_controls(msg, sizeof(msg), raw, sizeof(raw));
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
        if (logstate.use_console && level <= logstate.console_level && write(STDERR_FILENO, line, (size_t)len) < 0) {
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
