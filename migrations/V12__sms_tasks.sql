-- Task names and states as SMS lists them (`tasks sync`, `tasks import`).
ALTER TABLE tasks ADD COLUMN sms_state TEXT;
ALTER TABLE tasks ADD COLUMN sms_synced_at INTEGER;
