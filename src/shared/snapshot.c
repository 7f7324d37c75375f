/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * snapshot.c - the counter snapshot file (see snapshot.h). The cache is
 * copied entry by entry under each stripe lock into private memory, then
 * written with no lock held; loading checks the whole file before it
 * puts a single sender into the cache.
 *
 * Layout (host byte order: the file never leaves the host that wrote it):
 * struct snapshot_header, then `count` struct snapshot_record. The header's
 * sha256 is that of the whole file with the sha256 field zeroed.
 *
 * The file is written by the daemon's user, and a checksum is not a key:
 * that user can forge one. So every value is range-checked before the
 * first sender goes into the cache, and the header's count is held to
 * cache.entries and to the file's size before anything is allocated
 * (issue 25).
 */
#include "snapshot.h"
#include "blockjournal.h"
#include "cache.h"
#include "shm.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SNAPSHOT_OWNER_SIZE 256
/* A snapshot written later than now by more than a clock step NTP would
 * make is not this clock's; one older than a year holds no period's
 * counts any more (monthly is the longest schedule). */
#define SNAPSHOT_SKEW_US (600 * INT64_C(1000000))
#define SNAPSHOT_MAX_AGE_US (366 * 86400 * INT64_C(1000000))

struct snapshot_header {
    uint32_t magic, version;
    uint32_t record_size, reserved;
    uint64_t count;
    int64_t created_us;                 /* unix microseconds */
    char owner[SNAPSHOT_OWNER_SIZE];    /* "host/instance", NUL-terminated */
    unsigned char sha256[32];
};

/* One sender. Counters are the committed ones (what the database has):
 * the records still queued are counted on top at start. */
struct snapshot_record {
    uint64_t db_id;
    int64_t reset_us;
    uint32_t quota, quota_reset, msg_counter, rcpt_counter, msg_total, rcpt_total, msg_quota, rcpt_quota;
    uint8_t locked, notified, quota_own, block_action;
    char key[CACHE_KEY_SIZE];
    uint8_t pad[6];
};

_Static_assert(sizeof(struct snapshot_record) % 8 == 0, "snapshot records stay 8-byte aligned");

struct collect {
    struct snapshot_record *rows;
    size_t count, size;
};

static uint32_t committed(uint32_t counted, uint32_t unwritten)
{
    return counted > unwritten ? counted - unwritten : 0;
}

/* Under the entry's lock: copy it (domain pools are re-derived from the
 * database, not kept). */
static void collect_locked(struct cache_entry *e, bool created, void *arg)
{
    struct collect *c = arg;
    (void)created;
    if (e->key[0] == '@')
        return;
    if (c->count == c->size) {
        c->size = c->size ? c->size * 2 : 1024;
        c->rows = xrealloc(c->rows, c->size * sizeof(*c->rows));
    }
    struct snapshot_record *r = &c->rows[c->count++];
    memset(r, 0, sizeof(*r));
    r->db_id = e->db_id;
    r->reset_us = e->reset_us;
    r->quota = e->quota;
    r->quota_reset = e->quota_reset;
    r->msg_counter = committed(e->msg_counter, e->unwritten_msg);
    r->rcpt_counter = committed(e->rcpt_counter, e->unwritten_rcpt);
    r->msg_total = committed(e->msg_total, e->unwritten_msg);
    r->rcpt_total = committed(e->rcpt_total, e->unwritten_rcpt);
    r->msg_quota = e->msg_quota;
    r->rcpt_quota = e->rcpt_quota;
    r->locked = e->locked;
    r->notified = (uint8_t)((e->block_notified ? NOTIFIED_BLOCK : 0) | (e->warning_notified ? NOTIFIED_WARNING : 0));
    r->quota_own = e->quota_own;
    r->block_action = e->block_action;
    str_copy(r->key, e->key, sizeof(r->key));
}

static void digest(const struct snapshot_header *h, const void *records, size_t size, unsigned char out[32])
{
    struct snapshot_header zeroed = *h;
    memset(zeroed.sha256, 0, sizeof(zeroed.sha256));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        abort();
    unsigned int len = 0;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, &zeroed, sizeof(zeroed));
    EVP_DigestUpdate(ctx, records, size);
    EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
}

static bool write_all(int fd, const void *buf, size_t size)
{
    const char *p = buf;
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        size -= (size_t)n;
    }
    return true;
}

