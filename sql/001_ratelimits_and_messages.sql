-- SPDX-License-Identifier: GPL-3.0-or-later
-- 001: PolicydRateGuard's tables, so that an existing PolicydRateGuard
-- database is taken over in place and a new one looks the same.
-- Every statement is idempotent: on an existing installation it only adds
-- what that installation's version of PolicydRateGuard did not have yet.

CREATE TABLE IF NOT EXISTS `ratelimits` (
  `id` bigint unsigned NOT NULL AUTO_INCREMENT,
  `sender` varchar(255) NOT NULL COMMENT 'sender address (SASL username)',
  `quota` int unsigned NOT NULL DEFAULT '1000' COMMENT 'current quota (may be raised temporarily)',
  `quota_reset` int unsigned NOT NULL DEFAULT '1000' COMMENT 'quota restored by the period reset',
  `quota_locked` tinyint(1) NOT NULL DEFAULT '0' COMMENT 'keep quota across the period reset',
  `msg_counter` int unsigned NOT NULL DEFAULT '0' COMMENT 'messages this period',
  `rcpt_counter` int unsigned NOT NULL DEFAULT '0' COMMENT 'recipients this period',
  `msg_total` int unsigned NOT NULL DEFAULT '0' COMMENT 'messages ever (never reset)',
  `rcpt_total` int unsigned NOT NULL DEFAULT '0' COMMENT 'recipients ever (never reset)',
  `created_at` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `updated_at` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`id`),
  UNIQUE KEY `ratelimits_sender_unique` (`sender`)
);

-- PolicydRateGuard before 2023-08-27 had no totals: start them at the counters.
ALTER TABLE `ratelimits`
  ADD COLUMN IF NOT EXISTS `msg_total` int unsigned NOT NULL DEFAULT '0' COMMENT 'messages ever (never reset)' AFTER `rcpt_counter`,
  ADD COLUMN IF NOT EXISTS `rcpt_total` int unsigned NOT NULL DEFAULT '0' COMMENT 'recipients ever (never reset)' AFTER `msg_total`;

-- Totals are never below the counters, so this only touches rows whose
-- totals were just added; updated_at is kept as it was.
UPDATE `ratelimits` SET `msg_total` = `msg_counter`, `rcpt_total` = `rcpt_counter`, `updated_at` = `updated_at`
  WHERE `msg_total` < `msg_counter` OR `rcpt_total` < `rcpt_counter`;

CREATE TABLE IF NOT EXISTS `messages` (
  `id` bigint unsigned NOT NULL AUTO_INCREMENT,
  `ratelimit_id` bigint unsigned DEFAULT NULL,
  `sender` varchar(255) NOT NULL COMMENT 'sender address (SASL username)',
  `rcpt_count` int NOT NULL COMMENT 'number of recipients',
  `blocked` tinyint(1) NOT NULL COMMENT 'message was blocked due to reached quota',
  `msgid` varchar(255) DEFAULT NULL COMMENT 'Postfix queue id',
  `from_addr` varchar(255) DEFAULT NULL COMMENT 'envelope sender',
  `to_addr` text DEFAULT NULL COMMENT 'recipient (empty when several)',
  `cc_addr` text DEFAULT NULL,
  `bcc_addr` text DEFAULT NULL,
  `subject` varchar(255) NOT NULL DEFAULT '',
  `client_address` varchar(45) NULL DEFAULT NULL COMMENT 'client IP',
  `client_name` varchar(255) NULL DEFAULT NULL COMMENT 'client hostname',
  `created_at` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`id`),
  KEY `messages_ratelimit_id_foreign` (`ratelimit_id`),
  CONSTRAINT `messages_ratelimit_id_foreign` FOREIGN KEY (`ratelimit_id`) REFERENCES `ratelimits` (`id`) ON DELETE SET NULL ON UPDATE CASCADE
);

-- The period reset purges by age: it needs this index (added 2023-09-06).
CREATE INDEX IF NOT EXISTS `messages_created_at_index` ON `messages` (`created_at`);
