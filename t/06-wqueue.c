/*
 * 06-wqueue.c - the write-back ring: records come out as they went in, in
 * order, across the wrap-around; a full ring refuses; released space is
 * reused; a cursor does not consume.
 */
#include "shm.h"
#include "tap.h"

static struct msg_record make(const char *sender, uint32_t rcpt)
{
    struct msg_record r = {
        .created_at = 1700000000, .rcpt_count = rcpt, .msg_delta = 1, .rcpt_delta = rcpt,
        .quota_default = 5, .blocked = rcpt > 3, .sender = sender, .msgid = "QID",
        .from_addr = "from@x", .to_addr = "", .client_address = "::1", .client_name = "host",
    };
    return r;
}

int main(void)
{
    struct shm shm;
    static char buf[WQUEUE_MAX_RECORD];
    struct wqueue_cursor cur;
    struct msg_record out;
    size_t used;

    shm_create(&shm, 1, 16, 4096);
    struct wqueue *q = &shm.queue;
    struct msg_record r = make("alice@example.org", 3);
    ok(wqueue_push(q, &r), "push one");
    is_long((long)r.seq, 1, "first sequence number 1");
    wqueue_cursor_start(q, &cur);
    ok(wqueue_next(q, &cur, buf, sizeof(buf), &out, &used), "read it back");
    is_str(out.sender, "alice@example.org", "sender");
    is_str(out.msgid, "QID", "msgid");
    is_str(out.to_addr, "", "empty to_addr");
    is_str(out.client_address, "::1", "client_address");
    is_long(out.rcpt_delta, 3, "rcpt delta");
    is_long((long)out.created_at, 1700000000, "created_at");
    ok(!wqueue_next(q, &cur, buf, sizeof(buf), &out, &used), "nothing more");
    is_long((long)wqueue_depth(q), 1, "cursor does not consume");
    wqueue_release(q, &cur);
    is_long((long)wqueue_depth(q), 0, "release consumes");

    /* Fill the 4 KiB ring, then drain and refill many times: wrap-around. */
    int pushed = 0;
    while (pushed < 1000) {
        struct msg_record x = make("bob@example.org", (uint32_t)pushed);
        if (!wqueue_push(q, &x))
            break;
        pushed++;
    }
    ok(pushed > 10 && pushed < 1000, "a full ring refuses (%d records fit)", pushed);
    uint32_t expect = 0;
    bool in_order = true;
    for (int round = 0; round < 50; round++) {
        wqueue_cursor_start(q, &cur);
        int n = 0;
        while (n < 7 && wqueue_next(q, &cur, buf, sizeof(buf), &out, &used)) {
            if (out.rcpt_count != expect++ || strcmp(out.sender, "bob@example.org") != 0)
                in_order = false;
            n++;
        }
        wqueue_release(q, &cur);
        for (int k = 0; k < n; k++) {
            struct msg_record x = make("bob@example.org", (uint32_t)pushed++);
            if (!wqueue_push(q, &x))
                in_order = false;
        }
    }
    ok(in_order, "350 records read in order across the wrap-around, space reused");
    shm_destroy(&shm);
    return done_testing();
}
