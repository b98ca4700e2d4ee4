-- The rejection log keeps the message the refused client was answered with
-- (at most 300 characters), so the audit page says why, not only the code.
-- Rows logged before have none.
ALTER TABLE rejections ADD COLUMN error_msg TEXT;
