/*
 * main.c - command line: options, loading the configuration, and
 * dispatching to the daemon or an operator command. Exit codes are the
 * contract documented in rateguard.h, README.md and rateguard(8).
 */
#include "commands.h"
#include "config.h"
#include "log.h"
#include "master.h"
#include "privileges.h"
#include "report.h"
#include "rateguard.h"
#include "util.h"

#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RG_EXIT_USAGE 64   /* sysexits EX_USAGE: bad command line */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: rateguard [-c FILE] [-f] [-t] [--get-config NAME] [--json|--prometheus] [COMMAND [ARGS]]\n"
            "\n"
            "Postfix policy daemon limiting messages and recipients per SASL sender.\n"
            "\n"
            "Commands:\n"
            "  run       run the daemon (default); daemonizes unless -f\n"
            "  status    print the running daemon's cache and counters\n"
            "  blocked   the senders whose next message is refused, why and since when\n"
            "  cleanup   reset the period counters and purge old messages\n"
            "  migrate   create or upgrade the database schema\n"
            "  report    send the report of the senders blocked this period (--stdout: print it)\n"
            "  reload-cache  make the running daemon re-read every sender from the database\n"
            "  show SENDER   print one sender's quota, counters and percent used\n"
            "  reset SENDER  reset one sender's period counters (and quota, unless locked): unblocks it\n"
            "  set-quota SENDER N [--locked]  set one sender's quota (--locked: kept across resets);\n"
            "                unblocks only if its counters are now below N: else `reset` it\n"
            "  stop      stop the running daemon and wait until it has gone\n"
            "  reload    make the running daemon re-read its configuration\n"
            "  reopen-logs  make the running daemon reopen its log file (logrotate)\n"
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
            "  -h, --help           this help\n"
            "  -V, --version        print the version\n"
            "\n"
            "Exit codes: 0 ok, 1 unknown --get-config name or sender, 2 user or group missing,\n"
            "3 already running (status: not running), 4 bad listen address,\n"
            "5 configuration missing or invalid, 6 runtime error, 8 cleanup error,\n"
            "9 cleanup done but the report not sent (report: not sent),\n"
            "64 bad command line.\n");
}

