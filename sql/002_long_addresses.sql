-- SPDX-License-Identifier: GPL-3.0-or-later
-- 002: Postfix accepts envelope addresses far longer than 255 bytes; the
-- sender of a message must be stored whole (to_addr is already TEXT).
ALTER TABLE `messages` MODIFY `from_addr` text DEFAULT NULL COMMENT 'envelope sender';
