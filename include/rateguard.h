/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * rateguard.h - project-wide constants: version and the exit codes that
 * form rateguard's contract with init scripts and administrators.
 *
 * The exit codes follow policyd-rate-limit's man page so that tooling
 * written for it keeps working; they are documented in rateguard(8).
 */
#ifndef RATEGUARD_H
#define RATEGUARD_H

#define RATEGUARD_VERSION "0.1.0"
#define RATEGUARD_NAME "rateguard"

/* Default configuration file, overridable with -c: under the build's
 * SYSCONFDIR (RG_SYSCONFDIR, from the generated sysconfdir.h that the
 * GNUmakefile puts before main.c), /etc when none is given. */
#ifndef RATEGUARD_DEFAULT_CONFIG
#ifdef RG_SYSCONFDIR
#define RATEGUARD_DEFAULT_CONFIG RG_SYSCONFDIR "/rateguard/rateguard.conf"
#else
#define RATEGUARD_DEFAULT_CONFIG "/etc/rateguard/rateguard.conf"
#endif
#endif

enum rg_exit {
    RG_EXIT_OK = 0,
    RG_EXIT_UNKNOWN_PARAM = 1,  /* --get-config NAME that does not exist */
    RG_EXIT_NO_USER = 2,        /* user or group of the config missing */
    RG_EXIT_RUNNING = 3,        /* already running (start) / not running (status) */
    RG_EXIT_BAD_LISTEN = 4,     /* bad listen address or cannot bind */
    RG_EXIT_CONFIG = 5,         /* config file missing or invalid, bad usage */
    RG_EXIT_RUNTIME = 6,        /* runtime error (database, memory, ...) */
    RG_EXIT_CLEANUP = 8,        /* cleanup failed */
    RG_EXIT_REPORT = 9,         /* cleanup: reset done, but the report was not sent; report: not sent */
};

/*
 * Child exit codes: the protocol between the master and its children
 * (workers, the writer, the notifier). The master acts on them in one
 * switch (master_spawn.c, master_child_exited):
 *
 *   exit                 the child says                   the master
 *   0   RG_CHILD_DONE    retired: max_requests, idle      nothing logged; starts another when
 *                        timeout, asked to (pool, HUP),   the pool needs one, at once
 *                        TERM, or the master is gone
 *   5   RG_CHILD_FATAL   configuration or environment:    logs it, starts no other child, stops
 *                        a new child would fail alike     the daemon as TERM does, exits 6
 *   6   RG_CHILD_SICK    failed, may work next time       logs it; the next one starts after a
 *                        (memory, a library, a fork)      back-off: 1, 2, 4 ... 30 s while deaths
 *                                                         follow each other, from 1 s again after
 *                                                         a child that had lived 10 s (writer,
 *                                                         notifier) or served a client (worker)
 *   killed by a signal   crashed                          as 6, the signal named (core dumped)
 *                                                         and passed to the Sentry event
 *   any other code       unknown                          as 6
 *
 * The codes are the daemon's own (RG_EXIT_CONFIG, RG_EXIT_RUNTIME), so a
 * child's log_fatal(RG_EXIT_RUNTIME, ...) is "sick".
 */
enum rg_child_exit {
    RG_CHILD_DONE = RG_EXIT_OK,
    RG_CHILD_FATAL = RG_EXIT_CONFIG,
    RG_CHILD_SICK = RG_EXIT_RUNTIME,
};

#endif
