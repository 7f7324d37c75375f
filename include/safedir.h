/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * safedir.h - the directories the master makes as root (run, state and
 * socket directories), walked from "/" one component at a time through
 * descriptors, so that a symbolic link the daemon's user plants in a
 * directory it can write cannot make root create or chown anything
 * elsewhere.
 */
#ifndef RG_SAFEDIR_H
#define RG_SAFEDIR_H

#include <stddef.h>
#include <sys/types.h>

enum safedir_result {
    SAFEDIR_OK,
    SAFEDIR_ERROR,      /* a call failed (err names it) */
    SAFEDIR_REFUSED,    /* something planted in the way (err says what) */
};

/* Make the absolute path a directory: missing parents with mode 0755,
 * owned by the caller; the last component, when it is made, with mode
 * (less the umask) and, when we are root, owned by uid:gid through its
 * descriptor. An existing directory is left as it is. A symbolic link is
 * followed only where it lies in a directory of root that no one else can
 * write; *created tells whether the last component was made. */
enum safedir_result safedir_make(const char *path, mode_t mode, uid_t uid, gid_t gid, int *created, char *err,
                                 size_t errsize);

#endif
