/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * top.c - `rateguard top`: every second, the running daemon's requests,
 * accepted and blocked per second, writer lag, workers, stress mode, then
 * the senders in one ordering. Owns the terminal while it runs (non
 * canonical, no echo, the alternate screen, no line wrap), and gives it
 * back as it found it on `q`, end of input, INT, TERM and HUP.
 *
 * Choices:
 * - The master chooses the senders (status.c's top dumps): the cache is
 *   an anonymous mapping this process cannot attach to, and copying every
 *   sender each second would cost what top must not. A dump lists at most
 *   the rows shown (the terminal's height, capped at STATUS_TOP_ROWS_MAX),
 *   so a frame costs the master one walk of the cache and a comparison
 *   per sender.
 * - The rates are the difference of two successive dumps' counters over
 *   the master's own clock between them; the first frame has none yet and
 *   shows "-" (batch too: its first frame is the counters alone).
 * - Everything shown from the dump is either parsed as a number or passes
 *   through text_print_escaped(): the dump is the daemon user's file, the
 *   senders are anyone's bytes, and root's terminal obeys neither.
 * - Batch (-b) prints plain frames with no terminal codes, separated by a
 *   blank line; it never reads stdin.
 */
#include "top.h"
#include "commands.h"
#include "config.h"
#include "pidfile.h"
#include "rateguard.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define TOP_HEADER_LINES 7      /* the lines above the senders, the column titles and the input line included */
#define TOP_BATCH_ROWS 20
#define TOP_KEY_MAX (4 * 142 + 1)      /* an escaped cache key (CACHE_KEY_SIZE bytes, each at most 4) */

/* One sender line of a dump. */
struct top_sender {
    unsigned long minute, msgs, msg_limit, rcpts, rcpt_limit;
    unsigned long long use;     /* per mille; >= 4294967295: a limit of 0 */
    char state[16];
    char key[TOP_KEY_MAX];      /* escaped by the master; printed through text_print_escaped */
};

/* What one dump says. */
struct top_frame {
    long long time_us;
    long uptime, pid;
    unsigned long long served, accepted, blocked;
    unsigned long busy, idle, running, min, max;
    unsigned long long depth, lag_ms;
    int db_up, stress;
    long stress_for;
    unsigned long used, capacity;
    size_t count;
    struct top_sender senders[STATUS_TOP_ROWS_MAX];
};

bool top_order_parse(const char *name, enum status_format *order)
{
    static const struct {
        const char *name;
        enum status_format order;
    } names[] = {{"m", STATUS_TOP_MESSAGES}, {"u", STATUS_TOP_QUOTA}, {"b", STATUS_TOP_BLOCKED}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i].name) == 0) {
            *order = names[i].order;
            return true;
        }
    return false;
}

/* "requests served N counted N accepted N blocked N ...": the three shown. */
static void parse_requests(struct top_frame *fr, const char *line)
{
    char name[32];
    unsigned long long v;
    int n;
    for (const char *p = line; sscanf(p, " %31s %llu%n", name, &v, &n) == 2; p += n) {
        if (strcmp(name, "served") == 0)
            fr->served = v;
        else if (strcmp(name, "accepted") == 0)
            fr->accepted = v;
        else if (strcmp(name, "blocked") == 0)
            fr->blocked = v;
    }
}

/* A sender line; false when it is not one. */
static bool parse_sender(struct top_sender *s, const char *line)
{
    int at = 0;
    if (sscanf(line, "%lu %lu %lu %lu %lu %llu %15s %n", &s->minute, &s->msgs, &s->msg_limit, &s->rcpts,
               &s->rcpt_limit, &s->use, s->state, &at) != 7 || at == 0)
        return false;
    str_copy(s->key, line + at, sizeof(s->key));
    s->key[strcspn(s->key, "\n")] = '\0';
    return true;
}

