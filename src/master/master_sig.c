/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * master_sig.c - the master's signals: the handler, the flags it sets and
 * the self-pipe it writes to. Owns the self-pipe.
 *
 * The handler only records the signal (a volatile sig_atomic_t) and
 * writes a byte to the self-pipe, errno saved; the main loop (master.c)
 * polls the pipe's read end and does the work. Workers hold the write end
 * too: a worker turning busy pokes the master so that a spare is forked.
 */
#include "master_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

static volatile sig_atomic_t got_term;
static volatile sig_atomic_t pending[MASTER_EVENTS];
static volatile sig_atomic_t got_usr1[STATUS_FORMATS];  /* the dumps asked for */
static volatile sig_atomic_t top_rows;                  /* the most rows a top dump was asked for */
static int self_pipe[2] = {-1, -1};

static void on_signal(int sig, siginfo_t *si, void *context)
{
    int saved = errno;
    (void)context;
    if (sig == SIGRTMIN) {
        /* `rateguard status` queues the one format it prints (a real-time
         * signal: two commands at once are both delivered); `rateguard top`
         * the rows it shows above it (status_request). */
        int format = si->si_value.sival_int & 0xff, rows = si->si_value.sival_int >> 8;
        if (si->si_code == SI_QUEUE && si->si_value.sival_int >= 0 && format < STATUS_FORMATS) {
            got_usr1[format] = 1;
            if (rows > top_rows)
                top_rows = rows > STATUS_TOP_ROWS_MAX ? STATUS_TOP_ROWS_MAX : rows;
        }
        sig = 0;
    }
    switch (sig) {
    case SIGTERM: case SIGINT: got_term = 1; break;
    case SIGHUP: pending[MASTER_EV_HUP] = 1; break;
    case SIGUSR1:               /* kill -USR1: every dump */
        for (int i = 0; i < STATUS_FORMATS; i++)
            got_usr1[i] = 1;
        if (top_rows < STATUS_TOP_ROWS_DEFAULT)
            top_rows = STATUS_TOP_ROWS_DEFAULT;
        break;
    case SIGUSR2: pending[MASTER_EV_REOPEN_LOGS] = 1; break;
    case SIGCHLD: pending[MASTER_EV_CHLD] = 1; break;
    case SIGWINCH: pending[MASTER_EV_REFRESH] = 1; break;
    }
    if (self_pipe[1] >= 0 && write(self_pipe[1], "s", 1) < 0) {
        /* pipe full: the loop is already due to wake up */
    }
    errno = saved;
}

void master_sig_install(void)
{
    struct sigaction sa = {.sa_sigaction = on_signal, .sa_flags = SA_RESTART | SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD, SIGWINCH, SIGRTMIN};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

bool master_sig_open(void)
{
    return pipe2(self_pipe, O_CLOEXEC | O_NONBLOCK) == 0;
}

int master_sig_read_fd(void)
{
    return self_pipe[0];
}

int master_sig_write_fd(void)
{
    return self_pipe[1];
}

void master_sig_drain(void)
{
    char drain[256];
    while (read(self_pipe[0], drain, sizeof(drain)) > 0)
        ;
}

bool master_sig_stop_requested(void)
{
    return got_term != 0;
}

bool master_sig_take(enum master_event ev)
{
    if (!pending[ev])
        return false;
    pending[ev] = 0;
    return true;
}

bool master_sig_take_dumps(bool dumps[STATUS_FORMATS], unsigned *rows)
{
    bool any = false;
    sigset_t block, saved;
    /* The flags and the rows taken together: a request arriving in
     * between is kept whole for the next turn. */
    sigemptyset(&block);
    sigaddset(&block, SIGRTMIN);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &saved);
    for (int i = 0; i < STATUS_FORMATS; i++) {
        dumps[i] = false;
        if (got_usr1[i]) {
            got_usr1[i] = 0;
            dumps[i] = any = true;
        }
    }
    *rows = top_rows > 0 ? (unsigned)top_rows : STATUS_TOP_ROWS_DEFAULT;
    top_rows = 0;
    sigprocmask(SIG_SETMASK, &saved, NULL);
    return any;
}
