/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * privileges.h - resolving the configured user and group and dropping root
 * for good (setgroups, setgid, setuid, then proving root cannot come back).
 */
#ifndef RG_PRIVILEGES_H
#define RG_PRIVILEGES_H

#include <stdbool.h>
#include <sys/types.h>

/* Look up user and group; false (and a logged error) when either is missing. */
bool privileges_resolve(const char *user, const char *group, uid_t *uid, gid_t *gid);

/* When running as root, become uid:gid irrevocably; otherwise keep the
 * current identity (logged). Exits with RG_EXIT_RUNTIME if the drop fails. */
void privileges_drop(uid_t uid, gid_t gid);

/* Make this process non-dumpable: no core file, and /proc/PID/mem, environ
 * and fd become root's, so another process of the same user cannot read
 * the configuration's secrets out of it. Called first thing by every
 * command; the drop repeats it (a credential change resets the flag to
 * fs.suid_dumpable, which an administrator may have set to 1). */
void privileges_no_dump(void);

#endif