/* The dump into *fr; false when it is not a top dump of this version. */
static bool parse_frame(FILE *f, struct top_frame *fr, size_t rows)
{
    char *line = NULL;
    size_t cap = 0;
    int version = 0;
    memset(fr, 0, sizeof(*fr));
    if (getline(&line, &cap, f) < 0 || sscanf(line, "top %d", &version) != 1 || version != STATUS_TOP_VERSION) {
        free(line);
        return false;
    }
    while (getline(&line, &cap, f) >= 0) {
        if (strncmp(line, "sender ", 7) == 0) {
            if (fr->count < rows && parse_sender(&fr->senders[fr->count], line + 7))
                fr->count++;
        } else if (strncmp(line, "requests ", 9) == 0) {
            parse_requests(fr, line + 8);
        } else {
            /* one kind of figure per line; a line of none is skipped */
            (void)(sscanf(line, "time %lld", &fr->time_us) == 1 || sscanf(line, "uptime %ld", &fr->uptime) == 1 ||
                   sscanf(line, "pid %ld", &fr->pid) == 1 ||
                   sscanf(line, "workers %lu %lu %lu %lu %lu", &fr->busy, &fr->idle, &fr->running, &fr->min,
                          &fr->max) == 5 ||
                   sscanf(line, "database %llu %llu %d", &fr->depth, &fr->lag_ms, &fr->db_up) == 3 ||
                   sscanf(line, "stress %d %ld", &fr->stress, &fr->stress_for) == 2 ||
                   sscanf(line, "cache %lu %lu", &fr->used, &fr->capacity) == 2);
        }
    }
    free(line);
    return true;
}

/* "12.5/s", or "-" with no earlier frame to compare with. */
static void rate_text(char *buf, size_t size, const struct top_frame *prev, const struct top_frame *cur,
                      unsigned long long now, unsigned long long before)
{
    double seconds = prev ? (double)(cur->time_us - prev->time_us) / 1e6 : 0;
    if (prev == NULL || seconds <= 0 || now < before)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.1f/s", (double)(now - before) / seconds);
}

static const char *order_title(enum status_format order)
{
    return order == STATUS_TOP_QUOTA     ? "by use of the nearest limit"
           : order == STATUS_TOP_BLOCKED ? "blocked first, then by messages in the last minute"
                                         : "by messages in the last minute";
}

/* The lines above the senders. */
static void render_header(FILE *out, const struct top_frame *prev, const struct top_frame *cur,
                          enum status_format order)
{
    char served[32], accepted[32], blocked[32];
    rate_text(served, sizeof(served), prev, cur, cur->served, prev ? prev->served : 0);
    rate_text(accepted, sizeof(accepted), prev, cur, cur->accepted, prev ? prev->accepted : 0);
    rate_text(blocked, sizeof(blocked), prev, cur, cur->blocked, prev ? prev->blocked : 0);
    fprintf(out, "rateguard top: pid %ld, up %ld s, senders %s\n", cur->pid, cur->uptime, order_title(order));
    fprintf(out, "requests: %s served, %s accepted, %s blocked (since start: %llu, %llu, %llu)\n", served, accepted,
            blocked, cur->served, cur->accepted, cur->blocked);
    fprintf(out, "writer: %llu queued, lag %llu.%03llu s, database %s\n", cur->depth, cur->lag_ms / 1000,
            cur->lag_ms % 1000, cur->db_up ? "up" : "DOWN");
    fprintf(out, "workers: %lu busy, %lu idle, %lu running (%lu..%lu); stress: ", cur->busy, cur->idle,
            cur->running, cur->min, cur->max);
    if (cur->stress)
        fprintf(out, "ON for %ld s\n", cur->stress_for);
    else
        fputs("off\n", out);
    fprintf(out, "cache: %lu of %lu entries used\n", cur->used, cur->capacity);
}

/* The senders: their last minute, period counts against their limits, use, state. */
static void render_senders(FILE *out, const struct top_frame *cur)
{
    fprintf(out, "%8s %15s %15s %6s %-7s %s\n", "LAST-MIN", "MESSAGES", "RECIPIENTS", "USED", "STATE", "SENDER");
    for (size_t i = 0; i < cur->count; i++) {
        const struct top_sender *s = &cur->senders[i];
        char msgs[32], rcpts[32], use[16];
        snprintf(msgs, sizeof(msgs), "%lu/%lu", s->msgs, s->msg_limit);
        snprintf(rcpts, sizeof(rcpts), "%lu/%lu", s->rcpts, s->rcpt_limit);
        if (s->use >= 4294967295ull)
            snprintf(use, sizeof(use), "-");
        else
            snprintf(use, sizeof(use), "%llu%%", s->use / 10);
        fprintf(out, "%8lu %15s %15s %6s ", s->minute, msgs, rcpts, use);
        text_print_escaped(out, s->state, strlen(s->state));
        fprintf(out, "%*s ", 7 - (int)(strlen(s->state) < 7 ? strlen(s->state) : 7), "");
        text_print_escaped(out, s->key, strlen(s->key));
        fputc('\n', out);
    }
}

/* The terminal as top found it, and whether a signal asked to stop. */
static struct termios saved_tty;
static bool tty_raw;
static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Back to the terminal as it was: line wrap, the normal screen, echo. */
static void tty_restore(void)
{
    if (!tty_raw)
        return;
    fputs("\033[?7h\033[?25h\033[?1049l", stdout);
    fflush(stdout);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    tty_raw = false;
}

