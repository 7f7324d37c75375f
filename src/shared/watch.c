/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * watch.c - the hijacked-account watch of a login (see watch.h): the
 * origin of a message, the signals' thresholds and the episode.
 */
#include "watch.h"
#include "config.h"
#include "geo.h"
#include "netaddr.h"
#include "windows.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *const watch_action_names[] = {"log", "HOLD", "DEFER_IF_PERMIT", "REJECT", "lock"};
static const char *const signal_names[WATCH_SIGNALS] = {"spread", "countries", "rate", "probation"};

bool watch_origin(const struct rg_config *cfg, const char *client_address, struct watch_origin *o)
{
    struct sockaddr_storage ss;
    memset(o, 0, sizeof(*o));
    if (client_address == NULL || !sockaddr_parse_host(client_address, &ss))
        return false;
    const struct sockaddr *sa = (const struct sockaddr *)&ss;
    if (cfg->signals.allow_networks.count > 0 &&
        cidr_list_match(cfg->signal_allow_nets, cfg->signals.allow_networks.count, sa))
        return true;            /* counts toward the rate only */
    o->net_key = signals_network_key(sa, (unsigned)cfg->signals.ipv4_prefix, (unsigned)cfg->signals.ipv6_prefix);
    if (cfg->geo && !geo_country(cfg->geo, sa, o->country))
        o->country[0] = '\0';
    return true;
}

bool watch_exempt(const struct rg_config *cfg, const char *login)
{
    for (size_t i = 0; i < cfg->signals.exempt_logins.count; i++)
        if (strcasecmp(cfg->signals.exempt_logins.items[i], login) == 0)
            return true;
    return false;
}

enum watch_action watch_action_of(const struct rg_config *cfg, uint8_t bits)
{
    enum watch_action a = WATCH_LOG;
    for (int i = 0; i < WATCH_SIGNALS; i++)
        if ((bits & (1u << i)) && cfg->signal_actions[i] > a)
            a = (enum watch_action)cfg->signal_actions[i];
    return a;
}

bool watch_episode_open(const struct login_watch *w, const struct rg_config *cfg, uint32_t now_s)
{
    return w->episode != 0 && now_s < w->episode_last + (uint32_t)cfg->signals.window;
}

/* The signals' values and which are over their thresholds. */
static struct watch_eval evaluate(struct login_watch *w, const struct rg_config *cfg, int64_t now_us)
{
    const struct signals_params *p = &cfg->signal_params;
    struct watch_eval ev = {0};

    ev.spread = signals_spread(&w->s, p, now_us);
    ev.countries = signals_countries(&w->s, p, now_us);
    ev.rate = signals_rate(&w->s, p, now_us);
    if (cfg->signals.spread > 0 && ev.spread >= (unsigned)cfg->signals.spread)
        ev.tripped |= WATCH_SPREAD;
    if (cfg->geo && cfg->signals.countries > 0 && ev.countries >= (unsigned)cfg->signals.countries)
        ev.tripped |= WATCH_COUNTRIES;
    if (cfg->signals.rate_multiple > 0 && ev.rate.verdict == SIGNALS_RATE_JUMP)
        ev.tripped |= WATCH_JUMP;
    if (cfg->signals.probation > 0 && ev.rate.verdict == SIGNALS_RATE_PROBATION)
        ev.tripped |= WATCH_PROBATION;
    return ev;
}

/* The episode as it stands after the evaluation. */
static void settle(struct login_watch *w, const struct rg_config *cfg, uint32_t now_s, struct watch_eval *ev)
{
    bool open = watch_episode_open(w, cfg, now_s);
    ev->episode = open ? w->episode : 0;
    ev->action = w->locked ? WATCH_LOCK : watch_action_of(cfg, ev->episode);
}

struct watch_eval watch_message(struct login_watch *w, const struct rg_config *cfg, int64_t now_us,
                                const struct watch_origin *origin)
{
    uint32_t now_s = (uint32_t)(now_us / 1000000);
    if (origin)
        signals_observe(&w->s, &cfg->signal_params, now_us, origin->net_key, origin->country);
    struct watch_eval ev = evaluate(w, cfg, now_us);
    if (ev.tripped) {
        if (!watch_episode_open(w, cfg, now_s)) {
            /* A new episode (an ended one not yet seen by the writer ends here). */
            w->episode = 0;
            w->claimed = 0;
            w->episode_since = now_s;
        }
        ev.opened = (uint8_t)(ev.tripped & ~w->episode);
        w->episode |= ev.tripped;
        w->unclaimed |= ev.opened;
        w->episode_last = now_s;
    }
    settle(w, cfg, now_s, &ev);
    return ev;
}

struct watch_eval watch_peek(const struct login_watch *w, const struct rg_config *cfg, int64_t now_us)
{
    /* On a copy: reading the rate folds windows, which is the messages'
     * business (a reader's clock may be behind theirs: t/replay --clock). */
    struct login_watch copy = *w;
    struct watch_eval ev = evaluate(&copy, cfg, now_us);
    settle(&copy, cfg, (uint32_t)(now_us / 1000000), &ev);
    return ev;
}

const char *watch_names(uint8_t bits, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < WATCH_SIGNALS && n < size; i++)
        if (bits & (1u << i))
            n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? "+" : "", signal_names[i]);
    return buf;
}

void watch_evidence(const struct watch_eval *ev, const struct rg_config *cfg, char *buf, size_t size)
{
    long minutes = cfg->signals.window / 60;
    unsigned b100 = (unsigned)((uint64_t)ev->rate.baseline_q8 * 100 / SIGNALS_BASELINE_ONE);
    int n = snprintf(buf, size, "networks=%u%s in %ld min", ev->spread, ev->spread >= SIGNALS_NETS ? "+" : "",
                     minutes);
    if (cfg->geo && n >= 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, ", countries=%u%s", ev->countries,
                      ev->countries >= SIGNALS_COUNTRIES ? "+" : "");
    if (n >= 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, ", rate=%u, baseline=%u.%02u over %u window(s)", ev->rate.rate,
                 b100 / 100, b100 % 100, ev->rate.history);
}

void watch_clear(struct login_watch *w)
{
    signals_clear(&w->s);
    w->episode = w->unclaimed = w->claimed = w->locked = 0;
    w->episode_since = w->episode_last = w->written_last = 0;
}

bool watch_entry_in_use(const struct cache *c, const struct cache_entry *e)
{
    const struct login_watch *w = watch_of(c, e);
    if (w && (w->episode || w->locked || w->unclaimed))
        return true;
    return windows_in_use(cache_extra(c, e), cache_windows_size(c));
}
