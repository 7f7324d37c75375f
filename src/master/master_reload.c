/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * master_reload.c - HUP: the configuration file is parsed into a fresh
 * structure; a broken one is logged and the running one kept. A valid one
 * is built from the old: the settings the running daemon was built around
 * (marked restart-only in config.c's parameter table) keep their running
 * values, each changed one logged as taking effect at the next restart;
 * the rest applies. Workers, writer and notifier are recycled to pick it
 * up (a busy worker when its connection next goes idle). Owns nothing
 * beyond the swap of m->cfg.
 */
#include "master_int.h"
#include "config.h"
#include "log.h"
#include "period.h"

#include <signal.h>
#include <time.h>

/* config_keep_restart_only() names each restart-only setting that changed. */
static void restart_needed(const char *name, void *arg)
{
    (void)arg;
    log_warning("reload: %s takes effect at the next restart", name);
}

/* Ask every child to end so that a new one starts with the new
 * configuration: workers retire when idle, helpers get TERM. */
static void recycle_children(struct master *m)
{
    for (uint32_t i = 0; i < m->shm.scoreboard.sh->slots; i++)
        if (m->shm.scoreboard.slot[i].pid > 0)
            m->shm.scoreboard.slot[i].retire = 1;
    if (m->writer_pid > 0)
        kill(m->writer_pid, SIGTERM);
    if (m->notifier.pid > 0)
        kill(m->notifier.pid, SIGTERM);
    if (m->metricsd.pid > 0)
        kill(m->metricsd.pid, SIGTERM);
}

void master_reload(struct master *m)
{
    char err[1024];
    int code;
    struct rg_config *fresh = config_load(m->config_path, err, sizeof(err), &code);

    if (fresh == NULL) {
        log_error("reload: %s; keeping the running configuration", err);
        return;
    }
    config_keep_restart_only(fresh, m->cfg, restart_needed, NULL);
    if (!log_open(fresh, m->foreground))
        log_error("reload: %s", log_file_refusal());
    log_share_generation(&m->shm.hdr->log_generation);
    master_sentry_announce(fresh);
    m->next_reset = period_next_reset(fresh->reset_schedule, time(NULL), m->reset_done);
    struct rg_config *old = m->cfg;
    m->cfg = fresh;
    recycle_children(m);
    /* The webhook's queue is opened at start: turning it off applies now,
     * turning it on waits for a restart. */
    if (fresh->webhook.enabled && m->shm.notify.sh == NULL)
        log_warning("reload: enabling the webhook takes effect at the next restart");
    config_free(old);
    log_notice("reload: configuration re-read from %s", m->config_path);
}