/* Keys without Enter, no echo, the alternate screen; INT, TERM and HUP
 * only set a flag (no SA_RESTART: poll returns at once). */
static bool tty_setup(void)
{
    struct termios raw;
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) < 0) {
        fprintf(stderr, "rateguard: top: stdin and stdout must be a terminal (or use -b)\n");
        return false;
    }
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    raw = saved_tty;
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) < 0) {
        fprintf(stderr, "rateguard: top: tcsetattr: %s\n", strerror(errno));
        return false;
    }
    tty_raw = true;
    fputs("\033[?1049h\033[?7l\033[?25l", stdout);     /* alternate screen, no wrap, no cursor */
    return true;
}

/* The senders that fit the terminal, at least one. */
static unsigned tty_rows(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_row <= TOP_HEADER_LINES)
        return 1;
    unsigned n = (unsigned)ws.ws_row - TOP_HEADER_LINES;
    return n > STATUS_TOP_ROWS_MAX ? STATUS_TOP_ROWS_MAX : n;
}

/* Wait up to ms for a key: 'q' (or end of input) stops, m/u/b change the
 * ordering (and end the wait, so that it shows at once). */
static void tty_wait(unsigned long ms, enum status_format *order, bool *quit)
{
    int64_t until = clock_monotonic_ms() + (int64_t)ms;
    for (int64_t left = (int64_t)ms; left > 0 && !stop_requested; left = until - clock_monotonic_ms()) {
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int n = poll(&p, 1, (int)left);
        if (n <= 0)
            continue;           /* the time is up, or a signal (the loop looks at the flag) */
        char c;
        if (read(STDIN_FILENO, &c, 1) != 1 || c == 'q' || c == 'Q') {
            *quit = true;
            return;
        }
        if (top_order_parse((char[]){c, '\0'}, order))
            return;
    }
}

static void batch_wait(unsigned long ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (!stop_requested && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* One frame: ask the master, read its dump, print. False when the
 * daemon did not answer (said on stderr). */
static bool show_frame(const struct rg_config *cfg, pid_t pid, const struct top_options *o, enum status_format order,
                       struct top_frame *prev, struct top_frame *cur, bool first)
{
    unsigned rows = o->rows ? o->rows : o->batch ? TOP_BATCH_ROWS : tty_rows();
    FILE *f = command_dump(cfg, pid, order, rows);
    if (f == NULL)
        return false;
    bool ok = parse_frame(f, cur, rows);
    fclose(f);
    if (!ok) {
        fprintf(stderr, "rateguard: top: the daemon's dump is not a top dump of version %d\n", STATUS_TOP_VERSION);
        return false;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (m == NULL)
        return false;
    if (!o->batch)
        fputs("\033[H\033[2J", m);
    else if (!first)
        fputc('\n', m);
    render_header(m, first ? NULL : prev, cur, order);
    fputc('\n', m);
    render_senders(m, cur);
    fclose(m);
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    free(text);
    return true;
}

int command_top(const struct rg_config *cfg, const struct top_options *o)
{
    pid_t pid = pidfile_running(cfg->pidfile);
    if (pid == 0) {
        fprintf(stderr, "rateguard: not running (no daemon holds %s)\n", cfg->pidfile);
        return RG_EXIT_RUNNING;
    }
    if (!o->batch && !tty_setup())
        return RG_EXIT_RUNTIME;
    /* two frames, swapped: the one before gives the rates */
    struct top_frame *frames = xcalloc(2, sizeof(*frames));
    enum status_format order = o->order;
    unsigned long limit = o->frames ? o->frames : o->batch ? 1 : 0;
    bool quit = false, ok = true;
    for (unsigned long n = 0; ok && !quit && !stop_requested && (limit == 0 || n < limit); n++) {
        if (n > 0 && o->batch)
            batch_wait(o->delay_ms);
        else if (n > 0)
            tty_wait(o->delay_ms, &order, &quit);
        if (quit || stop_requested)
            break;
        ok = show_frame(cfg, pid, o, order, &frames[(n + 1) % 2], &frames[n % 2], n == 0);
    }
    bool shown = tty_raw;
    tty_restore();
    free(frames);
    if (!ok && shown)           /* the reason went to the alternate screen, gone with it */
        fprintf(stderr, "rateguard: top: pid %ld stopped answering\n", (long)pid);
    return ok ? RG_EXIT_OK : RG_EXIT_RUNTIME;
}
