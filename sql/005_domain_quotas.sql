-- SPDX-License-Identifier: GPL-3.0-or-later
-- 005: per-domain defaults. A sender without a row of its own starts with
-- its domain's quota (else quota.default); a sender whose row has no
-- msg_quota, rcpt_quota or block_action uses its domain's (else quota and
-- action_blocked). Resolution: sender > domain > global. The domain is the
-- part of the SASL user name after its last '@', in lower case.
CREATE TABLE IF NOT EXISTS `domain_quotas` (
  `domain` varchar(255) NOT NULL COMMENT 'lower case, e.g. example.org',
  `quota` int unsigned NULL DEFAULT NULL COMMENT 'quota of a new sender; NULL: quota.default',
  `msg_quota` int unsigned NULL DEFAULT NULL COMMENT 'messages per period of a sender without its own',
  `rcpt_quota` int unsigned NULL DEFAULT NULL COMMENT 'recipients per period of a sender without its own',
  `block_action` enum('DEFER_IF_PERMIT','DEFER','REJECT','HOLD','DISCARD') NULL DEFAULT NULL COMMENT 'action when blocked',
  `updated_at` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`domain`)
);