/* Make the rename durable. */
static void sync_folder(const char *path)
{
    char copy[4200];
    str_copy(copy, path, sizeof(copy));
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

struct snapshot_taken {
    struct collect c;
    int64_t rotated;            /* the journal's generation rotated before the copy */
    int64_t created_us;
    char owner[SNAPSHOT_OWNER_SIZE];
};

struct snapshot_taken *snapshot_take(struct shm *shm, const char *journal, const char *owner)
{
    struct snapshot_taken *t = xcalloc(1, sizeof(*t));
    t->rotated = journal ? blockjournal_rotate(shm, journal) : 0;     /* before the copy */
    str_copy(t->owner, owner, sizeof(t->owner));
    return t;
}

bool snapshot_store(struct snapshot_taken *t, struct shm *shm, const char *path, const char *journal, char *err,
                    size_t errsize)
{
    struct collect *c = &t->c;
    /* The copy, after the rotation (any block change not in the rotated
     * journal files is in the current one, which this snapshot retires not). */
    cache_foreach(&shm->cache, collect_locked, c);
    t->created_us = clock_realtime_us();
    struct snapshot_header h;
    memset(&h, 0, sizeof(h));
    h.magic = SNAPSHOT_MAGIC;
    h.version = SNAPSHOT_VERSION;
    h.record_size = sizeof(struct snapshot_record);
    h.count = c->count;
    h.created_us = t->created_us;
    str_copy(h.owner, t->owner, sizeof(h.owner));
    size_t body = c->count * sizeof(struct snapshot_record);
    digest(&h, c->rows, body, h.sha256);

    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
    bool ok = fd >= 0;
    const char *failed = "open";
    if (ok && !(ok = write_all(fd, &h, sizeof(h)) && (body == 0 || write_all(fd, c->rows, body))))
        failed = "write";
    if (ok && !(ok = fsync(fd) == 0))
        failed = "fsync";
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && ok) {
        ok = false;
        failed = "close";
        saved = errno;
    }
    if (ok && !(ok = rename(tmp, path) == 0)) {
        failed = "rename";
        saved = errno;
    }
    if (!ok) {
        snprintf(err, errsize, "%s(%s): %s", failed, tmp, saved ? strerror(saved) : "short write");
        unlink(tmp);
    } else {
        sync_folder(path);
        if (journal)
            blockjournal_retire(journal, t->rotated);
        __atomic_store_n(&shm->hdr->snapshot_senders, (uint32_t)c->count, __ATOMIC_RELAXED);
        __atomic_store_n(&shm->hdr->snapshot_written_us, h.created_us, __ATOMIC_RELEASE);
    }
    free(c->rows);
    free(t);
    return ok;
}

bool snapshot_write(struct shm *shm, const char *path, const char *journal, const char *owner, char *err,
                    size_t errsize)
{
    return snapshot_store(snapshot_take(shm, journal, owner), shm, path, journal, err, errsize);
}

static void load_locked(struct cache_entry *e, bool created, void *arg)
{
    const struct snapshot_record *r = arg;
    (void)created;
    e->db_id = r->db_id;
    e->reset_us = r->reset_us;
    e->quota = r->quota;
    e->quota_reset = r->quota_reset;
    e->msg_counter = r->msg_counter;
    e->rcpt_counter = r->rcpt_counter;
    e->msg_total = r->msg_total;
    e->rcpt_total = r->rcpt_total;
    e->msg_quota = r->msg_quota;
    e->rcpt_quota = r->rcpt_quota;
    e->locked = r->locked;
    e->block_notified = (r->notified & NOTIFIED_BLOCK) != 0;
    e->warning_notified = (r->notified & NOTIFIED_WARNING) != 0;
    e->quota_own = r->quota_own;
    e->block_action = r->block_action;      /* each value checked by check_record() */
    e->referenced = 0;
}

/* The header on its own, before the records are read: the count is held
 * to cache.entries and to the file's size, so nothing is allocated for a
 * count the file does not hold. */
static bool check_header(const struct snapshot_header *h, uint64_t size, uint32_t capacity, char *err,
                         size_t errsize)
{
    if (h->magic != SNAPSHOT_MAGIC) {
        snprintf(err, errsize, "not a rateguard snapshot (magic %08x)", h->magic);
        return false;
    }
    if (h->version != SNAPSHOT_VERSION || h->record_size != sizeof(struct snapshot_record)) {
        snprintf(err, errsize, "version %u with %u-byte records; this rateguard reads version %d (%zu bytes)",
                 h->version, h->record_size, SNAPSHOT_VERSION, sizeof(struct snapshot_record));
        return false;
    }
    if (h->count > capacity) {
        snprintf(err, errsize, "%" PRIu64 " senders, more than cache.entries (%" PRIu32 ")", h->count, capacity);
        return false;
    }
    if (size != sizeof(*h) + h->count * sizeof(struct snapshot_record)) {
        snprintf(err, errsize, "size %" PRIu64 " bytes does not match its header (%" PRIu64 " senders): "
                 "truncated or damaged", size, h->count);
        return false;
    }
    return true;
}

