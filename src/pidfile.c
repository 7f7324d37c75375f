/*
 * pidfile.c - flock()-based pidfile: no race between two starts, and a
 * stale file (its daemon killed with SIGKILL) never prevents a start.
 */
#include "pidfile.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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

enum pidfile_result pidfile_acquire(const char *path, int *fd_out, pid_t *other)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    char buf[32];

    if (fd < 0) {
        log_error("open(%s): %s", path, strerror(errno));
        return PIDFILE_ERROR;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        *other = read_pid(fd);
        close(fd);
        return errno == EWOULDBLOCK ? PIDFILE_RUNNING : PIDFILE_ERROR;
    }
    int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
        log_error("write(%s): %s", path, strerror(errno));
        close(fd);
        return PIDFILE_ERROR;
    }
    *fd_out = fd;
    return PIDFILE_OK;
}

pid_t pidfile_running(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    pid_t pid = 0;

    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK)
        pid = read_pid(fd);
    close(fd);
    return pid;
}

void pidfile_release(const char *path, int fd)
{
    unlink(path);
    close(fd);
}
