/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * blockjournal.c - the block journal beside the counter snapshot
 * (blockjournal.h says why and how its lifecycle keeps every change):
 * records made under a sender's lock, appended by workers with one
 * O_APPEND write each (atomic on a local filesystem: no record
 * interleaves with another's), rotated around each snapshot, made durable
 * by the writer, applied at a start with the database down.
 */
#include "blockjournal.h"
#include "cache.h"
#include "shm.h"
#include "util.h"
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCKJOURNAL_MAGIC 0x524a4252u      /* "RBJR" */

_Static_assert(sizeof(struct blockjournal_record) % 8 == 0, "journal records stay 8-byte aligned");

/* FNV-1a over the record with check zeroed: finds a torn or damaged
 * record (the daemon's own user writes the file: not a forgery check). */
static uint32_t checksum(const struct blockjournal_record *rec)
{
    struct blockjournal_record r = *rec;
    const unsigned char *p = (const unsigned char *)&r;
    uint32_t h = 2166136261u;
    r.check = 0;
    for (size_t i = 0; i < sizeof(r); i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

void blockjournal_record_of(struct blockjournal_record *rec, const struct cache_entry *e,
                            const struct login_watch *w, int64_t now_us)
{
    memset(rec, 0, sizeof(*rec));
    rec->magic = BLOCKJOURNAL_MAGIC;
    rec->made_us = now_us;
    rec->reset_us = e->reset_us;
    rec->quota = e->quota;
    rec->quota_reset = e->quota_reset;
    rec->msg_counter = e->msg_counter;
    rec->rcpt_counter = e->rcpt_counter;
    rec->msg_total = e->msg_total;
    rec->rcpt_total = e->rcpt_total;
    rec->msg_quota = e->msg_quota;
    rec->rcpt_quota = e->rcpt_quota;
    rec->locked = e->locked;
    rec->notified = (uint8_t)((e->block_notified ? NOTIFIED_BLOCK : 0) | (e->warning_notified ? NOTIFIED_WARNING : 0));
    rec->quota_own = e->quota_own;
    rec->block_action = e->block_action;
    if (w != NULL) {
        rec->episode = w->episode;
        rec->episode_since = w->episode_since;
        rec->episode_last = w->episode_last;
        rec->watch_locked = w->locked;
    }
    memcpy(rec->key, e->key, CACHE_KEY_SIZE);
}

bool blockjournal_append(struct blockjournal *j, struct shm *shm, struct blockjournal_record *rec)
{
    /* Read after the change to the cache (see blockjournal.h). */
    uint32_t gen = __atomic_load_n(&shm->hdr->journal_gen, __ATOMIC_ACQUIRE);
    if (j->fd < 0 || gen != j->gen) {
        if (j->fd >= 0)
            close(j->fd);
        j->fd = open(j->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        j->gen = gen;
        if (j->fd < 0)
            return false;
    }
    rec->check = checksum(rec);
    ssize_t n = write(j->fd, rec, sizeof(*rec));
    if (n == (ssize_t)sizeof(*rec))
        return true;
    if (n >= 0)
        errno = ENOSPC;     /* a short write: the disk is full (the torn record is skipped at load) */
    return false;
}

/* The journal's rotated files, "<path>.<unix microseconds of the
 * rotation>", with their times, ascending. Returns how many (at most max). */
static size_t rotated_files(const char *path, int64_t times[], size_t max)
{
    char folder[4200];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t base_len = strlen(base), n = 0;

    snprintf(folder, sizeof(folder), "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    DIR *d = opendir(folder);
    if (d == NULL)
        return 0;
    for (struct dirent *de; (de = readdir(d)) != NULL && n < max;) {
        char *end;
        if (strncmp(de->d_name, base, base_len) != 0 || de->d_name[base_len] != '.' ||
            de->d_name[base_len + 1] < '0' || de->d_name[base_len + 1] > '9')
            continue;
        long long t = strtoll(de->d_name + base_len + 1, &end, 10);
        if (*end == '\0' && t > 0)
            times[n++] = t;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++)         /* a handful: insertion sort */
        for (size_t k = i; k > 0 && times[k - 1] > times[k]; k--) {
            int64_t x = times[k];
            times[k] = times[k - 1];
            times[k - 1] = x;
        }
    return n;
}

static void rotated_path(const char *path, int64_t t, char *buf, size_t size)
{
    snprintf(buf, size, "%s.%lld", path, (long long)t);
}

int64_t blockjournal_rotate(struct shm *shm, const char *path)
{
    char to[4300];
    int64_t t = clock_realtime_us();
    rotated_path(path, t, to, sizeof(to));
    if (rename(path, to) != 0 && errno != ENOENT)
        t = 0;              /* kept as it is: still applied at a start, never retired */
    __atomic_add_fetch(&shm->hdr->journal_gen, 1, __ATOMIC_ACQ_REL);
    return t;
}

void blockjournal_retire(const char *path, int64_t rotated)
{
    int64_t times[BLOCKJOURNAL_FILES_MAX];
    char name[4300];
    size_t n = rotated_files(path, times, BLOCKJOURNAL_FILES_MAX);
    for (size_t i = 0; i < n && times[i] < rotated; i++) {
        rotated_path(path, times[i], name, sizeof(name));
        unlink(name);
    }
}

void blockjournal_sync(const char *path)
{
    static off_t synced = -1;
    static time_t last;
    struct stat st;
    time_t now = time(NULL);

    if (now == last)
        return;
    last = now;
    if (stat(path, &st) != 0 || st.st_size == synced)
        return;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (fdatasync(fd) == 0)
        synced = st.st_size;
    close(fd);
}

/* ---- at a start with the database down ---- */

struct applying {
    struct cache *cache;
    const struct blockjournal_record *r;
    bool episode_opened;
};

static uint32_t larger(uint32_t a, uint32_t b)
{
    return a > b ? a : b;
}

/* The episode as the journal has it, when the cache has none: the writer
 * claims it when the database is back (a claim it already holds there
 * is taken silently, as another host's). */
static void apply_watch(struct applying *a, const struct cache_entry *e)
{
    const struct blockjournal_record *r = a->r;
    struct login_watch *w = watch_of(a->cache, e);
    if (w == NULL)
        return;
    if (r->watch_locked)
        w->locked = 1;
    if (r->episode && !w->episode) {
        w->episode = r->episode;
        w->unclaimed = r->episode;
        w->claimed = 0;
        w->episode_since = r->episode_since;
        w->episode_last = r->episode_last;
        a->episode_opened = true;
    }
}

static void apply_locked(struct cache_entry *e, bool created, void *arg)
{
    struct applying *a = arg;
    const struct blockjournal_record *r = a->r;

    if (!created && r->reset_us < e->reset_us)
        return;                 /* a period the cache has left */
    if (created || r->reset_us > e->reset_us) {
        e->reset_us = r->reset_us;
        e->quota = r->quota;
        e->quota_reset = r->quota_reset;
        e->msg_quota = r->msg_quota;
        e->rcpt_quota = r->rcpt_quota;
        e->quota_own = r->quota_own;
        e->block_action = r->block_action;
        e->msg_counter = r->msg_counter;
        e->rcpt_counter = r->rcpt_counter;
    } else {
        e->msg_counter = larger(e->msg_counter, r->msg_counter);
        e->rcpt_counter = larger(e->rcpt_counter, r->rcpt_counter);
    }
    e->msg_total = larger(e->msg_total, r->msg_total);
    e->rcpt_total = larger(e->rcpt_total, r->rcpt_total);
    if (r->locked) {
        e->locked = 1;
        e->quota = r->quota;
    }
    e->block_notified |= (r->notified & NOTIFIED_BLOCK) != 0;
    e->warning_notified |= (r->notified & NOTIFIED_WARNING) != 0;
    apply_watch(a, e);
}

static bool record_sound(const struct blockjournal_record *r)
{
    return r->magic == BLOCKJOURNAL_MAGIC && r->check == checksum(r) && memchr(r->key, '\0', CACHE_KEY_SIZE) &&
           r->key[0] != '\0' && r->key[0] != '@' && r->block_action < BLOCK_ACTIONS;
}

static uint32_t apply_file(struct shm *shm, const char *path, int64_t since_us, uint32_t *skipped)
{
    struct blockjournal_record r;
    struct applying a = {.cache = &shm->cache, .r = &r};
    uint32_t applied = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return 0;
    while ((n = read(fd, &r, sizeof(r))) == (ssize_t)sizeof(r)) {
        if (!record_sound(&r)) {
            (*skipped)++;
            continue;
        }
        if (r.made_us < since_us)
            continue;
        if (cache_apply(&shm->cache, r.key, true, apply_locked, &a) == CACHE_OK)
            applied++;
    }
    if (n > 0)
        (*skipped)++;           /* a record cut short: the last write when the disk filled or a crash */
    close(fd);
    if (a.episode_opened)
        __atomic_add_fetch(&shm->hdr->watch_pending, 1, __ATOMIC_RELEASE);
    return applied;
}

uint32_t blockjournal_apply(struct shm *shm, const char *path, int64_t since_us, uint32_t *skipped)
{
    int64_t times[BLOCKJOURNAL_FILES_MAX];
    char name[4300];
    size_t n = rotated_files(path, times, BLOCKJOURNAL_FILES_MAX);
    uint32_t applied = 0;

    *skipped = 0;
    for (size_t i = 0; i < n; i++) {
        rotated_path(path, times[i], name, sizeof(name));
        applied += apply_file(shm, name, since_us, skipped);
    }
    return applied + apply_file(shm, path, since_us, skipped);
}
