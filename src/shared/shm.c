/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * shm.c - creating the shared segment: the header, the scoreboard, the
 * cache and the domain table laid out in one mapping (their mutexes are
 * pmutex.c's).
 * The segment is an anonymous shared mapping made by the master before it
 * forks, so only rateguard's own processes can reach it.
 */
#include "shm.h"
#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

bool shm_create(struct shm *shm, uint32_t workers, uint32_t cache_entries, uint32_t extra_size, uint32_t watch_size,
                uint32_t domains)
{
    size_t off_scoreboard = align64(sizeof(struct shm_header));
    size_t off_cache = align64(off_scoreboard + (size_t)workers * sizeof(struct worker_slot));
    size_t off_domains = align64(off_cache + cache_region_size(cache_entries, extra_size));
    size_t total = align64(off_domains + domains_region_size(domains));

    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        log_error("mmap(%zu bytes of shared memory): %s", total, strerror(errno));
        return false;
    }
    memset(shm, 0, sizeof(*shm));
    shm->hdr = p;
    shm->size = total;
    struct shm_header *h = shm->hdr;
    h->magic = SHM_MAGIC;
    h->version = SHM_VERSION;
    h->total_size = total;
    h->off_scoreboard = off_scoreboard;
    h->off_cache = off_cache;

    h->scoreboard.slots = workers;
    shm->scoreboard.sh = &h->scoreboard;
    shm->scoreboard.slot = (struct worker_slot *)((char *)p + off_scoreboard);
    cache_layout(&shm->cache, &h->cache, (char *)p + off_cache, cache_entries, extra_size, true);
    h->cache.watch_size = watch_size;
    h->off_domains = off_domains;
    domains_layout(&shm->domains, &h->domains, (char *)p + off_domains, domains, true);
    return true;
}

void shm_destroy(struct shm *shm)
{
    if (shm->hdr)
        munmap(shm->hdr, shm->size);
    shm->hdr = NULL;
}
