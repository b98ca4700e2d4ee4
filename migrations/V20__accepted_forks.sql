-- An operator's acceptance of a fork (`evidence accept-fork`) is an admin action
-- too. SQLite cannot change a CHECK constraint: the append-only log is copied
-- into a table that allows it, and its triggers are made again.
CREATE TABLE admin_log_v20 (
    id              INTEGER PRIMARY KEY,
    started_at      INTEGER NOT NULL,
    actor           TEXT    NOT NULL,
    action          TEXT    NOT NULL CHECK (action IN ('purge', 'backup', 'restore', 'accept-fork')),
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
    -- accept-fork: both heads and the reason
    detail          TEXT
);
INSERT INTO admin_log_v20 SELECT * FROM admin_log;
DROP TABLE admin_log;
ALTER TABLE admin_log_v20 RENAME TO admin_log;
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
