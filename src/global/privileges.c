/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * privileges.c - the one place that changes the process identity. The
 * drop is verified the way OpenSSH does it: after setuid, setuid(0) must
 * fail, or the daemon refuses to run. It also keeps every process
 * non-dumpable, whoever started it.
 */
#include "privileges.h"
#include "log.h"
#include "rateguard.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

bool privileges_resolve(const char *user, const char *group, uid_t *uid, gid_t *gid)
{
    struct passwd *pw = getpwnam(user);
    struct group *gr = getgrnam(group);

    if (pw == NULL) {
        log_error("user '%s' does not exist", user);
        return false;
    }
    if (gr == NULL) {
        log_error("group '%s' does not exist", group);
        return false;
    }
    *uid = pw->pw_uid;
    *gid = gr->gr_gid;
    return true;
}

void privileges_no_dump(void)
{
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        log_fatal(RG_EXIT_RUNTIME, "prctl(PR_SET_DUMPABLE, 0): %s", strerror(errno));
}

void privileges_drop(uid_t uid, gid_t gid)
{
    privileges_no_dump();
    if (geteuid() != 0) {
        if (geteuid() != uid)
            log_notice("not started as root: running as uid %d instead of %d", (int)geteuid(), (int)uid);
        return;
    }
    if (setgroups(1, &gid) < 0)
        log_fatal(RG_EXIT_RUNTIME, "setgroups(%d): %s", (int)gid, strerror(errno));
    if (setgid(gid) < 0)
        log_fatal(RG_EXIT_RUNTIME, "setgid(%d): %s", (int)gid, strerror(errno));
    if (setuid(uid) < 0)
        log_fatal(RG_EXIT_RUNTIME, "setuid(%d): %s", (int)uid, strerror(errno));
    if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
        log_fatal(RG_EXIT_RUNTIME, "privilege drop to uid %d failed: root could be regained", (int)uid);
    privileges_no_dump();
}
