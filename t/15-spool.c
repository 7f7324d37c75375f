/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 15-spool.c - the spool file behind struct spool (spool.c): a spill moves
 * the oldest records of a half-full queue there, down to a quarter; a
 * round's cursor reads them back in order, and once all are consumed the
 * file starts afresh; recovery's cursor reads on past a slice to the end
 * and says how many bytes at the end are not a whole record; a damaged
 * spool is set aside and started afresh; a full disk is logged once, not at
 * every spill that fails.
 */
#include "spool.h"
#include "log.h"
#include "wqueue.h"
#include "tap.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct msg_record make(const char *sender)
{
    struct msg_record r = {
        .created_us = 1700000000123456, .rcpt_count = 1, .msg_delta = 1, .rcpt_delta = 1,
        .quota_default = 5, .sender = sender, .msgid = "QID", .from_addr = "from@x", .to_addr = "",
        .client_address = "::1", .client_name = "host",
    };
    return r;
}

/* Records written to path in the spool's format, seq 1..n. */
static size_t write_records(const char *path, size_t n, char *buf)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    size_t total = 0;
    for (size_t i = 1; i <= n; i++) {
        struct msg_record r = make("bulk@example.org");
        r.epoch = 7;
        r.seq = i;
        size_t len = wqueue_encode(&r, buf);
        if (write(fd, buf, len) != (ssize_t)len)
            diag("write failed");
        total += len;
    }
    close(fd);
    return total;
}

/* Error lines logged that name the spool's write failure. */
static int spool_errors;
static void count_errors(int level, const char *format, const char *text)
{
    (void)level;
    (void)format;
    if (strstr(text, "cannot write spool") != NULL)
        spool_errors++;
}

/* A full disk, in a child (RLIMIT_FSIZE: writes past 64 bytes fail with
 * EFBIG, the one before it is short): ten spills fail, said once; the
 * records stay queued; with room again a spill succeeds, and the next
 * failure is said again. Exit status: the number of checks that failed. */
static int full_disk_child(const char *dir)
{
    char qpath[160], spath[160], err[256];
    struct wqueue q;
    struct spool sp;
    int failed = 0;

    snprintf(qpath, sizeof(qpath), "%s/full.queue", dir);
    snprintf(spath, sizeof(spath), "%s/full.spool", dir);
    if (wqueue_open(&q, qpath, 8192, err, sizeof(err)) != WQUEUE_CREATED)
        return 99;
    signal(SIGXFSZ, SIG_IGN);
    log_set_error_hook(count_errors);
    log_console_quiet();
    spool_init(&sp, spath);
    while (wqueue_bytes(&q) < q.sh->capacity / 2) {
        struct msg_record r = make("full@example.org");
        wqueue_push(&q, &r);
    }
    uint64_t queued = wqueue_depth(&q);
    struct rlimit big;      /* the soft limit only: it can be raised again up to the hard one */
    if (getrlimit(RLIMIT_FSIZE, &big) != 0)
        return 96;
    struct rlimit small = {64, big.rlim_max};
    if (setrlimit(RLIMIT_FSIZE, &small) != 0)
        return 98;
    for (int i = 0; i < 10; i++)
        spool_spill(&sp, &q);
    failed += spool_errors != 1;
    failed += wqueue_depth(&q) != queued;
    failed += spool_size(&sp) != 0;
    if (setrlimit(RLIMIT_FSIZE, &big) != 0)
        return 97;
    spool_spill(&sp, &q);
    failed += wqueue_depth(&q) >= queued || sp.failing;
    while (wqueue_bytes(&q) < q.sh->capacity / 2) {
        struct msg_record r = make("full@example.org");
        wqueue_push(&q, &r);
    }
    struct rlimit none = {(rlim_t)spool_size(&sp), big.rlim_max};
    setrlimit(RLIMIT_FSIZE, &none);
    spool_spill(&sp, &q);
    failed += spool_errors != 2;
    return failed;
}

