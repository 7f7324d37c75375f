/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * main.c - command line: options, loading the configuration, and
 * dispatching to the daemon or an operator command. Exit codes are the
 * contract documented in rateguard.h and rateguard(8).
 */
#include "commands.h"
#include "config.h"
#include "log.h"
#include "master.h"
#include "privileges.h"
#include "report.h"
#include "rateguard.h"
#include "top.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RG_EXIT_USAGE 64   /* sysexits EX_USAGE: bad command line */

/* The command line's options. */
struct options {
    const char *config_path;        /* made absolute before the configuration is read */
    const char *get_config;         /* --get-config NAME, or NULL */
    bool foreground, test_only, json, prometheus, locked, to_stdout, quiet;
    struct top_options top;         /* -b, -n, -d, -o, -r: top's own */
    char top_option[3];             /* the first of those given ("-n"), for the message when not top */
};

static int run_daemon(struct rg_config *cfg, char **args, const struct options *o);
static int run_status(struct rg_config *cfg, char **args, const struct options *o);
static int run_blocked(struct rg_config *cfg, char **args, const struct options *o);
static int run_top(struct rg_config *cfg, char **args, const struct options *o);
static int run_cleanup(struct rg_config *cfg, char **args, const struct options *o);
static int run_migrate(struct rg_config *cfg, char **args, const struct options *o);
static int run_report(struct rg_config *cfg, char **args, const struct options *o);
static int run_reload_cache(struct rg_config *cfg, char **args, const struct options *o);
static int run_show(struct rg_config *cfg, char **args, const struct options *o);
static int run_reset(struct rg_config *cfg, char **args, const struct options *o);
static int run_set_quota(struct rg_config *cfg, char **args, const struct options *o);
static int run_clear(struct rg_config *cfg, char **args, const struct options *o);
static int run_stop(struct rg_config *cfg, char **args, const struct options *o);
static int run_reload(struct rg_config *cfg, char **args, const struct options *o);
static int run_reopen_logs(struct rg_config *cfg, char **args, const struct options *o);
static bool set_quota_args(char **args);

/* The commands: the usage, the unknown-command message, the argument
 * check and the dispatch all come from this table. */
