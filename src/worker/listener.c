/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * listener.c - binds the policy service sockets. Only numeric addresses
 * (parsed in netaddr.c); IPv6 sockets are IPv6-only so that "127.0.0.1"
 * and "[::]" can be listed side by side.
 */
#include "listener.h"
#include "config.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int open_inet(const struct listen_addr *la, const char *name)
{
    int one = 1;
    int fd = socket(la->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("socket(%s): %s", name, strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (la->sa.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&la->sa, la->salen) < 0) {
        log_error("bind(%s): %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int open_unix(const struct listen_addr *la, const struct rg_config *cfg, uid_t uid, gid_t gid)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct stat st;

    str_copy(sun.sun_path, la->path, sizeof(sun.sun_path));
    /* A socket file left by a previous run is replaced; anything else is not ours. */
    if (lstat(la->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            log_error("listen unix:%s: exists and is not a socket", la->path);
            return -1;
        }
        unlink(la->path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("socket(unix:%s): %s", la->path, strerror(errno));
        return -1;
    }
    /* The socket's mode comes from the umask at bind, and its owner is set
     * through a descriptor of the very file: the directory may belong to
     * the daemon's user, who could swap the name for a link meanwhile. */
    mode_t old_mask = umask(~(mode_t)cfg->socket_mode & 0777);
    int bound = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old_mask);
    if (bound < 0) {
        log_error("bind(unix:%s): %s", la->path, strerror(errno));
        close(fd);
        return -1;
    }
    if (geteuid() == 0 || gid != getegid()) {
        int node = open(la->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (node < 0 || fstat(node, &st) < 0 || !S_ISSOCK(st.st_mode) ||
            fchownat(node, "", geteuid() == 0 ? uid : (uid_t)-1, gid, AT_EMPTY_PATH) < 0)
            log_warning("chown(%s): %s", la->path, node < 0 || S_ISSOCK(st.st_mode) ? strerror(errno)
                                                                                : "no longer our socket");
        if (node >= 0)
            close(node);
    }
    return fd;
}

bool listeners_open(const struct rg_config *cfg, uid_t uid, gid_t gid, struct listeners *out)
{
    out->count = 0;
    out->fds = xcalloc(cfg->listen.count, sizeof(int));
    for (size_t i = 0; i < cfg->listen.count; i++) {
        const struct listen_addr *la = &cfg->listen_addrs[i];
        int fd = la->kind == LISTEN_UNIX ? open_unix(la, cfg, uid, gid)
                                         : open_inet(la, cfg->listen.items[i]);
        if (fd >= 0 && listen(fd, LISTEN_BACKLOG) < 0) {
            log_error("listen(%s): %s", cfg->listen.items[i], strerror(errno));
            close(fd);
            fd = -1;
        }
        if (fd < 0) {
            listeners_close(cfg, out, false);
            return false;
        }
        out->fds[out->count++] = fd;
        log_info("listening on %s", cfg->listen.items[i]);
    }
    return true;
}

void listeners_close(const struct rg_config *cfg, struct listeners *l, bool unlink_paths)
{
    for (size_t i = 0; i < l->count; i++)
        close(l->fds[i]);
    if (unlink_paths)
        for (size_t i = 0; i < cfg->listen.count; i++)
            if (cfg->listen_addrs[i].kind == LISTEN_UNIX)
                unlink(cfg->listen_addrs[i].path);
    free(l->fds);
    l->fds = NULL;
    l->count = 0;
}
