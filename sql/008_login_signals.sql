-- SPDX-License-Identifier: GPL-3.0-or-later
-- 008: the hijacked-account signals (signals { } in rateguard.conf), one
-- row per SASL login, written by the writers of every host, never in the
-- reply path:
--   baseline, history, folded_window: the login's own rate, an
--     exponentially weighted average of the messages it sent in its past
--     active windows (x 256), folded once per window by whichever host
--     comes first (folded_window, a unix second, makes it once);
--   episode ... evidence: the last episode (signals that tripped: 1
--     spread, 2 countries, 4 rate, 8 probation), claimed by one host
--     (episode_host), which logs it and sends its webhook event; it is
--     open while now < episode_last + signals.window;
--   locked: the `lock` action set ratelimits.quota to 0 (quota_locked);
--   cleared_at: `rateguard clear LOGIN` (unix second): every host forgets
--     the login's networks, countries, rate and episode, and the lock.
-- Times are unix seconds: no time zone in the way between hosts.
CREATE TABLE IF NOT EXISTS `login_signals` (
  `sender` varchar(255) NOT NULL COMMENT 'the SASL login, as folded by rateguard (lower case)',
  `baseline` int unsigned NOT NULL DEFAULT 0 COMMENT 'messages per active window x 256 (EWMA)',
  `history` smallint unsigned NOT NULL DEFAULT 0 COMMENT 'active windows folded into baseline',
  `folded_window` int unsigned NOT NULL DEFAULT 0 COMMENT 'start (unix s) of the last window folded',
  `episode` tinyint unsigned NOT NULL DEFAULT 0 COMMENT 'signals of the last episode, 0 none',
  `episode_since` int unsigned NOT NULL DEFAULT 0 COMMENT 'unix s it began',
  `episode_last` int unsigned NOT NULL DEFAULT 0 COMMENT 'unix s a signal of it last tripped',
  `episode_host` varchar(255) NOT NULL DEFAULT '' COMMENT 'host/instance that claimed it',
  `evidence` varchar(255) NOT NULL DEFAULT '' COMMENT 'what tripped it, as logged',
  `locked` tinyint unsigned NOT NULL DEFAULT 0 COMMENT '1: locked by the lock action',
  `cleared_at` int unsigned NOT NULL DEFAULT 0 COMMENT 'unix s of the last rateguard clear',
  `updated_at` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`sender`),
  KEY `login_signals_updated_at` (`updated_at`)
);