/* One record's values: each within what the cache could have held. */
static bool check_record(const struct snapshot_record *r, uint64_t i, int64_t created_us, char *err,
                         size_t errsize)
{
    char key[CACHE_KEY_SIZE];
    const char *why = NULL;
    if (memchr(r->key, '\0', sizeof(r->key)) == NULL)
        why = "key not NUL-terminated";
    else if (r->key[0] == '\0' || r->key[0] == '@')
        why = "empty key, or a domain pool's";
    else if ((cache_make_key(r->key, key), strcmp(key, r->key) != 0))
        why = "key not as the cache makes them (lower case)";
    else if (r->reset_us < 0 || r->reset_us > created_us + SNAPSHOT_SKEW_US)
        why = "last reset after the snapshot was written, or before 1970";
    else if (r->msg_counter > r->msg_total || r->rcpt_counter > r->rcpt_total)
        why = "counter above its total (totals are never reset)";
    else if (r->locked > 1)
        why = "locked neither 0 nor 1";
    else if (r->notified & ~(NOTIFIED_BLOCK | NOTIFIED_WARNING))
        why = "unknown notified bits";
    else if (r->quota_own & ~(QUOTA_OWN_MSG | QUOTA_OWN_RCPT))
        why = "unknown quota_own bits";
    else if ((!(r->quota_own & QUOTA_OWN_MSG) && r->msg_quota != 0) ||
             (!(r->quota_own & QUOTA_OWN_RCPT) && r->rcpt_quota != 0))
        why = "an own limit without its quota_own bit";
    else if (r->block_action >= BLOCK_ACTIONS)
        why = "block_action out of range";
    else if (memcmp(r->pad, (const uint8_t[sizeof(r->pad)]){0}, sizeof(r->pad)) != 0)
        why = "padding not zero";
    if (why == NULL)
        return true;
    snprintf(err, errsize, "sender %" PRIu64 ": %s", i + 1, why);
    return false;
}

/* Every check of the whole file, before anything is loaded. */
static bool check(const char *buf, size_t size, const char *owner, int64_t now_us, char *err, size_t errsize)
{
    struct snapshot_header h;
    memcpy(&h, buf, sizeof(h));
    unsigned char sum[32];
    digest(&h, buf + sizeof(h), size - sizeof(h), sum);
    if (memcmp(sum, h.sha256, sizeof(sum)) != 0) {
        snprintf(err, errsize, "checksum mismatch: damaged");
        return false;
    }
    if (memchr(h.owner, '\0', sizeof(h.owner)) == NULL || strcmp(h.owner, owner) != 0) {
        char who[80];
        log_safe_copy(who, sizeof(who), memchr(h.owner, '\0', sizeof(h.owner)) ? h.owner : "?", 60);
        snprintf(err, errsize, "written by instance %s, not by this one", who);
        return false;
    }
    /* Compared, never subtracted: a forged INT64_MIN must not overflow. */
    if (h.created_us > now_us + SNAPSHOT_SKEW_US || h.created_us < now_us - SNAPSHOT_MAX_AGE_US) {
        snprintf(err, errsize, "created at %" PRId64 " us since 1970, not between 366 days ago and 600 s ahead",
                 h.created_us);
        return false;
    }
    for (uint64_t i = 0; i < h.count; i++) {
        struct snapshot_record r;
        memcpy(&r, buf + sizeof(h) + i * sizeof(r), sizeof(r));
        if (!check_record(&r, i, h.created_us, err, errsize))
            return false;
    }
    return true;
}

