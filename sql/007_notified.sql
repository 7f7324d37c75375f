-- SPDX-License-Identifier: GPL-3.0-or-later
-- 007: whether the sender's webhook notifications of the current period
-- were sent, so that no restart, crash or second host sends them again.
-- A bit mask: 1 = the first block (QUOTA_LIMIT_REACHED) was notified,
-- 2 = the quota.warning_percent warning was. The writer stores it with the
-- record that set or cleared it (an accepted message clears the block's
-- bit: a raised quota passed again is notified again); the period reset
-- (cleanup, reset, the schedule) sets it back to 0.
ALTER TABLE `ratelimits`
  ADD COLUMN IF NOT EXISTS `notified` tinyint unsigned NOT NULL DEFAULT '0' COMMENT 'notified this period: 1 block, 2 warning' AFTER `reset_at`;
