-- SPDX-License-Identifier: GPL-3.0-or-later
-- 006: a quota shared by all senders of a domain (a pool): messages and
-- recipients per period of the domain's senders together. NULL: no pool.
ALTER TABLE `domain_quotas`
  ADD COLUMN IF NOT EXISTS `pool_quota` int unsigned NULL DEFAULT NULL COMMENT 'messages and recipients per period of all its senders together' AFTER `block_action`;
