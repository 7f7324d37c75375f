-- SPDX-License-Identifier: GPL-3.0-or-later
-- 003: what rateguard needs beyond PolicydRateGuard's tables.
-- reset_at: when the period was last reset; a message counted before it
-- but written after it (the database was down, the write was in flight)
-- adds to the totals only, never to the new period's counters.
ALTER TABLE `ratelimits`
  ADD COLUMN IF NOT EXISTS `reset_at` datetime(6) NULL DEFAULT NULL COMMENT 'last period reset' AFTER `rcpt_total`;

-- The last write-back record each rateguard writer committed, updated in
-- the same transaction as the records: a replay after an unknown commit
-- outcome skips what is already in.
CREATE TABLE IF NOT EXISTS `rateguard_progress` (
  `writer` varchar(255) NOT NULL COMMENT 'host/instance',
  `epoch` bigint unsigned NOT NULL COMMENT 'queue file generation',
  `last_seq` bigint unsigned NOT NULL COMMENT 'last record committed',
  `updated_at` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`writer`)
);
