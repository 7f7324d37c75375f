/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * 15-child-exit.c - the exit-code protocol between the master and its
 * children (rateguard.h): 0 retired (no back-off, no log), 5 fatal (no
 * respawn, the daemon stops), 6 or any other code sick and a signal a
 * crash (both backed off). Real exits from forked children, and the
 * master's book-keeping on a scoreboard in plain memory.
 */
#include "master_int.h"
#include "log.h"
#include "rateguard.h"
#include "tap.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

/* The wait status of a child that exits with code, or is killed by sig. */
static int status_of(int code, int sig)
{
    int status = 0;
    pid_t pid = fork();
    if (pid == 0) {
        if (sig)
            raise(sig);
        _exit(code);
    }
    waitpid(pid, &status, 0);
    return status;
}

static void test_verdicts(void)
{
    static const struct { int code, sig; enum child_verdict want; const char *what; } cases[] = {
        {RG_CHILD_DONE, 0, CHILD_RETIRED, "exit 0: retired"},
        {RG_CHILD_FATAL, 0, CHILD_FATAL, "exit 5: fatal"},
        {RG_CHILD_SICK, 0, CHILD_SICK, "exit 6: sick"},
        {3, 0, CHILD_SICK, "exit 3 (not in the protocol): sick"},
        {0, SIGKILL, CHILD_CRASHED, "killed by SIGKILL: crashed"},
        {0, SIGSEGV, CHILD_CRASHED, "killed by SIGSEGV: crashed"},
    };
    signal(SIGSEGV, SIG_DFL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        is_long(master_child_verdict(status_of(cases[i].code, cases[i].sig)), cases[i].want, "%s", cases[i].what);
}

static char last_error[512];

static void remember(int level, const char *format, const char *text)
{
    (void)format;
    if (level <= LOG_ERR)
        snprintf(last_error, sizeof(last_error), "%s", text);
}

static void test_master_acts(void)
{
    struct scoreboard_shared sh = {.slots = 2};
    struct worker_slot slots[2];
    struct master m;

    memset(&m, 0, sizeof(m));
    memset(slots, 0, sizeof(slots));
    m.shm.scoreboard.sh = &sh;
    m.shm.scoreboard.slot = slots;
    log_set_error_hook(remember);
    int saved_stderr = dup(STDERR_FILENO);
    int null = open("/dev/null", O_WRONLY);  /* the log's console copy: the hook checks the lines */
    dup2(null, STDERR_FILENO);
    close(null);

    slots[0] = (struct worker_slot){.pid = 101, .state = SLOT_IDLE};
    last_error[0] = '\0';
    master_child_exited(&m, 101, status_of(RG_CHILD_DONE, 0));
    ok(slots[0].pid == 0 && slots[0].state == SLOT_FREE, "retired worker: its slot freed");
    ok(m.spawn_backoff_s == 0 && !m.stopping && last_error[0] == '\0', "  no back-off, no stop, nothing logged");

    slots[1] = (struct worker_slot){.pid = 102, .state = SLOT_IDLE};
    master_child_exited(&m, 102, status_of(RG_CHILD_SICK, 0));
    is_long(m.spawn_backoff_s, 1, "sick worker that served nobody: the next one in 1 s");
    is_str(last_error, "worker 102 exited with status 6; the next one starts in 1 s", "  logged");
    slots[1] = (struct worker_slot){.pid = 103, .state = SLOT_IDLE};
    master_child_exited(&m, 103, status_of(0, SIGKILL));
    is_long(m.spawn_backoff_s, 2, "crashed right after: 2 s");
    slots[1] = (struct worker_slot){.pid = 104, .state = SLOT_BUSY, .connections = 3};
    master_child_exited(&m, 104, status_of(0, SIGKILL));
    is_long(m.spawn_backoff_s, 0, "one that had served: the series starts afresh");
    ok(!m.stopping, "  sick and crashed children do not stop the daemon");

    m.writer_pid = 200;
    m.writer_started = time(NULL);
    master_child_exited(&m, 200, status_of(RG_CHILD_FATAL, 0));
    ok(m.stopping && m.writer_fatal, "fatal writer: the daemon stops, no writer started to drain");
    is_long(m.writer_pid, 0, "  its pid forgotten");
    is_long(m.writer_backoff_s, 0, "  no back-off (no successor)");
    is_str(last_error, "writer 200 exited with status 5 (fatal: its configuration or environment is unusable); "
                       "stopping the daemon", "  logged");
    log_set_error_hook(NULL);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
}

int main(void)
{
    test_verdicts();
    test_master_acts();
    return done_testing();
}
