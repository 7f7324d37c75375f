/*
 * admission.c - the checks an accepted connection passes before a worker
 * serves it (allowed_clients, workers.max_per_client) and the shared,
 * rate-limited log of refusals.
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
#include "log.h"
#include "netaddr.h"
#include "shm.h"
#include "util.h"

#include <netinet/in.h>
#include <string.h>
#include <time.h>

#define REFUSAL_LOG_INTERVAL 60     /* seconds between log lines per address */

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

/* True for the first refusal of an address in REFUSAL_LOG_INTERVAL seconds,
 * across all workers: one compare-and-swap on a slot chosen by the address
 * (two addresses sharing a slot only log more often, never less). */
static bool refusal_to_log(struct shm *shm, const struct client_id *id)
{
    uint64_t hash = fnv1a64(id, sizeof(*id));
    uint64_t *slot = &shm->hdr->refusal_log[hash % REFUSAL_LOG_SLOTS];
    uint64_t tag = hash >> 32;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec & 0xffffffffu;

    uint64_t old = __atomic_load_n(slot, __ATOMIC_RELAXED);
    if (old >> 32 == tag && old != 0 && now - (old & 0xffffffffu) < REFUSAL_LOG_INTERVAL)
        return false;
    return __atomic_compare_exchange_n(slot, &old, tag << 32 | now, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

bool admission_admit(struct shm *shm, uint32_t slot, const struct rg_config *cfg,
                     const struct sockaddr_storage *ss, const char *peer)
{
    struct client_id id;
    if (!client_id_of(ss, &id))
        return true;
    if (!in_allowed_clients(cfg, ss)) {
        STAT_ADD(shm, refused, 1);
        if (refusal_to_log(shm, &id))
            log_warning("client %s: not in allowed_clients, connection refused "
                        "(logged once a minute per address; status counts them all)", peer);
        return false;
    }
    if (cfg->workers.max_per_client > 0 && connections_from(shm, &id) >= (unsigned)cfg->workers.max_per_client) {
        STAT_ADD(shm, over_client_limit, 1);
        if (refusal_to_log(shm, &id))
            log_warning("client %s: already %ld connections from this address (workers.max_per_client), "
                        "connection refused (logged once a minute per address)",
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
