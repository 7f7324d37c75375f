/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * fuzz_wqueue.c - libFuzzer target for the write-back records read from
 * disk (wqueue.c): the spool file, decoded record by record at start and
 * by the writer, and the queue file, checked by wqueue_open after a crash
 * or a reboot. Both may be cut short or damaged; what is accepted must be
 * exactly what was written, everything else refused.
 *
 * The first byte chooses:
 *   even: the rest is a spool file. Each record decoded must lie inside
 *         the buffer, and encoding it again must give the same bytes
 *         (numbers and strings), in the canonical form encode writes.
 *   odd:  a queue file: byte 1 sets the ring size (256 + 64 * n bytes),
 *         byte 2 how many records to release when the ring is full (so
 *         later pushes wrap around), byte 3 a number of patches (0-8) of
 *         6 bytes each (offset u32, value, 0 = set else xor) and the rest
 *         is a spool stream of records to push. The queue is filled and
 *         read back, closed, damaged by the patches and reopened: it must
 *         be refused with a reason, or every record it then yields must
 *         decode, and the count and bytes must add up.
 */
#include "wqueue.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_check.h"

#define CHECK(cond) FUZZ_CHECK(cond)

#define MAX_PUSH 64

static char dir[64], path[128];

static void cleanup(void)
{
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Queue files on tmpfs when there is one: thousands per second. */
    snprintf(dir, sizeof(dir), "%s/rg-fuzz-wqueue-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/fuzz.queue", dir);
    atexit(cleanup);
    return 0;
}

static bool same_record(const struct msg_record *a, const struct msg_record *b, bool numbering)
{
    if (numbering && (a->epoch != b->epoch || a->seq != b->seq))
        return false;
    return a->created_us == b->created_us && a->rcpt_count == b->rcpt_count && a->msg_delta == b->msg_delta &&
           a->rcpt_delta == b->rcpt_delta && a->quota_default == b->quota_default && a->quota == b->quota &&
           a->quota_reset == b->quota_reset && a->used == b->used && a->blocked == b->blocked &&
           a->notified_set == b->notified_set && a->notified_clear == b->notified_clear &&
           strcmp(a->sender, b->sender) == 0 && strcmp(a->msgid, b->msgid) == 0 &&
           strcmp(a->from_addr, b->from_addr) == 0 && strcmp(a->to_addr, b->to_addr) == 0 &&
           strcmp(a->client_address, b->client_address) == 0 && strcmp(a->client_name, b->client_name) == 0;
}

/* The six strings follow the fixed header, each right after the last NUL. */
static size_t strings_start(const struct msg_record *r, const char *buf, size_t n)
{
    const char *strs[6] = {r->sender, r->msgid, r->from_addr, r->to_addr, r->client_address, r->client_name};
    for (int i = 0; i < 6; i++) {
        CHECK(strs[i] > buf && strs[i] < buf + n);
        CHECK(memchr(strs[i], '\0', (size_t)(buf + n - strs[i])) != NULL);
        if (i > 0)
            CHECK(strs[i] == strs[i - 1] + strlen(strs[i - 1]) + 1);
    }
    return (size_t)(r->sender - buf);
}

/* One record decoded from buf[0..n): re-encoding gives its bytes back. */
static void check_round_trip(const char *buf, size_t n, const struct msg_record *r)
{
    static char enc[WQUEUE_MAX_RECORD], again[WQUEUE_MAX_RECORD];
    struct msg_record back, back2;

    size_t h = strings_start(r, buf, n);
    const char *last = r->client_name;
    size_t strings = (size_t)(last + strlen(last) + 1 - r->sender);

    size_t m = wqueue_encode(r, enc);
    /* Canonical: header and strings, padded to 8; never more than read. */
    CHECK(m != 0 && m % 8 == 0 && m == ((h + strings + 7) & ~(size_t)7) && m <= ((n + 7) & ~(size_t)7));
    CHECK(wqueue_decode(enc, m, &back) == m);
    CHECK(same_record(r, &back, true));
    CHECK(strings_start(&back, enc, m) == h);
    CHECK(memcmp(enc + h, buf + h, strings) == 0);
    CHECK(wqueue_encode(&back, again) == m && memcmp(again, enc, m) == 0);
    /* A canonical record cut anywhere is refused, never half-read. */
    if (m > 1)
        CHECK(wqueue_decode(enc, m - 1 - (size_t)r->rcpt_count % (m - 1), &back2) == 0);
}

static void fuzz_spool(const uint8_t *data, size_t size)
{
    /* A private copy: decode points the strings into it. */
    char *buf = malloc(size ? size : 1);
    size_t off = 0;
    struct msg_record r;

    memcpy(buf, data, size);
    for (;;) {
        size_t n = wqueue_decode(buf + off, size - off, &r);
        if (n == 0)
            break;
        CHECK(n <= size - off && n <= WQUEUE_MAX_RECORD);
        check_round_trip(buf + off, n, &r);
        off += n;
    }
    free(buf);
}

/* Walk the queue from its head; returns the records seen, checking each. */
static uint64_t walk(struct wqueue *q, const struct msg_record *expect, size_t n_expect, uint64_t *bytes)
{
    static char buf[WQUEUE_MAX_RECORD];
    struct wqueue_cursor cur;
    struct msg_record r;
    size_t used;
    uint64_t n = 0;

    *bytes = 0;
    wqueue_cursor_start(q, &cur);
    while (wqueue_next(q, &cur, buf, sizeof(buf), &r, &used)) {
        CHECK(r.epoch == q->sh->epoch && r.seq < q->sh->next_seq);
        strings_start(&r, buf, used);
        if (expect != NULL) {
            CHECK(n < n_expect && same_record(&r, &expect[n], true));
        }
        *bytes += used;
        n++;
    }
    CHECK(cur.count == n);
    return n;
}