int main(void)
{
    static char buf[WQUEUE_MAX_RECORD];
    char dir[] = "/tmp/rg-spool-XXXXXX", qpath[128], spath[128], err[256];
    struct wqueue q;
    struct spool sp;
    struct spool_cursor cur;
    struct msg_record out;
    size_t used;

    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(qpath, sizeof(qpath), "%s/test.queue", dir);
    snprintf(spath, sizeof(spath), "%s/test.spool", dir);
    is_long(wqueue_open(&q, qpath, 8192, err, sizeof(err)), WQUEUE_CREATED, "queue file created");

    /* A spill: nothing below half full, then the oldest down to a quarter. */
    spool_init(&sp, spath);
    ok(!spool_open(&sp, false), "no spool file: not opened without create");
    ok(!spool_pending(&sp), "nothing pending");
    struct msg_record r = make("alice@example.org");
    ok(wqueue_push(&q, &r), "one record queued");
    spool_spill(&sp, &q);
    ok(access(spath, F_OK) != 0, "below half full: no spill, no file");
    while (wqueue_bytes(&q) < q.sh->capacity / 2) {
        r = make("alice@example.org");
        wqueue_push(&q, &r);
    }
    uint64_t queued = wqueue_depth(&q);
    spool_spill(&sp, &q);
    uint64_t left = wqueue_depth(&q), moved = queued - left;
    ok(moved > 0 && wqueue_bytes(&q) <= q.sh->capacity / 4 + 512, "spilled down to a quarter (%llu moved)",
       (unsigned long long)moved);
    ok(spool_pending(&sp), "the spool holds records");

    /* A round's cursor: the moved records, oldest first, then the queue's. */
    spool_cursor_start(&sp, &cur, false);
    uint64_t got = 0, last_seq = 0;
    bool in_order = true;
    while (spool_next(&sp, &cur, buf, sizeof(buf), &out, &used)) {
        in_order &= out.seq == last_seq + 1 && strcmp(out.sender, "alice@example.org") == 0;
        last_seq = out.seq;
        got++;
    }
    is_long((long)got, (long)moved, "every spilled record read back");
    ok(in_order, "in order, whole");
    struct wqueue_cursor qc;
    wqueue_cursor_start(&q, &qc);
    ok(wqueue_next(&q, &qc, buf, sizeof(buf), &out, &used) && out.seq == last_seq + 1,
       "the queue goes on where the spool ends");
    is_long((long)spool_cursor_left(&sp, &cur), 0, "nothing left after the last record");
    spool_consumed(&sp, &cur);
    spool_cursor_end(&cur);
    ok(!spool_pending(&sp) && spool_size(&sp) == 0 && sp.read == 0, "all consumed: the file starts afresh");
    spool_close(&sp);
    wqueue_close(&q, qpath, false);

    /* Recovery reads on past a slice; bytes cut at the end are counted. */
    size_t total = write_records(spath, 90000, buf);
    ok(total > 2 * SPOOL_SLICE, "a spool of more than two slices (%zu bytes)", total);
    int fd = open(spath, O_WRONLY | O_APPEND);
    if (write(fd, buf, 40) != 40)
        diag("write failed");
    close(fd);
    spool_init(&sp, spath);
    ok(spool_open_readonly(&sp), "opened read-only");
    spool_cursor_start(&sp, &cur, true);
    got = last_seq = 0;
    in_order = true;
    while (spool_next(&sp, &cur, buf, sizeof(buf), &out, &used)) {
        in_order &= out.seq == last_seq + 1;
        last_seq = out.seq;
        got++;
    }
    is_long((long)got, 90000, "recovery reads every record, across slices");
    ok(in_order, "in order");
    is_long((long)spool_cursor_left(&sp, &cur), 40, "the 40 bytes cut at the end are left");
    spool_cursor_end(&cur);

    /* A round's cursor stops at its slice. */
    spool_cursor_start(&sp, &cur, false);
    got = 0;
    while (spool_next(&sp, &cur, buf, sizeof(buf), &out, &used))
        got++;
    ok(got > 0 && got < 90000, "a round's cursor reads one slice (%llu records)", (unsigned long long)got);
    spool_cursor_end(&cur);
    spool_close(&sp);

    /* Damaged at its start: set aside, started afresh. */
    fd = open(spath, O_WRONLY);
    if (pwrite(fd, "garbage!", 8, 0) != 8)
        diag("pwrite failed");
    close(fd);
    spool_init(&sp, spath);
    ok(spool_open(&sp, false), "an existing spool opened for the writer");
    spool_cursor_start(&sp, &cur, false);
    ok(!spool_next(&sp, &cur, buf, sizeof(buf), &out, &used), "a damaged record is not returned");
    ok(spool_damaged(&sp, &cur, err, sizeof(err)), "damaged: set aside");
    spool_cursor_end(&cur);
    is_long((long)spool_size(&sp), 0, "and the spool started afresh");
    spool_close(&sp);

    char cmd[300];
    /* A full disk: the failure said once, not at every try. */
    pid_t kid = fork();
    if (kid == 0)
        _exit(full_disk_child(dir));
    int status = 0;
    waitpid(kid, &status, 0);
    is_long(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0,
            "a full disk: ten failed spills logged once, records kept; after a spill that worked, said again");
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        diag("cleanup of %s failed", dir);
    return done_testing();
}