static const struct command {
    const char *name;
    const char *synopsis;           /* the name and its arguments, for the usage */
    int args;                       /* how many arguments it takes */
    bool daemon;                    /* the daemon: takes the configuration, keeps root */
    bool (*check)(char **args);     /* arguments checked before the configuration is read, or NULL */
    int (*run)(struct rg_config *cfg, char **args, const struct options *o);
    const char *help;               /* continuation lines indented by 16 */
} commands[] = {
    {"run", "run", 0, true, NULL, run_daemon, "run the daemon (default); daemonizes unless -f"},
    {"status", "status", 0, false, NULL, run_status, "print the running daemon's cache and counters"},
    {"blocked", "blocked", 0, false, NULL, run_blocked, "the senders whose next message is refused, why and since when"},
    {"top", "top", 0, false, NULL, run_top,
     "live view: requests, accepted and blocked per second, writer, workers,\n"
     "                the senders by messages in the last minute (keys m, u, b; q quits)"},
    {"cleanup", "cleanup", 0, false, NULL, run_cleanup, "reset the period counters and purge old messages"},
    {"migrate", "migrate", 0, false, NULL, run_migrate, "create or upgrade the database schema"},
    {"report", "report", 0, false, NULL, run_report,
     "send the report of the senders blocked this period (--stdout: print it)"},
    {"reload-cache", "reload-cache", 0, false, NULL, run_reload_cache,
     "make the running daemon re-read every sender from the database"},
    {"show", "show SENDER", 1, false, NULL, run_show, "print one sender's quota, counters and percent used"},
    {"reset", "reset SENDER", 1, false, NULL, run_reset,
     "reset one sender's period counters (and quota, unless locked): unblocks it"},
    {"set-quota", "set-quota SENDER N [--locked]", 2, false, set_quota_args, run_set_quota,
     "set one sender's quota (--locked: kept across resets);\n"
     "                unblocks only if its counters are now below N: else `reset` it"},
    {"clear", "clear LOGIN", 1, false, NULL, run_clear,
     "end a login's hijacked-account episode (signals) and undo its lock"},
    {"stop", "stop", 0, false, NULL, run_stop, "stop the running daemon and wait until it has gone"},
    {"reload", "reload", 0, false, NULL, run_reload, "make the running daemon re-read its configuration"},
    {"reopen-logs", "reopen-logs", 0, false, NULL, run_reopen_logs,
     "make the running daemon reopen its log file (logrotate)"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* The help: synopsis, the command table, the options, the exit codes. */
static void usage(FILE *out)
{
    fprintf(out,
            "usage: rateguard [-c FILE] [-f] [-t] [--get-config NAME] [--json|--prometheus] [COMMAND [ARGS]]\n"
            "       rateguard [-c FILE] top [-b] [-n FRAMES] [-d SECONDS] [-o m|u|b] [-r ROWS]\n"
            "\n"
            "Postfix policy daemon limiting messages and recipients per SASL sender.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-*s  %s\n", strlen(commands[i].synopsis) <= 12 ? 12 : 0, commands[i].synopsis,
                commands[i].help);
    fprintf(out,
            "\n"
            "Options:\n"
            "  -c, --config FILE    configuration file (default " RATEGUARD_DEFAULT_CONFIG ")\n"
            "  -f, --foreground     do not daemonize, log to stderr as well\n"
            "  -t, --test           check the configuration and exit\n"
            "      --get-config NAME  print one effective setting, e.g. quota.default\n"
            "      --json           status, show, blocked: print JSON\n"
            "      --prometheus     status: print Prometheus text-format metrics\n"
            "      --locked         set-quota: lock the quota\n"
            "      --stdout         report: print instead of sending\n"
            "  -q, --quiet          commands: only warnings and errors on stderr (cron)\n"
            "  -b, --batch          top: plain frames on stdout, no terminal\n"
            "  -n, --frames N       top: stop after N frames (-b alone: 1)\n"
            "  -d, --delay SECONDS  top: between frames (default 1, 0.1 to 3600)\n"
            "  -o, --order m|u|b    top: by messages in the last minute (default), use of quota, blocked first\n"
            "  -r, --rows N         top: senders shown (default the terminal's height; -b: 20; at most 200)\n"
            "  -h, --help           this help\n"
            "  -V, --version        print the version\n"
            "\n"
            "Exit codes: 0 ok, 1 unknown --get-config name or sender, 2 user or group missing,\n"
            "3 already running (status: not running), 4 bad listen address,\n"
            "5 configuration missing or invalid, 6 runtime error, 8 cleanup error,\n"
            "9 cleanup done but the report not sent (report: not sent),\n"
            "64 bad command line.\n");
}

/* One of top's options with an argument into o->top; false after a
 * message on stderr when the argument is not one. */
static bool top_option(struct options *o, int opt, const char *arg)
{
    unsigned long n;
    char *end;
    switch (opt) {
    case 'n':
        if (parse_ulong(arg, 1000000000, &n) && n > 0) {
            o->top.frames = n;
            return true;
        }
        fprintf(stderr, "rateguard: top: -n '%s': expected a number of frames, 1 or more\n", arg);
        return false;
    case 'r':
        if (parse_ulong(arg, STATUS_TOP_ROWS_MAX, &n) && n > 0) {
            o->top.rows = (unsigned)n;
            return true;
        }
        fprintf(stderr, "rateguard: top: -r '%s': expected 1 to %d rows\n", arg, STATUS_TOP_ROWS_MAX);
        return false;
    case 'o':
        if (top_order_parse(arg, &o->top.order))
            return true;
        fprintf(stderr, "rateguard: top: -o '%s': expected m (messages in the last minute), u (use of quota) "
                        "or b (blocked first)\n", arg);
        return false;
    default: {
        errno = 0;
        double s = strtod(arg, &end);
        if (errno == 0 && end != arg && *end == '\0' && s >= 0.1 && s <= 3600) {
            o->top.delay_ms = (unsigned long)(s * 1000 + 0.5);
            return true;
        }
        fprintf(stderr, "rateguard: top: -d '%s': expected seconds, 0.1 to 3600\n", arg);
        return false;
    }
    }
}

/* The options into *o: -1 to go on, else the exit code (help, version,
 * a bad option). */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"foreground", no_argument, NULL, 'f'},
        {"test", no_argument, NULL, 't'},
        {"get-config", required_argument, NULL, 'g'},
        {"json", no_argument, NULL, 'j'},
        {"prometheus", no_argument, NULL, 'P'},
        {"locked", no_argument, NULL, 'L'},
        {"stdout", no_argument, NULL, 'S'},
        {"quiet", no_argument, NULL, 'q'},
        {"list-config", no_argument, NULL, 'D'},     /* every setting's default (t/75); not in --help */
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"batch", no_argument, NULL, 'b'},
        {"frames", required_argument, NULL, 'n'},
        {"delay", required_argument, NULL, 'd'},
        {"order", required_argument, NULL, 'o'},
        {"rows", required_argument, NULL, 'r'},
        /* Not in --help: every setting with its default, for the test
         * that holds rateguard.conf and rateguard.conf(5) to the table. */
        {"list-config", no_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    int opt;

    while ((opt = getopt_long(argc, argv, "c:ftg:qhVbn:d:o:r:", longopts, NULL)) != -1) {
        if (strchr("bndor", opt) && o->top_option[0] == '\0')
            memcpy(o->top_option, (char[]){'-', (char)opt, '\0'}, 3);
        if (strchr("ndor", opt) && !top_option(o, opt, optarg))
            return RG_EXIT_USAGE;
        switch (opt) {
        case 'c': o->config_path = optarg; break;
        case 'f': o->foreground = true; break;
        case 't': o->test_only = true; break;
        case 'g': o->get_config = optarg; break;
        case 'j': o->json = true; break;
        case 'P': o->prometheus = true; break;
        case 'L': o->locked = true; break;
        case 'S': o->to_stdout = true; break;
        case 'q': o->quiet = true; break;
        case 'h': usage(stdout); return RG_EXIT_OK;
        case 'V': printf("rateguard %s\n", RATEGUARD_VERSION); return RG_EXIT_OK;
        case 'D': config_print_defaults(stdout); return RG_EXIT_OK;
        case 'b': o->top.batch = true; break;
        case 'n': case 'd': case 'o': case 'r': break;      /* top_option() took them */
        default: usage(stderr); return RG_EXIT_USAGE;
        }
    }
    return -1;
}

