/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 06-wqueue.c - the write-back queue file: records come out as they went
 * in, in order, across the wrap-around; a full ring refuses; released
 * space is reused; a cursor does not consume; a reopened file keeps its
 * records and numbering; a damaged or foreign file is refused.
 */
#include "wqueue.h"
#include "tap.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static struct msg_record make(const char *sender, uint32_t rcpt)
{
    struct msg_record r = {
        .created_us = 1700000000123456, .rcpt_count = rcpt, .msg_delta = 1, .rcpt_delta = rcpt,
        .quota_default = 5, .blocked = rcpt > 3, .sender = sender, .msgid = "QID",
        .from_addr = "from@x", .to_addr = "", .client_address = "::1", .client_name = "host",
    };
    return r;
}

static void patch(const char *path, off_t at, uint32_t value)
{
    int fd = open(path, O_WRONLY);
    if (pwrite(fd, &value, sizeof(value), at) != sizeof(value))
        diag("pwrite failed");
    close(fd);
}

int main(void)
{
    static char buf[WQUEUE_MAX_RECORD];
    char dir[] = "/tmp/rg-wqueue-XXXXXX", path[128], err[256];
    struct wqueue q;
    struct wqueue_cursor cur;
    struct msg_record out;
    size_t used;

    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(path, sizeof(path), "%s/test.queue", dir);
    is_long(wqueue_open(&q, path, 4096, err, sizeof(err)), WQUEUE_CREATED, "new queue file created");
    struct msg_record r = make("alice@example.org", 3);
    ok(wqueue_push(&q, &r), "push one");
    is_long((long)r.seq, 1, "first sequence number 1");
    ok(r.epoch > 1600000000000000ull, "epoch is the creation time in microseconds");
    wqueue_cursor_start(&q, &cur);
    ok(wqueue_next(&q, &cur, buf, sizeof(buf), &out, &used), "read it back");
    is_str(out.sender, "alice@example.org", "sender");
    is_str(out.msgid, "QID", "msgid");
    is_str(out.to_addr, "", "empty to_addr");
    is_str(out.client_address, "::1", "client_address");
    is_long(out.rcpt_delta, 3, "rcpt delta");
    ok(out.created_us == 1700000000123456, "created_us to the microsecond");
    ok(!wqueue_next(&q, &cur, buf, sizeof(buf), &out, &used), "nothing more");
    is_long((long)wqueue_depth(&q), 1, "cursor does not consume");
    wqueue_release(&q, &cur);
    is_long((long)wqueue_depth(&q), 0, "release consumes");

    /* Fill the 4 KiB ring, then drain and refill many times: wrap-around. */
    int pushed = 0;
    while (pushed < 1000) {
        struct msg_record x = make("bob@example.org", (uint32_t)pushed);
        if (!wqueue_push(&q, &x))
            break;
        pushed++;
    }
    ok(pushed > 10 && pushed < 1000, "a full ring refuses (%d records fit)", pushed);
    uint32_t expect = 0;
    bool in_order = true;
    for (int round = 0; round < 50; round++) {
        wqueue_cursor_start(&q, &cur);
        int n = 0;
        while (n < 7 && wqueue_next(&q, &cur, buf, sizeof(buf), &out, &used)) {
            if (out.rcpt_count != expect++ || strcmp(out.sender, "bob@example.org") != 0)
                in_order = false;
            n++;
        }
        wqueue_release(&q, &cur);
        for (int k = 0; k < n; k++) {
            struct msg_record x = make("bob@example.org", (uint32_t)pushed++);
            if (!wqueue_push(&q, &x))
                in_order = false;
        }
    }
    ok(in_order, "350 records read in order across the wrap-around, space reused");
    uint64_t depth = wqueue_depth(&q), epoch = r.epoch;
    wqueue_close(&q, path, true);
    ok(access(path, F_OK) == 0, "a queue with records is kept at close");

    /* Reopen, as after a crash: the same records, the same numbering. */
    is_long(wqueue_open(&q, path, 4096, err, sizeof(err)), WQUEUE_RECOVERED, "reopened");
    is_long((long)wqueue_depth(&q), (long)depth, "records kept");
    wqueue_cursor_start(&q, &cur);
    ok(wqueue_next(&q, &cur, buf, sizeof(buf), &out, &used) && out.rcpt_count == expect && out.epoch == epoch,
       "the oldest record is next, with its epoch");
    /* The ring is full: the two oldest written make room for one more. */
    ok(wqueue_next(&q, &cur, buf, sizeof(buf), &out, &used), "the second oldest is next");
    wqueue_release(&q, &cur);
    is_long((long)wqueue_depth(&q), (long)depth - 2, "two records released");
    struct msg_record y = make("carol@example.org", 1);
    ok(wqueue_push(&q, &y), "push after reopening");
    is_long((long)wqueue_depth(&q), (long)depth - 1, "... counted in the depth");
    wqueue_cursor_start(&q, &cur);
    bool last_is_carol = false;
    while (wqueue_next(&q, &cur, buf, sizeof(buf), &out, &used))
        last_is_carol = strcmp(out.sender, "carol@example.org") == 0 && out.rcpt_count == 1 && out.epoch == epoch;
    ok(last_is_carol, "... and read back last, in the same epoch");
    wqueue_close(&q, path, false);

    /* Damage: refused, never trusted. */
    patch(path, 4, 99);        /* version */
    is_long(wqueue_open(&q, path, 4096, err, sizeof(err)), WQUEUE_FAILED, "another version is refused");
    ok(strstr(err, "not a rateguard queue of version 1") != NULL, "... with a clear message: %s", err);
    patch(path, 4, WQUEUE_VERSION);
    patch(path, 8, 8192);      /* capacity, without the checksum */
    is_long(wqueue_open(&q, path, 4096, err, sizeof(err)), WQUEUE_FAILED, "a damaged header is refused");
    ok(strstr(err, "header damaged") != NULL, "... with a clear message: %s", err);
    patch(path, 8, 4096);
    is_long(wqueue_open(&q, path, 4096, err, sizeof(err)), WQUEUE_RECOVERED, "repaired header accepted again");
    /* Drain and close: an empty queue file is removed. */
    wqueue_cursor_start(&q, &cur);
    while (wqueue_next(&q, &cur, buf, sizeof(buf), &out, &used))
        ;
    wqueue_release(&q, &cur);
    wqueue_close(&q, path, true);
    ok(access(path, F_OK) != 0, "an empty queue file is removed at close");

    /* Spool encoding round trip. */
    struct msg_record z = make("dave@example.org", 2), back;
    z.epoch = 7;
    z.seq = 9;
    size_t n = wqueue_encode(&z, buf);
    ok(n > 0 && n % 8 == 0, "encoded size is a multiple of 8");
    is_long((long)wqueue_decode(buf, n, &back), (long)n, "decoded");
    ok(back.epoch == 7 && back.seq == 9 && strcmp(back.sender, "dave@example.org") == 0, "same record");
    is_long((long)wqueue_decode(buf, n - 8, &back), 0, "a cut record does not decode");
    rmdir(dir);
    return done_testing();
}
