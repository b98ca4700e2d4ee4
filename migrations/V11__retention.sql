-- Retention: an old upload's raw body and result rows may be purged while its
-- ledger entry stays (the entry hash covers body_sha256, not the body, so the
-- chain and the Merkle tree stay verifiable). Purges are recorded in admin_log.

ALTER TABLE uploads ADD COLUMN purged_at INTEGER;

-- The one change an upload may undergo: once, its body emptied and purged_at set,
-- every other column as it was.
DROP TRIGGER uploads_no_update;
CREATE TRIGGER uploads_no_update BEFORE UPDATE ON uploads
WHEN NOT (
    OLD.purged_at IS NULL AND NEW.purged_at IS NOT NULL AND length(NEW.raw_body) = 0
    AND NEW.id IS OLD.id AND NEW.request_id IS OLD.request_id
    AND NEW.task_id IS OLD.task_id AND NEW.received_at IS OLD.received_at
    AND NEW.credential_name IS OLD.credential_name AND NEW.auth_method IS OLD.auth_method
    AND NEW.project_id IS OLD.project_id AND NEW.peer_addr IS OLD.peer_addr
    AND NEW.forwarded_for IS OLD.forwarded_for AND NEW.user_agent IS OLD.user_agent
    AND NEW.body_sha256 IS OLD.body_sha256 AND NEW.finished_time IS OLD.finished_time
    AND NEW.result_count IS OLD.result_count AND NEW.total_files IS OLD.total_files
    AND NEW.different_files IS OLD.different_files
    AND NEW.target_miss_files IS OLD.target_miss_files
    AND NEW.target_more_files IS OLD.target_more_files
    AND NEW.duplicate_of IS OLD.duplicate_of AND NEW.prev_hash IS OLD.prev_hash
    AND NEW.entry_hash IS OLD.entry_hash AND NEW.regressed IS OLD.regressed
)
BEGIN SELECT RAISE(ABORT, 'uploads are append-only (a purge may only empty a body)'); END;

-- Result rows go only with their purged upload.
DROP TRIGGER upload_results_no_delete;
CREATE TRIGGER upload_results_no_delete BEFORE DELETE ON upload_results
WHEN (SELECT purged_at FROM uploads WHERE id = OLD.upload_id) IS NULL
BEGIN SELECT RAISE(ABORT, 'upload results are append-only (only a purged upload''s go)'); END;

-- Administrative actions (purges, backups, restores): who, when, what, how much.
-- Append-only; a row's outcome is filled in once, when the action ends.
CREATE TABLE admin_log (
    id              INTEGER PRIMARY KEY,
    started_at      INTEGER NOT NULL,
    actor           TEXT    NOT NULL,
    action          TEXT    NOT NULL CHECK (action IN ('purge', 'backup', 'restore')),
    -- purge: uploads received before this time, up to this upload id
    before_time     INTEGER,
    up_to_id        INTEGER,
    finished_at     INTEGER,
    -- 'done', 'failed: …', 'interrupted' (found unfinished by the next purge)
    outcome         TEXT,
    uploads         INTEGER,
    result_rows     INTEGER,
    bytes           INTEGER,
    -- purge: uploads left because a delivery of theirs is pending
    kept_pending    INTEGER,
    detail          TEXT
);
CREATE TRIGGER admin_log_no_delete BEFORE DELETE ON admin_log
BEGIN SELECT RAISE(ABORT, 'the admin log is append-only'); END;
CREATE TRIGGER admin_log_no_update BEFORE UPDATE ON admin_log
WHEN NOT (
    OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL
    AND NEW.id IS OLD.id AND NEW.started_at IS OLD.started_at AND NEW.actor IS OLD.actor
    AND NEW.action IS OLD.action AND NEW.before_time IS OLD.before_time
    AND NEW.up_to_id IS OLD.up_to_id
)
BEGIN SELECT RAISE(ABORT, 'the admin log is append-only'); END;