/* The command after the options ("run" if none) with its arguments in
 * *args, checked against the table; NULL after a message on stderr. */
static const struct command *parse_command(int argc, char **argv, char ***args)
{
    const char *name = optind < argc ? argv[optind++] : "run";
    const struct command *cmd = NULL;
    for (size_t i = 0; i < N_COMMANDS && cmd == NULL; i++)
        if (strcmp(name, commands[i].name) == 0)
            cmd = &commands[i];
    if (cmd == NULL) {
        fprintf(stderr, "rateguard: unknown command '%s' (", name);
        for (size_t i = 0; i < N_COMMANDS; i++)
            fprintf(stderr, "%s%s", i ? ", " : "", commands[i].name);
        fprintf(stderr, ")\n");
        return NULL;
    }
    int want = cmd->args;
    if (argc - optind != want) {
        if (argc - optind > want)
            fprintf(stderr, "rateguard: unexpected argument '%s'\n", argv[optind + want]);
        else
            fprintf(stderr, "rateguard: %s needs %d argument%s\n", name, want, want == 1 ? "" : "s");
        return NULL;
    }
    *args = argv + optind;
    if (cmd->check && !cmd->check(*args))
        return NULL;
    return cmd;
}

/* set-quota's N: a quota from 0 to 4294967295 (false: not one, said on stderr). */
static bool set_quota_args(char **args)
{
    unsigned long n;
    if (parse_ulong(args[1], UINT32_MAX, &n))
        return true;
    fprintf(stderr, "rateguard: set-quota: '%s' is not a quota (0 to 4294967295)\n", args[1]);
    return false;
}

/* run: the master owns and frees the configuration. */
static int run_daemon(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)args;
    return master_run(cfg, o->foreground, o->config_path);
}

/* status: text, JSON or Prometheus. */
static int run_status(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)args;
    return command_status(cfg, o->prometheus ? STATUS_PROMETHEUS : o->json ? STATUS_JSON : STATUS_TEXT);
}

/* top: live, or -b frames. */
static int run_top(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)args;
    return command_top(cfg, &o->top);
}

/* blocked: text or JSON. */
static int run_blocked(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)args;
    return command_status(cfg, o->json ? STATUS_BLOCKED_JSON : STATUS_BLOCKED_TEXT);
}

/* cleanup: the period reset and the purge. */
static int run_cleanup(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)args, (void)o;
    return command_cleanup(cfg);
}

/* migrate: the database schema. */
static int run_migrate(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)args, (void)o;
    return command_migrate(cfg);
}

/* report: sent, or printed with --stdout. */
static int run_report(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)args;
    return report_command(cfg, o->to_stdout);
}

/* reload-cache: the daemon re-reads every sender. */
static int run_reload_cache(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)args, (void)o;
    return command_reload_cache(cfg);
}

/* show SENDER. */
static int run_clear(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)o;
    return command_clear(cfg, args[0]);
}

static int run_show(struct rg_config *cfg, char **args, const struct options *o)
{
    return command_show(cfg, args[0], o->json);
}

