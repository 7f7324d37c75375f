/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * admission.c - the checks an accepted connection passes before a worker
 * serves it: allowed_clients, allowed_users for a peer on this host (its
 * owner from peeruid.c), workers.max_per_client. Refusals are counted in
 * the shared statistics and logged through connlog.c (once a kind a
 * minute).
 *
 * allowed_users exists because allowed_clients cannot tell Postfix from
 * any other local user: both are 127.0.0.1, and a local user's idle
 * connections could hold every worker.
 *
 * Connections per client are counted from the scoreboard: each worker
 * records the address it serves in its own slot, so the count needs no
 * lock and a killed worker's entry goes when the master clears its slot.
 * Two workers accepting from one address at the same instant may both see
 * the other's slot still empty: the limit can be passed by at most the
 * number of workers accepting at that moment, never by a stalled flood.
 */
#include "admission.h"
#include "config.h"
#include "connlog.h"
#include "log.h"
#include "netaddr.h"
#include "peeruid.h"
#include "shm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool client_id_of(const struct sockaddr_storage *ss, struct client_id *id)
{
    memset(id, 0, sizeof(*id));
    if (ss->ss_family == AF_INET) {
        id->family = AF_INET;
        memcpy(id->addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        return true;
    }
    if (ss->ss_family == AF_INET6) {
        id->family = AF_INET6;
        memcpy(id->addr, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
        return true;
    }
    return false;   /* unix socket: file permissions decide, no address */
}

static bool in_allowed_clients(const struct rg_config *cfg, const struct sockaddr_storage *ss)
{
    return cfg->allowed_clients.count == 0 ||
           cidr_list_match(cfg->allowed_nets, cfg->allowed_clients.count, (const struct sockaddr *)ss);
}

static unsigned connections_from(struct shm *shm, const struct client_id *id)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < shm->scoreboard.sh->slots; i++) {
        const struct client_id *c = &shm->scoreboard.slot[i].client;
        if (__atomic_load_n(&c->family, __ATOMIC_ACQUIRE) == id->family &&
            memcmp(c->addr, id->addr, sizeof(id->addr)) == 0)
            n++;
    }
    return n;
}

/* The daemon's own user is always allowed: it owns the shared memory and
 * could do anything a request can. */
static bool user_allowed(const struct rg_config *cfg, uid_t uid)
{
    if (uid == geteuid())
        return true;
    for (size_t i = 0; i < cfg->allowed_uids_count; i++)
        if (cfg->allowed_uids[i] == uid)
            return true;
    return false;
}

/* A peer on this host must belong to allowed_users; a remote one is left
 * to allowed_clients. Only the first refusal of each kind a minute is
 * logged (connlog.c): a local user's flood must not flood the log. */
static bool local_user_admitted(struct shm *shm, const struct rg_config *cfg, int fd,
                                const struct sockaddr_storage *ss, const char *peer)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    char err[256];
    uid_t uid = 0;
    enum peeruid_result r;

    if (cfg->allowed_users_any)
        return true;
    if (getsockname(fd, (struct sockaddr *)&local, &len) < 0) {
        snprintf(err, sizeof(err), "getsockname: %s", strerror(errno));
        r = PEERUID_FAILED;
    } else
        r = peeruid_lookup(ss, &local, &uid, err, sizeof(err));

    switch (r) {
    case PEERUID_REMOTE:
        return true;
    case PEERUID_FOUND:
        if (user_allowed(cfg, uid))
            return true;
        STAT_ADD(shm, refused_user, 1);
        if (connlog_take(shm, CONNLOG_USER_NOT_ALLOWED, NULL)) {
            struct passwd *pw = getpwuid(uid);
            log_warning("client %s: local user %s (uid %ld) is not in allowed_users, connection refused "
                        "(logged once a minute; status counts them all)",
                        peer, pw ? pw->pw_name : "?", (long)uid);
        }
        return false;
    case PEERUID_CLOSED:
        /* Nobody is left to read a reply, and its owner is unknown: a
         * request in it must not be served (a probe that connects and
         * closes at once ends here too, so this is not counted). */
        log_debug("client %s: closed its end before it was served, closing", peer);
        return false;
    case PEERUID_FAILED:
    default:
        /* 127.0.0.0/8 or ::1: the peer must be on this host even though
         * its owner could not be looked up. */
        if (!netaddr_is_loopback((const struct sockaddr *)ss))
            return true;
        STAT_ADD(shm, refused_user, 1);
        if (connlog_take(shm, CONNLOG_PEER_LOOKUP, NULL))
            log_error("client %s: cannot tell which local user connected (%s), connection refused: "
                      "set allowed_users = { \"*\" } or have Postfix use a unix socket listener", peer, err);
        return false;
    }
}

bool admission_admit(struct shm *shm, uint32_t slot, const struct rg_config *cfg, int fd,
                     const struct sockaddr_storage *ss, const char *peer)
{
    struct client_id id;
    if (!client_id_of(ss, &id))
        return true;
    if (!in_allowed_clients(cfg, ss)) {
        STAT_ADD(shm, refused, 1);
        if (connlog_take(shm, CONNLOG_NOT_ALLOWED_CLIENT, NULL))
            log_warning("client %s: not in allowed_clients, connection refused "
                        "(logged once a minute; status counts them all)", peer);
        return false;
    }
    if (!local_user_admitted(shm, cfg, fd, ss, peer))
        return false;
    if (cfg->workers.max_per_client > 0 && connections_from(shm, &id) >= (unsigned)cfg->workers.max_per_client) {
        STAT_ADD(shm, over_client_limit, 1);
        if (connlog_take(shm, CONNLOG_OVER_CLIENT_LIMIT, NULL))
            log_warning("client %s: already %ld connections from this address (workers.max_per_client), "
                        "connection refused (logged once a minute; status counts them all)",
                        peer, cfg->workers.max_per_client);
        return false;
    }
    struct client_id *mine = &shm->scoreboard.slot[slot].client;
    memcpy(mine->addr, id.addr, sizeof(id.addr));
    __atomic_store_n(&mine->family, id.family, __ATOMIC_RELEASE);
    return true;
}

void admission_release(struct shm *shm, uint32_t slot)
{
    struct client_id *mine = &shm->scoreboard.slot[slot].client;
    __atomic_store_n(&mine->family, 0, __ATOMIC_RELEASE);
    memset(mine->addr, 0, sizeof(mine->addr));
}
