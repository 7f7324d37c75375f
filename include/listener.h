/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * listener.h - opening the configured listening sockets (TCP over IPv4 and
 * IPv6, unix sockets with their mode and owner). Done by the master before
 * it drops privileges; the workers inherit the descriptors.
 */
#ifndef RG_LISTENER_H
#define RG_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct rg_config;

#define LISTEN_BACKLOG 4096   /* the kernel caps it at net.core.somaxconn */

struct listeners {
    int *fds;
    size_t count;
};

/* Bind and listen on every configured address; the sockets are
 * non-blocking. Unix sockets get cfg->socket_mode and owner uid:gid (uid
 * only when running as root; a non-root daemon can give its socket to a
 * group it belongs to). On failure logs the reason and returns false. */
bool listeners_open(const struct rg_config *cfg, uid_t uid, gid_t gid, struct listeners *out);

/* Close the sockets (and remove unix socket files when unlink_paths). */
void listeners_close(const struct rg_config *cfg, struct listeners *l, bool unlink_paths);

#endif