static void fuzz_queue(const uint8_t *data, size_t size)
{
    struct wqueue q;
    char err[256];
    struct msg_record recs[MAX_PUSH], queued[MAX_PUSH];
    size_t n_recs = 0, n_queued = 0;
    uint64_t bytes;

    if (size < 3)
        return;
    uint64_t cap = 256 + 64 * (uint64_t)data[0];
    unsigned release = data[1];
    unsigned n_patches = data[2] % 9;
    data += 3;
    size -= 3;
    if (size < 6 * (size_t)n_patches)
        return;
    const uint8_t *patches = data;
    data += 6 * n_patches;
    size -= 6 * n_patches;

    char *stream = malloc(size ? size : 1);
    memcpy(stream, data, size);
    for (size_t off = 0, n; n_recs < MAX_PUSH && (n = wqueue_decode(stream + off, size - off, &recs[n_recs])) != 0;
         off += n)
        n_recs++;

    unlink(path);
    CHECK(wqueue_open(&q, path, cap, err, sizeof(err)) == WQUEUE_CREATED);
    bool released = false;
    for (size_t i = 0; i < n_recs; i++) {
        if (wqueue_push(&q, &recs[i])) {
            queued[n_queued++] = recs[i];
            continue;
        }
        if (released || release == 0 || n_queued == 0)
            break;
        /* Make room at the head, so that what follows wraps around. */
        static char buf[WQUEUE_MAX_RECORD];
        struct wqueue_cursor cur;
        struct msg_record r;
        size_t used, k = 0;
        wqueue_cursor_start(&q, &cur);
        while (k < release && wqueue_next(&q, &cur, buf, sizeof(buf), &r, &used))
            k++;
        wqueue_release(&q, &cur);
        memmove(queued, queued + k, (n_queued - k) * sizeof(queued[0]));
        n_queued -= k;
        released = true;
        i--;
    }
    CHECK(wqueue_depth(&q) == n_queued);
    CHECK(walk(&q, queued, n_queued, &bytes) == n_queued && bytes == wqueue_bytes(&q));
    uint64_t epoch = q.sh->epoch;
    wqueue_close(&q, path, false);

    /* The damage: bytes of the file set or flipped. */
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    off_t file_size = lseek(fd, 0, SEEK_END);
    for (unsigned i = 0; i < n_patches; i++) {
        const uint8_t *p = patches + 6 * i;
        uint32_t at = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        off_t where = (off_t)(at % (uint64_t)file_size);
        unsigned char byte;
        CHECK(pread(fd, &byte, 1, where) == 1);
        byte = p[5] == 0 ? p[4] : (unsigned char)(byte ^ p[4]);
        CHECK(pwrite(fd, &byte, 1, where) == 1);
    }
    close(fd);

    err[0] = '\0';
    enum wqueue_open_result res = wqueue_open(&q, path, cap, err, sizeof(err));
    if (n_patches == 0) {
        /* Undamaged: everything comes back as it was. */
        CHECK(res == WQUEUE_RECOVERED && q.sh->epoch == epoch);
        CHECK(walk(&q, queued, n_queued, &bytes) == n_queued && bytes == wqueue_bytes(&q));
    }
    if (res == WQUEUE_FAILED) {
        CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
        free(stream);
        return;
    }
    /* CREATED only if the damage left a valid empty queue of another
     * size: wqueue_open then starts a new one of the size asked for. */
    CHECK(res == WQUEUE_RECOVERED || (res == WQUEUE_CREATED && wqueue_depth(&q) == 0));
    CHECK(walk(&q, NULL, 0, &bytes) == wqueue_depth(&q) && bytes == wqueue_bytes(&q));

    /* A recovered queue takes new records after the old ones. */
    struct msg_record fresh = {.created_us = 1700000000000000, .rcpt_count = 2, .msg_delta = 1, .rcpt_delta = 2,
                               .quota_default = 1000, .sender = "after@example.org", .msgid = "AFTER",
                               .from_addr = "after@example.org", .to_addr = "x@example.net",
                               .client_address = "192.0.2.1", .client_name = "mx.example.net"};
    uint64_t before = wqueue_depth(&q);
    if (wqueue_push(&q, &fresh)) {
        CHECK(walk(&q, NULL, 0, &bytes) == before + 1 && bytes == wqueue_bytes(&q));
        CHECK(fresh.epoch == q.sh->epoch);
    }
    struct wqueue_cursor cur;
    static char buf[WQUEUE_MAX_RECORD];
    struct msg_record r;
    size_t used;
    wqueue_cursor_start(&q, &cur);
    while (wqueue_next(&q, &cur, buf, sizeof(buf), &r, &used))
        ;
    wqueue_release(&q, &cur);
    CHECK(wqueue_depth(&q) == 0 && wqueue_bytes(&q) == 0);
    wqueue_close(&q, path, true);
    free(stream);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        fuzz_queue(data + 1, size - 1);
    else
        fuzz_spool(data + 1, size - 1);
    return 0;
}
