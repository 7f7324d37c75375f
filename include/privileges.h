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

#endif
