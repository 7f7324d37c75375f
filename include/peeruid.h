/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * peeruid.h - who owns the other end of a TCP connection made on this
 * host: one exact NETLINK_SOCK_DIAG lookup of the peer's socket by its
 * four-tuple. Used by admission.c so that only the accounts allowed to
 * send policy requests (allowed_users) can hold a worker.
 *
 * One netlink socket per process, opened at the first lookup and kept.
 */
#ifndef RG_PEERUID_H
#define RG_PEERUID_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

enum peeruid_result {
    PEERUID_FOUND,      /* a socket of this host: *uid is its owner */
    PEERUID_CLOSED,     /* a socket of this host no process holds any more (closed, TIME_WAIT): owner unknown */
    PEERUID_REMOTE,     /* no such socket here: the peer is another host (or network namespace) */
    PEERUID_FAILED,     /* the lookup itself failed: err says why */
};

/* Look up the socket at `peer` connected to `local` (our end, from
 * getsockname). IPv4-mapped IPv6 addresses are looked up as IPv4. */
enum peeruid_result peeruid_lookup(const struct sockaddr_storage *peer, const struct sockaddr_storage *local,
                                   uid_t *uid, char *err, size_t errsize);

#endif
