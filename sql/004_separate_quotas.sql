-- SPDX-License-Identifier: GPL-3.0-or-later
-- 004: limits beyond PolicydRateGuard's single quota, per sender.
-- msg_quota / rcpt_quota: messages and recipients per period; NULL keeps
-- `quota` for that count, as PolicydRateGuard does for both.
-- block_action: the Postfix action when the sender is blocked; NULL keeps
-- the configured action_blocked (its text follows the action).
ALTER TABLE `ratelimits`
  ADD COLUMN IF NOT EXISTS `msg_quota` int unsigned NULL DEFAULT NULL COMMENT 'messages per period; NULL: quota' AFTER `quota_locked`,
  ADD COLUMN IF NOT EXISTS `rcpt_quota` int unsigned NULL DEFAULT NULL COMMENT 'recipients per period; NULL: quota' AFTER `msg_quota`,
  ADD COLUMN IF NOT EXISTS `block_action` enum('DEFER_IF_PERMIT','DEFER','REJECT','HOLD','DISCARD') NULL DEFAULT NULL COMMENT 'action when blocked; NULL: action_blocked' AFTER `rcpt_quota`;
