-- When a credential was last used: its last stored upload (kept by the writer in
-- the upload's transaction) or its last page login. Read by `credentials list`.
ALTER TABLE credentials ADD COLUMN last_used_at INTEGER;
