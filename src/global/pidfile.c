/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * pidfile.c - flock()-based pidfile: no race between two starts, and a
 * stale file (its daemon killed with SIGKILL) never prevents a start.
 *
 * The pidfile lives in a directory the daemon's user owns, so root never
 * writes it: the master only reads it (to say "already running") before
 * it drops privileges, and creates it after. Every open refuses symbolic
 * links and anything but a regular file (a FIFO would block the reader).
 */
#include "pidfile.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static pid_t read_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return (pid_t)strtol(buf, NULL, 10);
}

/* Open an existing pidfile for reading: a regular file, not followed
 * through a link. -1 when there is none (or it is not one). */
static int open_existing(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        return -1;
    }
    return fd;
}

pid_t pidfile_running(const char *path)
{
    int fd = open_existing(path);
    pid_t pid = 0;

    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK)
        pid = read_pid(fd);
    close(fd);
    return pid;
}

enum pidfile_result pidfile_acquire(const char *path, int *fd_out, pid_t *other)
{
    char buf[32];
    struct stat st;

    for (int attempt = 0;; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
        /* A symbolic link, or a file we may not write (a stale one of root,
         * from before the drop): replaced, never followed or written. */
        if (fd < 0) {
            int open_errno = errno;
            if ((open_errno == ELOOP || open_errno == EACCES) && attempt == 0 && unlink(path) == 0)
                continue;
            log_error("open(%s): %s", path, strerror(open_errno));   /* not unlink's ENOENT */
            return PIDFILE_ERROR;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            *other = read_pid(fd);
            close(fd);
            return errno == EWOULDBLOCK ? PIDFILE_RUNNING : PIDFILE_ERROR;
        }
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && st.st_nlink == 1) {
            int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
                log_error("write(%s): %s", path, strerror(errno));
                close(fd);
                return PIDFILE_ERROR;
            }
            *fd_out = fd;
            return PIDFILE_OK;
        }
        /* A stale file that is not ours (left by another user, or a hard
         * link): not written, but replaced by a file of our own. */
        close(fd);
        if (attempt > 0 || unlink(path) < 0) {
            log_error("pidfile %s is not a regular file of uid %ld and cannot be replaced: %s", path,
                      (long)geteuid(), attempt > 0 ? "it came back" : strerror(errno));
            return PIDFILE_ERROR;
        }
    }
}

void pidfile_release(const char *path, int fd)
{
    unlink(path);
    close(fd);
}