static bool read_all(int fd, void *buf, size_t size)
{
    char *p = buf;
    while (size > 0) {
        ssize_t n = read(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        size -= (size_t)n;
    }
    return true;
}

enum snapshot_load_result snapshot_load(struct shm *shm, const char *path, const char *owner, int64_t *created_us,
                                        uint32_t *loaded, char *err, size_t errsize)
{
    *loaded = 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return SNAPSHOT_ABSENT;
        snprintf(err, errsize, "open: %s", strerror(errno));
        return SNAPSHOT_REFUSED;
    }
    struct stat st;
    struct snapshot_header h;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errsize, "not a regular file");
        close(fd);
        return SNAPSHOT_REFUSED;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < sizeof(h)) {
        snprintf(err, errsize, "truncated: %" PRIu64 " bytes, shorter than its %zu-byte header", size, sizeof(h));
        close(fd);
        return SNAPSHOT_REFUSED;
    }
    if (!read_all(fd, &h, sizeof(h))) {
        snprintf(err, errsize, "read: the header could not be read");
        close(fd);
        return SNAPSHOT_REFUSED;
    }
    if (!check_header(&h, size, shm->cache.sh->capacity, err, errsize)) {
        close(fd);
        return SNAPSHOT_REFUSED;
    }
    /* size is now at most a header and cache.entries records. */
    char *buf = xmalloc((size_t)size);
    memcpy(buf, &h, sizeof(h));
    bool whole = read_all(fd, buf + sizeof(h), (size_t)size - sizeof(h));
    close(fd);
    if (!whole) {
        snprintf(err, errsize, "read: the file shrank while it was read");
        free(buf);
        return SNAPSHOT_REFUSED;
    }
    if (!check(buf, (size_t)size, owner, clock_realtime_us(), err, errsize)) {
        free(buf);
        return SNAPSHOT_REFUSED;
    }
    for (uint64_t i = 0; i < h.count; i++) {
        struct snapshot_record r;
        memcpy(&r, buf + sizeof(h) + i * sizeof(r), sizeof(r));
        if (cache_apply(&shm->cache, r.key, true, load_locked, &r) != CACHE_OK)
            break;      /* cannot happen (count <= cache.entries, an empty cache); not worth a refusal */
        (*loaded)++;
    }
    free(buf);
    *created_us = h.created_us;
    __atomic_store_n(&shm->hdr->snapshot_loaded_us, h.created_us, __ATOMIC_RELAXED);
    __atomic_store_n(&shm->hdr->cache_from_snapshot, 1, __ATOMIC_RELEASE);
    return SNAPSHOT_LOADED;
}

static long age_s(int64_t at_us)
{
    int64_t d = clock_realtime_us() - at_us;
    return d > 0 ? (long)(d / 1000000) : 0;
}

void snapshot_status_text(FILE *f, struct shm *shm)
{
    int64_t written = __atomic_load_n(&shm->hdr->snapshot_written_us, __ATOMIC_ACQUIRE);
    int64_t loaded = __atomic_load_n(&shm->hdr->snapshot_loaded_us, __ATOMIC_RELAXED);
    if (written)
        fprintf(f, "snapshot: written %ld s ago, %u sender(s)", age_s(written),
                __atomic_load_n(&shm->hdr->snapshot_senders, __ATOMIC_RELAXED));
    else
        fputs("snapshot: none written yet", f);
    if (__atomic_load_n(&shm->hdr->cache_from_snapshot, __ATOMIC_ACQUIRE))
        fprintf(f, "; cache from a snapshot %ld s old (the database is not read yet)\n", age_s(loaded));
    else if (loaded)
        fputs("; cache from the database (started from a snapshot)\n", f);
    else
        fputs("; cache from the database\n", f);
}

void snapshot_status_json(FILE *f, struct shm *shm)
{
    int64_t written = __atomic_load_n(&shm->hdr->snapshot_written_us, __ATOMIC_ACQUIRE);
    int64_t loaded = __atomic_load_n(&shm->hdr->snapshot_loaded_us, __ATOMIC_RELAXED);
    fputs(",\"snapshot\":{\"age\":", f);
    if (written)
        fprintf(f, "%ld,\"senders\":%u", age_s(written), __atomic_load_n(&shm->hdr->snapshot_senders, __ATOMIC_RELAXED));
    else
        fputs("null,\"senders\":0", f);
    fprintf(f, ",\"cache_from_snapshot\":%s,\"loaded_age\":",
            __atomic_load_n(&shm->hdr->cache_from_snapshot, __ATOMIC_ACQUIRE) ? "true" : "false");
    if (loaded)
        fprintf(f, "%ld}", age_s(loaded));
    else
        fputs("null}", f);
}

void snapshot_status_prometheus(FILE *f, struct shm *shm)
{
    int64_t written = __atomic_load_n(&shm->hdr->snapshot_written_us, __ATOMIC_ACQUIRE);
    fprintf(f, "# HELP rateguard_snapshot_age_seconds Age of the last counter snapshot written (-1: none yet).\n"
               "# TYPE rateguard_snapshot_age_seconds gauge\n"
               "rateguard_snapshot_age_seconds %ld\n"
               "# HELP rateguard_cache_from_snapshot 1 while the cache holds counts loaded from a snapshot that "
               "the database has not replaced yet.\n"
               "# TYPE rateguard_cache_from_snapshot gauge\n"
               "rateguard_cache_from_snapshot %d\n",
            written ? age_s(written) : -1L, __atomic_load_n(&shm->hdr->cache_from_snapshot, __ATOMIC_ACQUIRE) ? 1 : 0);
}
