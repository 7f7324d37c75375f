/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * safedir.c - making a directory path as root without following what a
 * less trusted user could have put in it (see safedir.h). Each component
 * is opened relative to its parent's descriptor; below a directory that
 * anyone but root can write, O_NOFOLLOW refuses a symbolic link, and the
 * new directory is given away with fchown(), never by name.
 */
#include "safedir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A directory only root can change: its links are root's own. */
static bool trusted(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/* Open the directory name in dirfd, following a link only when dirfd is
 * trusted. -1 with errno; ELOOP or ENOTDIR for a link or another file. */
static int open_below(int dirfd, const char *name)
{
    int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
    return openat(dirfd, name, trusted(dirfd) ? flags : flags | O_NOFOLLOW);
}

enum safedir_result safedir_make(const char *path, mode_t mode, uid_t uid, gid_t gid, int *created, char *err,
                                 size_t errsize)
{
    char buf[4096], *name, *next;
    enum safedir_result rc = SAFEDIR_OK;

    *created = 0;
    if (path[0] != '/' || snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        snprintf(err, errsize, "%s: not an absolute path of at most %zu bytes", path, sizeof(buf) - 1);
        return SAFEDIR_ERROR;
    }
    int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errsize, "open(/): %s", strerror(errno));
        return SAFEDIR_ERROR;
    }
    for (name = buf + 1; fd >= 0 && *name; name = next) {
        next = name + strcspn(name, "/");
        bool last = next[strspn(next, "/")] == '\0';
        if (*next)
            *next++ = '\0';
        next += strspn(next, "/");
        if (*name == '\0' || strcmp(name, ".") == 0)
            continue;
        int sub = open_below(fd, name);
        if (sub < 0 && errno == ENOENT) {
            if (mkdirat(fd, name, last ? mode : 0755) < 0 && errno != EEXIST) {
                snprintf(err, errsize, "mkdir(%s): %s", path, strerror(errno));
                rc = SAFEDIR_ERROR;
                break;
            }
            sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
            *created = last && sub >= 0;
        }
        if (sub < 0) {
            if (errno == ELOOP || errno == ENOTDIR) {
                snprintf(err, errsize, "%s: '%s' is a symbolic link or not a directory, in a directory that "
                         "others than root can write; refused", path, name);
                rc = SAFEDIR_REFUSED;
            } else {
                snprintf(err, errsize, "open(%s, at '%s'): %s", path, name, strerror(errno));
                rc = SAFEDIR_ERROR;
            }
            break;
        }
        close(fd);
        fd = sub;
    }
    if (rc == SAFEDIR_OK && *created) {
        struct stat st;
        /* What we open must be the empty directory we just made, not one
         * moved there between mkdirat() and openat(). */
        if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || st.st_nlink != 2) {
            snprintf(err, errsize, "%s: replaced right after mkdir; refused", path);
            rc = SAFEDIR_REFUSED;
        } else if (geteuid() == 0 && fchown(fd, uid, gid) < 0) {
            snprintf(err, errsize, "fchown(%s): %s", path, strerror(errno));
            rc = SAFEDIR_ERROR;
        }
    }
    if (fd >= 0)
        close(fd);
    return rc;
}
