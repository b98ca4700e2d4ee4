-- History pages: sessions, verification runs, regression markers.

-- Browser sessions. The cookie value is never stored, only its SHA-256.
CREATE TABLE sessions (
    id_sha256        TEXT    PRIMARY KEY,
    credential_name  TEXT    NOT NULL,
    csrf_token       TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Ledger verification runs (sms-audit verify, the audit page, /api/v1/ledger).
CREATE TABLE verifications (
    id            INTEGER PRIMARY KEY,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    requested_by  TEXT    NOT NULL,
    entries       INTEGER NOT NULL,
    head_id       INTEGER NOT NULL,
    head_hash     TEXT    NOT NULL,
    first_bad_id  INTEGER,
    problem       TEXT
);

-- problems = num_different_files + num_target_miss_files + num_target_more_files
-- summed over the results. An upload is "regressed" when it has more problems than
-- the task's previous upload. Derived when stored; not part of the hash chain.
ALTER TABLE uploads ADD COLUMN regressed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX uploads_regressed_by_task ON uploads (task_id, id) WHERE regressed = 1;

ALTER TABLE tasks ADD COLUMN last_problems INTEGER;
ALTER TABLE tasks ADD COLUMN last_regressed INTEGER NOT NULL DEFAULT 0;
-- The dashboard sorts tasks by these; task_id breaks ties so paging is stable.
CREATE INDEX tasks_by_last_upload ON tasks (last_upload_at, task_id);
CREATE INDEX tasks_by_upload_count ON tasks (upload_count, task_id);
CREATE INDEX tasks_by_problems ON tasks (last_problems, task_id);