int main(int argc, char **argv)
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
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        /* Not in --help: every setting with its default, for the test
         * that holds rateguard.conf and rateguard.conf(5) to the table. */
        {"list-config", no_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    /* Files the daemon and the commands create (dumps, queues, logs) are
     * for the daemon's user and group only. */
    umask(027);
    /* Before the configuration (and its passwords) is read: a process of
     * the same user must not read them out of this one's memory. */
    privileges_no_dump();
    const char *config_path = RATEGUARD_DEFAULT_CONFIG;
    const char *get_config = NULL;
    bool foreground = false, test_only = false, json = false, prometheus = false, locked = false;
    bool to_stdout = false;
    int opt;

    while ((opt = getopt_long(argc, argv, "c:ftg:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'f': foreground = true; break;
        case 't': test_only = true; break;
        case 'g': get_config = optarg; break;
        case 'j': json = true; break;
        case 'P': prometheus = true; break;
        case 'L': locked = true; break;
        case 'S': to_stdout = true; break;
        case 'h': usage(stdout); return RG_EXIT_OK;
        case 'V': printf("rateguard %s\n", RATEGUARD_VERSION); return RG_EXIT_OK;
        case 'D': config_print_defaults(stdout); return RG_EXIT_OK;
        default: usage(stderr); return RG_EXIT_USAGE;
        }
    }
    /* Commands and how many arguments each takes. */
    static const struct {
        const char *name;
        int args;
    } commands[] = {{"run", 0}, {"status", 0}, {"cleanup", 0}, {"migrate", 0}, {"reload-cache", 0},
                    {"show", 1}, {"reset", 1}, {"set-quota", 2}, {"stop", 0}, {"reload", 0},
                    {"reopen-logs", 0}, {"report", 0}, {"blocked", 0}};
    const char *command = optind < argc ? argv[optind++] : "run";
    int want = -1;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(command, commands[i].name) == 0)
            want = commands[i].args;
    if (want < 0) {
        fprintf(stderr, "rateguard: unknown command '%s' (run, status, cleanup, migrate, reload-cache, show, "
                        "reset, set-quota, stop, reload, reopen-logs, report, blocked)\n", command);
        return RG_EXIT_USAGE;
    }
    char **args = argv + optind;
    if (argc - optind != want) {
        if (argc - optind > want)
            fprintf(stderr, "rateguard: unexpected argument '%s'\n", argv[optind + want]);
        else
            fprintf(stderr, "rateguard: %s needs %d argument%s\n", command, want, want == 1 ? "" : "s");
        return RG_EXIT_USAGE;
    }
    unsigned long new_quota = 0;
    if (strcmp(command, "set-quota") == 0 && !parse_ulong(args[1], UINT32_MAX, &new_quota)) {
        fprintf(stderr, "rateguard: set-quota: '%s' is not a quota (0 to 4294967295)\n", args[1]);
        return RG_EXIT_USAGE;
    }

    /* The absolute path: it survives daemonize()'s chdir and names this
     * instance's state files. */
    char *absolute = realpath(config_path, NULL);
    if (absolute)
        config_path = absolute;

    char err[1024];
    int exit_code;
    struct rg_config *cfg = config_load(config_path, err, sizeof(err), &exit_code);
    if (cfg == NULL) {
        fprintf(stderr, "rateguard: %s\n", err);
        free(absolute);
        return exit_code;
    }

    int rc = RG_EXIT_OK;
    if (get_config) {
        if (strcmp(get_config, "config_file") == 0)
            printf("%s\n", cfg->path);
        else if (!config_print_value(cfg, get_config, stdout)) {
            fprintf(stderr, "rateguard: unknown configuration parameter '%s'\n", get_config);
            rc = RG_EXIT_UNKNOWN_PARAM;
        }
    } else if (test_only) {
        printf("%s: configuration OK\n", cfg->path);
    } else if (strcmp(command, "run") == 0) {
        rc = master_run(cfg, foreground, config_path);
        cfg = NULL; /* the master owns and frees it */
    } else {
        /* Root trusts nothing the daemon's user can write: the pidfile, the
         * dumps, the process holding the pidfile. Commands run as that user,
         * so such a file or process can only mislead them about itself. */
        uid_t uid;
        gid_t gid;
        if (geteuid() == 0) {
            if (!privileges_resolve(cfg->user, cfg->group, &uid, &gid)) {
                config_free(cfg);
                free(absolute);
                return RG_EXIT_NO_USER;
            }
            privileges_drop(uid, gid);
        }
        /* Operator commands log to stderr as well as to the configured sinks. */
        if (!log_open(cfg, true))
            log_error("%s", log_file_refusal());
        if (strcmp(command, "migrate") == 0)
            rc = command_migrate(cfg);
        else if (strcmp(command, "cleanup") == 0)
            rc = command_cleanup(cfg);
        else if (strcmp(command, "reload-cache") == 0)
            rc = command_reload_cache(cfg);
        else if (strcmp(command, "show") == 0)
            rc = command_show(cfg, args[0], json);
        else if (strcmp(command, "reset") == 0)
            rc = command_reset_sender(cfg, args[0]);
        else if (strcmp(command, "set-quota") == 0)
            rc = command_set_quota(cfg, args[0], (uint32_t)new_quota, locked);
        else if (strcmp(command, "stop") == 0)
            rc = command_stop(cfg);
        else if (strcmp(command, "reload") == 0)
            rc = command_signal(cfg, SIGHUP, "reload");
        else if (strcmp(command, "reopen-logs") == 0)
            rc = command_signal(cfg, SIGUSR2, "reopen-logs");
        else if (strcmp(command, "report") == 0)
            rc = report_command(cfg, to_stdout);
        else if (strcmp(command, "blocked") == 0)
            rc = command_status(cfg, json ? STATUS_BLOCKED_JSON : STATUS_BLOCKED_TEXT);
        else
            rc = command_status(cfg, prometheus ? STATUS_PROMETHEUS : json ? STATUS_JSON : STATUS_TEXT);
        log_close();
    }
    config_free(cfg);
    free(absolute);
    return rc;
}