/* reset SENDER. */
static int run_reset(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)o;
    return command_reset_sender(cfg, args[0]);
}

/* set-quota SENDER N (N checked by set_quota_args). */
static int run_set_quota(struct rg_config *cfg, char **args, const struct options *o)
{
    unsigned long n = 0;
    parse_ulong(args[1], UINT32_MAX, &n);
    return command_set_quota(cfg, args[0], (uint32_t)n, o->locked);
}

/* stop: and wait until the daemon has gone. */
static int run_stop(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)args, (void)o;
    return command_stop(cfg);
}

/* reload: SIGHUP to the daemon. */
static int run_reload(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)args, (void)o;
    return command_signal(cfg, SIGHUP, "reload");
}

/* reopen-logs: SIGUSR2 to the daemon. */
static int run_reopen_logs(struct rg_config *cfg, char **args, const struct options *o)
{
    (void)args, (void)o;
    return command_signal(cfg, SIGUSR2, "reopen-logs");
}

/* --get-config NAME: print one effective setting. */
static int print_config(const struct rg_config *cfg, const char *name)
{
    if (strcmp(name, "config_file") == 0)
        printf("%s\n", cfg->path);
    else if (!config_print_value(cfg, name, stdout)) {
        fprintf(stderr, "rateguard: unknown configuration parameter '%s'\n", name);
        return RG_EXIT_UNKNOWN_PARAM;
    }
    return RG_EXIT_OK;
}

/* An operator command: as the daemon's user, logging to stderr as well. */
static int operator_command(const struct command *cmd, struct rg_config *cfg, char **args,
                            const struct options *o)
{
    /* Root trusts nothing the daemon's user can write: the pidfile, the
     * dumps, the process holding the pidfile. Commands run as that user,
     * so such a file or process can only mislead them about itself. */
    if (geteuid() == 0) {
        uid_t uid;
        gid_t gid;
        if (!privileges_resolve(cfg->user, cfg->group, &uid, &gid))
            return RG_EXIT_NO_USER;
        privileges_drop(uid, gid);
    }
    /* Operator commands log to stderr as well as to the configured sinks
     * (with --quiet only warnings and worse). */
    if (o->quiet)
        log_console_quiet();
    if (!log_open(cfg, true))
        log_error("%s", log_file_refusal());
    int rc = cmd->run(cfg, args, o);
    log_close();
    return rc;
}

/* Load the configuration and do what the command line asks: print a
 * setting, check the configuration, run the daemon or a command. */
static int load_and_run(const struct options *o, const struct command *cmd, char **args)
{
    char err[1024];
    int exit_code;
    struct rg_config *cfg = config_load(o->config_path, err, sizeof(err), &exit_code);
    if (cfg == NULL) {
        fprintf(stderr, "rateguard: %s\n", err);
        return exit_code;
    }

    int rc = RG_EXIT_OK;
    if (o->get_config) {
        rc = print_config(cfg, o->get_config);
    } else if (o->test_only) {
        printf("%s: configuration OK\n", cfg->path);
    } else if (cmd->daemon) {
        rc = cmd->run(cfg, args, o);
        cfg = NULL;                 /* the master owns and frees it */
    } else {
        rc = operator_command(cmd, cfg, args, o);
    }
    config_free(cfg);
    return rc;
}

/* The command line: options, the command, then the configuration. */
int main(int argc, char **argv)
{
    /* Files the daemon and the commands create (dumps, queues, logs) are
     * for the daemon's user and group only. */
    umask(027);
    /* Before the configuration (and its passwords) is read: a process of
     * the same user must not read them out of this one's memory. */
    privileges_no_dump();
    struct options o = {.config_path = RATEGUARD_DEFAULT_CONFIG,
                        .top = {.delay_ms = 1000, .order = STATUS_TOP_MESSAGES}};
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0)
        return rc;
    char **args = NULL;
    const struct command *cmd = parse_command(argc, argv, &args);
    if (cmd == NULL)
        return RG_EXIT_USAGE;
    if (o.top_option[0] && cmd->run != run_top) {
        fprintf(stderr, "rateguard: %s is an option of top, not of %s\n", o.top_option, cmd->name);
        return RG_EXIT_USAGE;
    }

    /* The absolute path: it survives daemonize()'s chdir and names this
     * instance's state files. */
    char *absolute = realpath(o.config_path, NULL);
    if (absolute)
        o.config_path = absolute;
    rc = load_and_run(&o, cmd, args);
    free(absolute);
    return rc;
}
