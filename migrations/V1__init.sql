-- sms-audit schema, version 1.
-- Ledger tables (uploads, upload_results) are append-only: triggers refuse UPDATE
-- and DELETE. Times are milliseconds since the Unix epoch, UTC.

CREATE TABLE credentials (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL CHECK (role IN ('agent', 'auditor', 'operator')),
    token_sha256  TEXT    NOT NULL UNIQUE,
    -- AK/SK: the secret key must be kept to verify HMAC signatures; the database
    -- file is readable by its owner only.
    access_key    TEXT    UNIQUE,
    secret_key    TEXT,
    -- JSON array of task ids the credential may upload to; NULL means any task.
    task_scope    TEXT,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    CHECK ((access_key IS NULL) = (secret_key IS NULL))
);

CREATE TABLE tasks (
    task_id            TEXT    PRIMARY KEY,
    name               TEXT,
    registered_at      INTEGER NOT NULL,
    -- 'cli' (tasks add) or 'upload' (first upload under --task-policy open)
    registered_by      TEXT    NOT NULL,
    -- Summary kept by the writer so listing tasks never scans uploads.
    upload_count       INTEGER NOT NULL DEFAULT 0,
    first_upload_at    INTEGER,
    last_upload_at     INTEGER,
    last_upload_id     INTEGER
);

CREATE TABLE uploads (
    id               INTEGER PRIMARY KEY,
    request_id       TEXT    NOT NULL UNIQUE,
    task_id          TEXT    NOT NULL,
    received_at      INTEGER NOT NULL,
    credential_name  TEXT    NOT NULL,
    auth_method      TEXT    NOT NULL CHECK (auth_method IN ('token', 'aksk')),
    project_id       TEXT,
    peer_addr        TEXT    NOT NULL,
    forwarded_for    TEXT,
    user_agent       TEXT,
    raw_body         BLOB    NOT NULL,
    body_sha256      TEXT    NOT NULL,
    finished_time    INTEGER,
    result_count     INTEGER NOT NULL,
    total_files      INTEGER NOT NULL,
    different_files  INTEGER NOT NULL,
    target_miss_files INTEGER NOT NULL,
    target_more_files INTEGER NOT NULL,
    duplicate_of     INTEGER REFERENCES uploads (id),
    prev_hash        TEXT    NOT NULL,
    entry_hash       TEXT    NOT NULL
);
CREATE INDEX uploads_by_task ON uploads (task_id, id);
-- No index on received_at: it never decreases as id grows (the writer makes sure
-- and verify checks), so time ranges are found as id ranges by binary search.

CREATE TABLE upload_results (
    upload_id              INTEGER NOT NULL REFERENCES uploads (id),
    ordinal                INTEGER NOT NULL,
    dir_check              TEXT    NOT NULL,
    num_total_files        INTEGER NOT NULL,
    num_different_files    INTEGER NOT NULL,
    num_target_miss_files  INTEGER NOT NULL,
    num_target_more_files  INTEGER NOT NULL,
    PRIMARY KEY (upload_id, ordinal)
) WITHOUT ROWID;

CREATE TRIGGER uploads_no_update BEFORE UPDATE ON uploads
BEGIN SELECT RAISE(ABORT, 'uploads are append-only'); END;
CREATE TRIGGER uploads_no_delete BEFORE DELETE ON uploads
BEGIN SELECT RAISE(ABORT, 'uploads are append-only'); END;
CREATE TRIGGER upload_results_no_update BEFORE UPDATE ON upload_results
BEGIN SELECT RAISE(ABORT, 'upload results are append-only'); END;
CREATE TRIGGER upload_results_no_delete BEFORE DELETE ON upload_results
BEGIN SELECT RAISE(ABORT, 'upload results are append-only'); END;

-- Refused requests: bounded (the writer trims the oldest), never bodies or secrets.
CREATE TABLE rejections (
    id               INTEGER PRIMARY KEY,
    at               INTEGER NOT NULL,
    peer_addr        TEXT    NOT NULL,
    method           TEXT    NOT NULL,
    path             TEXT    NOT NULL,
    status           INTEGER NOT NULL,
    error_code       TEXT    NOT NULL,
    credential_name  TEXT,
    request_id       TEXT    NOT NULL
);
