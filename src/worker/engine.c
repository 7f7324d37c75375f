/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * engine.c - one request, start to finish. engine_answer() is the handler,
 * shaped like nginx's limit_req (handler -> lookup -> account), one small
 * function per step:
 *   1. counted_as(), exempt_logged(): only request=smtpd_access_policy in
 *      quota.protocol_state counts, under its sasl_username or,
 *      unauthenticated, under the client's address (prefix) when it lies
 *      in unauthenticated.networks; everything else gets action_accept, as
 *      do exempt users, domains and client networks (never counted);
 *   2. sender_storable(), recipient_count(), record_make(): validation and
 *      the write-back record;
 *   3. decide(): with a domain pool, pool_take() under the pool's lock;
 *      then decide_locked() under the sender's cache lock (no I/O): a
 *      Postfix instance already counted gets the same answer again;
 *      otherwise verdict_locked() (quota, windows, pool, recipient cap,
 *      dry run), notify_decide_locked() (first block, warning threshold),
 *      commit_locked() queues the write-back record (the commit point),
 *      count_locked() adds to the counters; then pool_settle();
 *   4. after the locks: decision_failed(), after_decision() (wake the
 *      writer, statistics), log_counted() (the anchor's line),
 *      decision_reply().
 * A failure of ours (cache full, queue full, a sender the database cannot
 * store) answers on_error and is logged and counted as an error.
 */
#include "engine.h"
#include "blockjournal.h"
#include "config.h"
#include "domains.h"
#include "log.h"
#include "minute.h"
#include "netaddr.h"
#include "policy.h"
#include "quota.h"
#include "shm.h"
#include "util.h"
#include "watch.h"
#include "windows.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define SENDER_MAX_CHARS 255    /* ratelimits.sender is varchar(255) */

/* What the locked section decided, for the log line and the reply. */
struct decision {
    struct msg_record *rec;
    uint64_t instance;
    struct wqueue *queue;
    struct wqueue *notify;      /* NULL: no webhook */
    const struct rg_config *cfg;
    const struct domain_default *domain;    /* the sender's domain defaults, or NULL */
    struct cache *cache;                    /* for the entry's sliding windows */
    /* results */
    bool duplicate, blocked, first_block, queue_full, notify_lost;
    bool missed;                /* the sender was not in the cache: its entry was made for this request */
    bool too_many_recipients;   /* over quota.max_recipients */
    bool would_block;           /* quota.dry_run turned a block into an accept */
    bool first_warning;         /* first message past quota.warning_percent */
    int window_hit;             /* index of the sliding window that blocked, -1 none */
    bool pool_blocked;          /* the domain's pool is used up (decided before) */
    bool watched;               /* the login's signals are kept (watch.h) */
    const struct watch_origin *origin;  /* where it came from; NULL: toward no signal */
    struct watch_eval watch;    /* the signals after this message */
    const char *test_now;       /* rateguard_test_now, used by test builds only */
    bool signal_hold, signal_blocked;   /* a signal's action held or refused it */
    bool journal_due;           /* the sender's block state changed: journal it after the lock */
    struct blockjournal_record journal;
    uint8_t block_action;       /* the sender's own action when blocked */
    uint32_t used, limit;       /* the count nearest its limit, for the log line */
};

/* Of the two counts, the one nearest its limit (PolicydRateGuard, one
 * quota for both: the larger count). */
static void nearest_limit(struct decision *d, const struct cache_entry *e, struct limits l)
{
    bool msg = (uint64_t)e->msg_counter * l.rcpt >= (uint64_t)e->rcpt_counter * l.msg;
    d->used = msg ? e->msg_counter : e->rcpt_counter;
    d->limit = msg ? l.msg : l.rcpt;
}

/* Queue a webhook notification (under the lock, with the counts it
 * reports: rcpt_after is the recipient counter after this message);
 * blocked 0 marks a QUOTA_WARNING, 1 the QUOTA_LIMIT_REACHED. */
static void notify_locked(struct decision *d, const struct cache_entry *e, bool blocked, uint32_t rcpt_after)
{
    struct msg_record n = *d->rec;
    n.quota = e->quota;
    n.quota_reset = e->quota_reset;
    n.used = rcpt_after;
    n.blocked = blocked;
    d->notify_lost = !wqueue_push(d->notify, &n);
}

/* The Postfix instance's hash, never 0 (0: the request names none). */
static uint64_t instance_hash(const char *s)
{
    if (*s == '\0')
        return 0;
    uint64_t h = fnv1a64(s, strlen(s));
    return h ? h : 1;
}

#ifdef RG_TEST_HOOKS
/* Test builds only (build/rateguard-testhooks): with
 * RATEGUARD_TEST_HOLD_LOCK="sender:milliseconds:pidfile", a counted message
 * of that sender holds its cache lock that long after queueing, having
 * written the worker's pid to pidfile, so a test can kill the worker
 * inside the critical section. Once only: not while pidfile exists. */
static void test_hold_lock(const char *sender)
{
    const char *spec = getenv("RATEGUARD_TEST_HOLD_LOCK");
    char who[256], pidfile[1024];
    long ms;

    if (spec == NULL || sscanf(spec, "%255[^:]:%ld:%1023s", who, &ms, pidfile) != 3 ||
        strcmp(who, sender) != 0)
        return;
    FILE *f = fopen(pidfile, "wx");
    if (f == NULL)
        return;
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
    usleep((useconds_t)ms * 1000);
}
/* Test builds only: the request's rateguard_test_now is the decision's
 * clock (t/replay --clock: a day of a trace in seconds). */
static int64_t decision_clock(const struct decision *d)
{
    long long t = d->test_now ? strtoll(d->test_now, NULL, 10) : 0;
    return t > 0 ? (int64_t)t : clock_realtime_us();
}
#else
#define test_hold_lock(sender) ((void)0)
#define decision_clock(d) clock_realtime_us()
#endif

/* A domain pool: its counters are a cache entry of their own ("@domain"),
 * taken before the sender's decision and settled after it, each under the
 * pool's own lock (never nested in the sender's). Taking reserves the
 * message's counts, so two messages decided at the same instant cannot
 * both take the pool's last free count; settling replaces the reservation
 * with what was really counted (nothing, if the sender's own decision or
 * an error said so). */
struct pool_use {
    const struct domain_default *domain;
    uint32_t rcpt;                          /* this message's recipients */
    uint32_t reserved_msg, reserved_rcpt;   /* taken by pool_take_locked */
    uint32_t msg_delta, rcpt_delta;         /* counted in the end */
    bool blocked;
};

/* Under the pool's lock: reserve the message's counts unless the pool is
 * used up (p->blocked). */
static void pool_take_locked(struct cache_entry *e, bool created, void *arg)
{
    struct pool_use *p = arg;
    if (created) {              /* counted from now; the next refresh adds the database's */
        e->quota = e->quota_reset = p->domain->pool_quota;
        e->locked = 1;
    }
    p->blocked = quota_sat_add(e->msg_counter, 1) > p->domain->pool_quota ||
                 quota_sat_add(e->rcpt_counter, p->rcpt) > p->domain->pool_quota;
    if (!p->blocked) {
        p->reserved_msg = 1;
        p->reserved_rcpt = p->rcpt;
        e->msg_counter = quota_sat_add(e->msg_counter, 1);
        e->rcpt_counter = quota_sat_add(e->rcpt_counter, p->rcpt);
    }
}

/* a - b, never below 0. */
static uint32_t minus(uint32_t a, uint32_t b)
{
    return a > b ? a - b : 0;
}

/* Under the pool's lock: the reservation replaced by what was counted. */
static void pool_settle_locked(struct cache_entry *e, bool created, void *arg)
{
    const struct pool_use *p = arg;
    (void)created;
    e->msg_counter = quota_sat_add(minus(e->msg_counter, p->reserved_msg), p->msg_delta);
    e->rcpt_counter = quota_sat_add(minus(e->rcpt_counter, p->reserved_rcpt), p->rcpt_delta);
    e->msg_total = quota_sat_add(e->msg_total, p->msg_delta);
    e->rcpt_total = quota_sat_add(e->rcpt_total, p->rcpt_delta);
}

/* A rule besides the quota blocks the message: counted as any blocked one. */
static void block_by_rule(struct quota_decision *q, bool count_blocked, uint32_t rcpt)
{
    if (q->blocked)
        return;
    q->blocked = true;
    q->msg_delta = count_blocked ? 1 : 0;
    q->rcpt_delta = count_blocked ? rcpt : 0;
}

/* The sliding windows of one entry, as many as shared memory was sized for. */
struct windows_use {
    struct window_counts *counts;   /* NULL when none */
    size_t n;
};

/* What the rules decided for this message, before anything is counted. */
struct verdict {
    struct quota_decision q;        /* what the answer and the counters get */
    bool quota_blocked;             /* the limits alone: what the webhook reports */
};

/* The notification flags after this message, and which fired first now. */
struct notified {
    uint8_t block, warning;         /* the entry's block_notified, warning_notified to be */
    bool first_block, first_warning;
};

/* A Postfix instance already counted gets the same answer again: true,
 * with d->duplicate and d->blocked set, if this is one. */
static bool duplicate_locked(struct decision *d, const struct cache_entry *e)
{
    for (int i = 0; d->instance && i < CACHE_INSTANCES; i++)
        if (e->instance[i] == d->instance) {
            d->duplicate = true;
            d->blocked = e->instance_blocked[i];
            return true;
        }
    return false;
}

/* The index of the first sliding window this message would pass, or -1. */
static int window_check_locked(const struct decision *d, const struct windows_use *w, int64_t now)
{
    const struct rg_config *cfg = d->cfg;
    for (size_t i = 0; i < w->n; i++)
        if (quota_sat_add(window_count(&w->counts[i], &cfg->window_specs[i], now), 1) > cfg->window_specs[i].limit)
            return (int)i;
    return -1;
}

/* The login's signals (watch.h): count the message, and apply the
 * episode's action unless a rule already blocked it. A lock sets the
 * quota to 0 at once; the writer makes it the row's. */
static void watch_locked(struct decision *d, struct cache_entry *e, struct quota_decision *q, int64_t now)
{
    struct login_watch *w = watch_of(d->cache, e);
    if (w == NULL)
        return;
    d->watch = watch_message(w, d->cfg, now, d->origin);
    if (d->cfg->quota.dry_run && d->watch.action != WATCH_LOG) {
        d->would_block = true;      /* monitor mode: no hold, no refusal, no lock */
        return;
    }
    if (d->watch.action == WATCH_LOCK) {     /* refused with the lock's reason, whatever else */
        w->locked = 1;
        e->quota = 0;
        e->locked = 1;
    } else if (d->watch.action == WATCH_LOG || q->blocked) {
        return;
    } else if (d->watch.action == WATCH_HOLD) {
        d->signal_hold = true;
        return;
    }
    d->signal_blocked = true;
    block_by_rule(q, d->cfg->quota.count_blocked, d->rec->rcpt_count);
}

/* Every rule against the entry's counts: the quota, the sliding windows,
 * the domain pool (decided before), the recipient cap, the signals; then
 * dry run turns a block or a hold into the counted accept it is. Sets the
 * decision's reasons. */
static struct verdict verdict_locked(struct decision *d, struct cache_entry *e, struct limits lim,
                                     const struct windows_use *w, int64_t now)
{
    const struct rg_config *cfg = d->cfg;
    uint32_t rcpt = d->rec->rcpt_count;
    struct verdict v = {.q = quota_decide(lim.msg, lim.rcpt, e->msg_counter, e->rcpt_counter, rcpt,
                                          cfg->quota.count_blocked)};

    d->window_hit = window_check_locked(d, w, now);
    if (d->window_hit >= 0 || d->pool_blocked)
        block_by_rule(&v.q, cfg->quota.count_blocked, rcpt);
    v.quota_blocked = v.q.blocked;
    d->too_many_recipients = cfg->quota.max_recipients > 0 && rcpt > (unsigned long)cfg->quota.max_recipients;
    if (d->too_many_recipients)
        block_by_rule(&v.q, cfg->quota.count_blocked, rcpt);
    if (d->watched)
        watch_locked(d, e, &v.q, now);
    if (cfg->quota.dry_run && (v.q.blocked || d->signal_hold)) {
        /* Monitor mode: what passes is counted as the accept it is. */
        d->would_block = true;
        d->signal_hold = d->signal_blocked = false;
        v.quota_blocked = v.q.blocked = false;
        v.q.msg_delta = 1;
        v.q.rcpt_delta = rcpt;
    }
    return v;
}

/* Which notifications this message fires (the first block, the first
 * warning of the period), recorded in the write-back record's
 * notified_set/notified_clear, and the webhook's queued. Decided before
 * the record is queued: it carries what they change in
 * ratelimits.notified, so that no restart or other host sends them again.
 * The webhook's is queued first: a process killed between the two leaves
 * it queued (sent at least once, perhaps again for the retried request),
 * never lost. */
static struct notified notify_decide_locked(struct decision *d, const struct cache_entry *e, struct limits lim,
                                            const struct verdict *v)
{
    uint32_t msg_after = quota_sat_add(e->msg_counter, v->q.msg_delta);
    uint32_t rcpt_after = quota_sat_add(e->rcpt_counter, v->q.rcpt_delta);
    unsigned pct = (unsigned)d->cfg->quota.warning_percent;
    struct notified n = {.block = e->block_notified, .warning = e->warning_notified};

    n.first_block = quota_first_block(v->quota_blocked, &n.block);
    n.first_warning = quota_first_block(quota_warning_reached(lim.msg, msg_after, pct) ||
                                            quota_warning_reached(lim.rcpt, rcpt_after, pct),
                                        &n.warning);
    d->rec->notified_set = (uint8_t)((n.block > e->block_notified ? NOTIFIED_BLOCK : 0) |
                                     (n.warning > e->warning_notified ? NOTIFIED_WARNING : 0));
    d->rec->notified_clear = (uint8_t)((n.block < e->block_notified ? NOTIFIED_BLOCK : 0) |
                                       (n.warning < e->warning_notified ? NOTIFIED_WARNING : 0));
    if (n.first_block && d->notify)
        notify_locked(d, e, true, rcpt_after);
    else if (n.first_warning && d->notify)
        notify_locked(d, e, false, rcpt_after);
    return n;
}

/* Queue the write-back record (the commit point) and remember the
 * instance: false, with d->queue_full, if the queue is full. Order matters
 * if this process dies here: once the record is queued the database will
 * count it; remembering the instance right after makes Postfix's retry of
 * the unanswered request a duplicate, not a second count. */
static bool commit_locked(struct decision *d, struct cache_entry *e)
{
    if (!wqueue_push(d->queue, d->rec)) {
        d->queue_full = true;
        return false;
    }
    if (d->instance) {
        e->instance[e->instance_next] = d->instance;
        e->instance_blocked[e->instance_next] = d->rec->blocked;
        e->instance_next = (uint8_t)((e->instance_next + 1) % CACHE_INSTANCES);
    }
    return true;
}

/* Add the committed message to the entry: windows, counters, totals, the
 * unwritten counts, the notification flags and since when it is full. If
 * these are lost (a death after the commit), the writer's refresh
 * restores them from the database. */
static void count_locked(const struct decision *d, struct cache_entry *e, struct limits lim,
                         const struct windows_use *w, const struct quota_decision *q,
                         const struct notified *n, int64_t now)
{
    const struct rg_config *cfg = d->cfg;
    for (size_t i = 0; i < w->n && q->msg_delta; i++)
        window_add(&w->counts[i], &cfg->window_specs[i], now, q->msg_delta);
    minute_add(&e->last_minute, now, 1);    /* every message decided, accepted or refused */
    e->msg_counter = quota_sat_add(e->msg_counter, q->msg_delta);
    e->rcpt_counter = quota_sat_add(e->rcpt_counter, q->rcpt_delta);
    e->msg_total = quota_sat_add(e->msg_total, q->msg_delta);
    e->rcpt_total = quota_sat_add(e->rcpt_total, q->rcpt_delta);
    e->unwritten_msg = quota_sat_add(e->unwritten_msg, q->msg_delta);
    e->unwritten_rcpt = quota_sat_add(e->unwritten_rcpt, q->rcpt_delta);
    e->block_notified = n->block;
    e->warning_notified = n->warning;
    if (!quota_next_refused(lim.msg, lim.rcpt, e->msg_counter, e->rcpt_counter))
        e->full_since = 0;
    else if (e->full_since == 0)
        e->full_since = (uint32_t)(now / 1000000);
    if ((d->rec->notified_set | d->rec->notified_clear) && e->notify_unwritten < UINT8_MAX)
        e->notify_unwritten++;
}

/* The sender's decision, a cache_apply() callback: runs under the sender's
 * stripe lock, so no I/O here. A duplicate gets its first answer; else
 * decide, queue the record, then count. */
static void decide_locked(struct cache_entry *e, bool created, void *arg)
{
    struct decision *d = arg;

    if (created) {
        e->quota = e->quota_reset = d->rec->quota_default;
        d->missed = true;
    }
    struct limits lim = limits_resolve(e, d->domain);
    d->block_action = lim.block_action;
    if (duplicate_locked(d, e)) {
        nearest_limit(d, e, lim);
        return;
    }
    /* Stamped under the lock, never before the entry's last reset, so the
     * writer's bookkeeping of queued counts stays exact. */
    int64_t now = decision_clock(d);
    d->rec->created_us = now > e->reset_us ? now : e->reset_us;
    struct windows_use w = {.n = windows_usable(d->cfg->quota.windows.count, cache_windows_size(d->cache))};
    w.counts = w.n ? cache_extra(d->cache, e) : NULL;
    bool was_full = e->full_since != 0, was_locked = e->locked;
    struct verdict v = verdict_locked(d, e, lim, &w, now);
    d->rec->blocked = v.q.blocked;
    d->rec->msg_delta = v.q.msg_delta;
    d->rec->rcpt_delta = v.q.rcpt_delta;
    struct notified n = notify_decide_locked(d, e, lim, &v);
    if (!commit_locked(d, e))
        return;
    test_hold_lock(d->rec->sender);
    count_locked(d, e, lim, &w, &v.q, &n, now);
    /* A change the counter snapshot must not miss (blockjournal.h). */
    if (n.first_block || n.first_warning || (!was_full && e->full_since) || (!was_locked && e->locked) ||
        d->watch.opened) {
        blockjournal_record_of(&d->journal, e, watch_of(d->cache, e), now);
        d->journal_due = true;
    }
    d->blocked = v.q.blocked;
    d->first_block = n.first_block;
    d->first_warning = n.first_warning;
    nearest_limit(d, e, lim);
}

/* "action=ACTION\n\n" into reply; its length. */
static size_t format_reply(const char *action, char *reply, size_t size)
{
    int n = snprintf(reply, size, "action=%s\n\n", action);
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

/* An error of ours: counted, answered on_error. */
static size_t answer_error(struct engine *eng, char *reply, size_t size)
{
    STAT_ADD(eng->shm, errors, 1);
    return format_reply(eng->cfg->on_error, reply, size);
}

/* The anchor's log line, with the right queue id whatever the concurrency:
 * every value comes from this request. */
static void log_counted(const struct policy_request *req, const struct decision *d, uint32_t rcpt,
                        const struct rg_config *cfg, const char *who)
{
    char qid[64], cname[128], caddr[64], helo[128], method[32], user[192], from[192], to[192];

    log_safe_copy(qid, sizeof(qid), req->queue_id[0] ? req->queue_id : "NOQUEUE", 40);
    log_safe_copy(cname, sizeof(cname), req->client_name[0] ? req->client_name : "unknown", 100);
    log_safe_copy(caddr, sizeof(caddr), req->client_address, 45);
    log_safe_copy(helo, sizeof(helo), req->helo_name, 100);
    log_safe_copy(method, sizeof(method), req->sasl_method, 20);
    log_safe_copy(user, sizeof(user), req->sasl_username, 160);
    log_safe_copy(from, sizeof(from), req->sender, 160);
    log_safe_copy(to, sizeof(to), req->recipient, 160);
    char warning[48] = "", window[64] = "", signal[96] = "", names[64];
    if (d->watch.episode)
        snprintf(signal, sizeof(signal), " (SIGNAL %s: %s)", watch_names(d->watch.episode, names, sizeof(names)),
                 d->would_block || d->watch.action == WATCH_LOG ? "log" : watch_action_names[d->watch.action]);
    if (d->window_hit >= 0)
        snprintf(window, sizeof(window), " (WINDOW %.40s)", cfg->quota.windows.items[d->window_hit]);
    if (d->first_warning && !d->first_block)
        snprintf(warning, sizeof(warning), " (QUOTA_WARNING %ld%%)", cfg->quota.warning_percent);
    log_info("%s: client=%s[%s], helo=%s, sasl_method=%s, sasl_username=%s, from=%s, to=%s, "
             "recipient_count=%u, curr_count=%u/%u, status=%s%s%s%s%s%s%s%s%s%s%s",
             qid, cname, caddr, helo, method, user, from, to, rcpt, d->used, d->limit,
             d->blocked ? "BLOCKED" : d->signal_hold ? "HELD" : "ACCEPTED", d->first_block ? " (QUOTA_LIMIT_REACHED)" : "",
             window, d->pool_blocked ? " (DOMAIN_POOL)" : "", d->too_many_recipients ? " (TOO_MANY_RECIPIENTS)" : "",
             d->would_block ? " (DRY_RUN: WOULD_BLOCK)" : "", warning, d->duplicate ? " (ALREADY_COUNTED)" : "",
             signal, req->sasl_username[0] ? "" : ", unauthenticated, counted as ", req->sasl_username[0] ? "" : who);
}

/* Why this request is exempt from counting, or NULL: its SASL user, the
 * domain of that user name, or the client's network. */
static const char *exemption(const struct rg_config *cfg, const struct policy_request *req)
{
    for (size_t i = 0; i < cfg->exempt.users.count; i++)
        if (strcasecmp(cfg->exempt.users.items[i], req->sasl_username) == 0)
            return "user";
    const char *at = strrchr(req->sasl_username, '@');
    for (size_t i = 0; at && i < cfg->exempt.domains.count; i++)
        if (strcasecmp(cfg->exempt.domains.items[i], at + 1) == 0)
            return "domain";
    struct sockaddr_storage client;
    if (cfg->exempt.networks.count > 0 && sockaddr_parse_host(req->client_address, &client) &&
        cidr_list_match(cfg->exempt_nets, cfg->exempt.networks.count, (const struct sockaddr *)&client))
        return "network";
    return NULL;
}

/* Who a counted request is counted as, and the defaults a new entry of it
 * starts with. name may point into client_counter: not to be copied. */
struct counted_as {
    const char *name;
    uint32_t quota_default;
    bool has_domain;
    struct domain_default domain;   /* the sender's domain defaults, if has_domain */
    char client_counter[64];
};

/* Whether the request is counted at all, and as whom: the SASL user (with
 * its domain's defaults: sender > domain > global), or an unauthenticated
 * client inside unauthenticated.networks by its address or network
 * prefix. Only request=smtpd_access_policy in quota.protocol_state counts. */
static bool counted_as(const struct rg_config *cfg, struct domain_table *domains,
                       const struct policy_request *req, struct counted_as *c)
{
    if (strcmp(req->request, "smtpd_access_policy") != 0 ||
        strcasecmp(req->protocol_state, cfg->quota.protocol_state) != 0)
        return false;
    c->name = req->sasl_username;
    c->quota_default = (uint32_t)cfg->quota.dflt;
    c->has_domain = false;
    if (c->name[0] != '\0') {
        /* a new sender starts with its domain's quota */
        c->has_domain = domains_lookup(domains, c->name, &c->domain);
        if (c->has_domain && c->domain.has_quota)
            c->quota_default = c->domain.quota;
        return true;
    }
    struct sockaddr_storage client;
    if (cfg->unauth.networks.count == 0 || !sockaddr_parse_host(req->client_address, &client) ||
        !cidr_list_match(cfg->unauth_nets, cfg->unauth.networks.count, (const struct sockaddr *)&client) ||
        !client_counter_name(req->client_address, (unsigned)cfg->unauth.ipv4_prefix,
                             (unsigned)cfg->unauth.ipv6_prefix, c->client_counter, sizeof(c->client_counter)))
        return false;
    c->name = c->client_counter;
    c->quota_default = (uint32_t)cfg->unauth.quota;
    return true;
}

/* An exempt request is logged and counted in the statistics, never
 * against a quota: true if the request is exempt. */
static bool exempt_logged(struct shm *shm, const struct rg_config *cfg, const struct policy_request *req)
{
    const char *exempt = exemption(cfg, req);
    if (exempt == NULL)
        return false;
    char qid[64], user[192], caddr[64];
    STAT_ADD(shm, exempt, 1);
    log_safe_copy(qid, sizeof(qid), req->queue_id[0] ? req->queue_id : "NOQUEUE", 40);
    log_safe_copy(user, sizeof(user), req->sasl_username, 160);
    log_safe_copy(caddr, sizeof(caddr), req->client_address, 45);
    log_info("%s: client=[%s], sasl_username=%s, status=EXEMPT (%s), not counted", qid, caddr, user, exempt);
    return true;
}

/* Whether the database can store the counted name (valid UTF-8, at most
 * 255 characters) and it is not a domain pool's ("@..."); if not, an
 * error of ours is logged. */
static bool sender_storable(const struct rg_config *cfg, const struct policy_request *req, const char *who,
                            const char *peer)
{
    long chars = utf8_chars(who);
    if (chars >= 0 && chars <= SENDER_MAX_CHARS && who[0] != '@')
        return true;
    char user[192];
    log_safe_copy(user, sizeof(user), req->sasl_username, 160);
    log_error("client %s: sasl_username=%s cannot be %s; answering %s", peer, user,
              chars < 0       ? "stored in the database (not valid UTF-8)"
              : who[0] == '@' ? "counted (names starting with @ are the domain pools')"
                              : "stored in the database (longer than 255 characters)",
              cfg->on_error);
    return false;
}

/* The request's recipient_count into *rcpt: one that is not a number
 * counts 0 recipients (a warning); one over POLICY_MAX_RECIPIENT_COUNT is
 * not believed (false: the request is answered on_error). */
static bool recipient_count(const struct rg_config *cfg, const struct policy_request *req, const char *peer,
                            unsigned long *rcpt)
{
    if (!parse_ulong(req->recipient_count, UINT32_MAX, rcpt)) {
        char raw[64];
        log_safe_copy(raw, sizeof(raw), req->recipient_count, 40);
        log_warning("client %s: queue_id=%s: recipient_count='%s' is not a number, counting 0 recipients",
                    peer, req->queue_id, raw);
        *rcpt = 0;
    } else if (*rcpt > POLICY_MAX_RECIPIENT_COUNT) {
        log_warning("client %s: queue_id=%s: recipient_count=%lu is over %d, not believed; answering %s",
                    peer, req->queue_id, *rcpt, POLICY_MAX_RECIPIENT_COUNT, cfg->on_error);
        return false;
    }
    return true;
}

/* The messages row's text, made safe for its utf8mb4 columns. The
 * addresses may be a whole request line long: static, as a worker serves
 * one request at a time (and the stack stays small). */
struct row_text {
    char msgid[256 * 4], caddr[46], cname[256 * 4];
};
static char row_from[POLICY_MAX_LINE + 1], row_to[POLICY_MAX_LINE + 1];

/* The write-back record of this message, its text in t and the static
 * row_from/row_to (overwritten by the next request). */
static struct msg_record record_make(const struct policy_request *req, const struct counted_as *c, uint32_t rcpt,
                                     struct row_text *t)
{
    utf8_sanitize(t->msgid, sizeof(t->msgid), req->queue_id, 255);
    utf8_sanitize(t->caddr, sizeof(t->caddr), req->client_address, 45);
    utf8_sanitize(t->cname, sizeof(t->cname), req->client_name, 255);
    utf8_sanitize(row_from, sizeof(row_from), req->sender, POLICY_MAX_LINE);
    utf8_sanitize(row_to, sizeof(row_to), req->recipient, POLICY_MAX_LINE);
    return (struct msg_record){
        .created_us = clock_realtime_us(), .rcpt_count = rcpt,
        .quota_default = c->quota_default, .sender = c->name, .msgid = t->msgid,
        .from_addr = row_from, .to_addr = row_to, .client_address = t->caddr, .client_name = t->cname,
    };
}

/* Reserve the message in its domain's pool, under the
 * pool's lock: d->pool_blocked when the pool is used up. */
static void pool_take(struct cache *cache, struct pool_use *pool, const char pool_key[CACHE_KEY_SIZE],
                      struct decision *d)
{
    if (cache_apply(cache, pool_key, true, pool_take_locked, pool) == CACHE_OK)
        d->pool_blocked = pool->blocked;
}

/* Replace the pool's reservation with what the sender's decision counted
 * (nothing after a duplicate or an error), under the pool's lock. */
static void pool_settle(struct cache *cache, struct pool_use *pool, const char pool_key[CACHE_KEY_SIZE],
                        enum cache_result cr, const struct decision *d)
{
    bool counted = cr == CACHE_OK && !d->queue_full && !d->duplicate;
    pool->msg_delta = counted ? d->rec->msg_delta : 0;
    pool->rcpt_delta = counted ? d->rec->rcpt_delta : 0;
    if (pool->reserved_msg || pool->msg_delta || pool->rcpt_delta)
        cache_apply(cache, pool_key, false, pool_settle_locked, pool);
}

/* Look the sender up (created if new) and decide under its lock; with a
 * domain pool, taken before and settled after under the pool's own lock
 * (never nested in the sender's). */
static enum cache_result decide(struct cache *cache, const char key[CACHE_KEY_SIZE], struct decision *d,
                                const struct domain_default *pool_domain)
{
    char pool_key[CACHE_KEY_SIZE];
    struct pool_use pool = {.domain = pool_domain, .rcpt = d->rec->rcpt_count};

    if (pool.domain) {
        domains_pool_key(pool.domain, pool_key);
        pool_take(cache, &pool, pool_key, d);
    }
    enum cache_result cr = cache_apply(cache, key, true, decide_locked, d);
    if (pool.domain)
        pool_settle(cache, &pool, pool_key, cr, d);
    return cr;
}

/* After the locks: log (once) the shared locks this process found left by
 * a process that died holding them. */
static void log_recovered_locks(struct shm *shm)
{
    if (shm->cache.recovered || shm->queue.recovered) {
        STAT_ADD(shm, locks_recovered, shm->cache.recovered + shm->queue.recovered);
        log_warning("recovered %u shared lock(s) left by a process that died holding them",
                    shm->cache.recovered + shm->queue.recovered);
        shm->cache.recovered = shm->queue.recovered = 0;
    }
}

/* After the lock: whether a failure of ours (cache full, queue full)
 * keeps the message from being counted; logs it. */
static bool decision_failed(const struct engine *eng, enum cache_result cr, const struct decision *d,
                            const char *key)
{
    struct shm *shm = eng->shm;
    if (cr == CACHE_FULL) {
        log_error("cache full: all %u entries have unwritten counts; answering %s for %s",
                  shm->cache.sh->capacity, eng->cfg->on_error, key);
        return true;
    }
    if (d->queue_full) {
        log_error("write-back queue full (%llu records waiting); answering %s",
                  (unsigned long long)wqueue_depth(&shm->queue), eng->cfg->on_error);
        return true;
    }
    return false;
}

/* After the lock: the change of block state into the journal. A failure
 * (the state disk full) costs only the journal's promise, said at most once
 * a minute by each worker; the counts go to the database as ever. */
static void journal_change(struct engine *eng, struct blockjournal_record *rec)
{
    static time_t said;
    if (eng->journal == NULL || blockjournal_append(eng->journal, eng->shm, rec))
        return;
    if (time(NULL) - said >= 60) {
        said = time(NULL);
        log_error("block journal %s: %s; a start with the database down may not know this block of %s",
                  eng->journal->path, strerror(errno), rec->key);
    }
}

/* After the lock: log a lost webhook notification, and for a counted
 * message wake the writer and add it to the statistics. */
static void after_decision(struct shm *shm, const struct decision *d, const char *key)
{
    if (d->notify_lost)
        log_error("webhook queue full: the notification for %s (%s) is lost", key,
                  d->first_block ? "first block" : "quota warning");
    if (d->duplicate)
        return;
    if (d->watch.opened)        /* the writer claims the episode (watchsync.c) */
        __atomic_add_fetch(&shm->hdr->watch_pending, 1, __ATOMIC_RELEASE);
    wqueue_wake(&shm->queue);
    STAT_ADD(shm, counted, 1);
    if (d->blocked)
        STAT_ADD(shm, blocked, 1);
    else
        STAT_ADD(shm, accepted, 1);
    if (d->would_block)
        STAT_ADD(shm, would_block, 1);
    if (d->first_warning)
        STAT_ADD(shm, warnings, 1);
    if (d->signal_hold)
        STAT_ADD(shm, signal_held, 1);
    if (d->signal_blocked)
        STAT_ADD(shm, signal_refused, 1);
}

/* The reply to a decided message: action_accept, action_blocked, or the
 * sender's own action with action_blocked's text after it. */
static size_t decision_reply(const struct rg_config *cfg, const struct decision *d, char *reply, size_t size)
{
    static const char *const names[BLOCK_ACTIONS] = {
        [BLOCK_DEFER_IF_PERMIT] = "DEFER_IF_PERMIT", [BLOCK_DEFER] = "DEFER", [BLOCK_REJECT] = "REJECT",
        [BLOCK_HOLD] = "HOLD", [BLOCK_DISCARD] = "DISCARD"};

    char action[600], names_buf[64];
    if (d->signal_hold || d->signal_blocked) {
        /* A signal's action, its text naming the signals (a lock answers
         * with action_blocked's action: the quota is 0). */
        const char *verb = d->watch.action == WATCH_LOCK ? cfg->action_blocked : watch_action_names[d->watch.action];
        snprintf(action, sizeof(action), "%.*s %s (%s: %s)", (int)strcspn(verb, " "), verb, cfg->signals.reply,
                 d->watch.action == WATCH_LOCK ? "locked" : "signal", watch_names(d->watch.episode, names_buf, sizeof(names_buf)));
        return format_reply(action, reply, size);
    }
    if (!d->blocked)
        return format_reply(cfg->action_accept, reply, size);
    if (d->block_action == BLOCK_ACTION_DEFAULT || d->block_action >= BLOCK_ACTIONS)
        return format_reply(cfg->action_blocked, reply, size);
    const char *text = strchr(cfg->action_blocked, ' ');
    snprintf(action, sizeof(action), "%s%s", names[d->block_action], text ? text : "");
    return format_reply(action, reply, size);
}

/* The handler, shaped like nginx's limit_req: who is counted and whether
 * exempt, validation, the locked decision, then (after the lock) the
 * failures, the statistics, the log line and the reply. */
size_t engine_answer(struct engine *eng, const struct policy_request *req, const char *peer,
                     char *reply, size_t size)
{
    const struct rg_config *cfg = eng->cfg;
    struct shm *shm = eng->shm;
    struct counted_as who;
    unsigned long rcpt = 0;

    STAT_ADD(shm, requests, 1);
    if (!counted_as(cfg, &shm->domains, req, &who) || exempt_logged(shm, cfg, req))
        return format_reply(cfg->action_accept, reply, size);
    if (!sender_storable(cfg, req, who.name, peer) || !recipient_count(cfg, req, peer, &rcpt))
        return answer_error(eng, reply, size);

    struct row_text text;
    struct msg_record rec = record_make(req, &who, (uint32_t)rcpt, &text);
    struct decision d = {
        .rec = &rec, .instance = instance_hash(req->instance), .cfg = cfg,
        .domain = who.has_domain ? &who.domain : NULL, .cache = &shm->cache, .window_hit = -1,
        .queue = &shm->queue, .notify = shm->notify.sh ? &shm->notify : NULL,
        .test_now = req->rateguard_test_now[0] ? req->rateguard_test_now : NULL,
    };
    struct watch_origin origin;
    d.watched = cfg->signals.enabled && req->sasl_username[0] != '\0' && !watch_exempt(cfg, req->sasl_username);
    if (d.watched) {
        if (watch_origin(cfg, req->client_address, &origin))
            d.origin = &origin;
        else
            STAT_ADD(shm, signal_bad_address, 1);
    }
    char key[CACHE_KEY_SIZE];
    cache_make_key(who.name, key);
    enum cache_result cr = decide(&shm->cache, key, &d, who.has_domain && who.domain.has_pool ? &who.domain : NULL);

    log_recovered_locks(shm);
    if (d.missed)
        STAT_ADD(shm, cache_misses, 1);
    if (decision_failed(eng, cr, &d, key))
        return answer_error(eng, reply, size);
    after_decision(shm, &d, key);
    if (d.journal_due)
        journal_change(eng, &d.journal);
    log_counted(req, &d, (uint32_t)rcpt, cfg, who.name);
    size_t n = decision_reply(cfg, &d, reply, size);
    if ((d.blocked || d.signal_blocked) && !d.duplicate && n > 7)     /* after "action=" */
        STAT_ADD(shm, blocks_by_refusal[policy_refusal_of(reply + 7)], 1);
    return n;
}
