-- Every call passed on to SMS by `serve --proxy` (the consistency-result upload
-- has its own tables). Bodies only with --proxy-log-bodies, and capped.
CREATE TABLE proxy_calls (
    id                  INTEGER PRIMARY KEY,
    at                  INTEGER NOT NULL, -- when the request arrived, ms since the epoch
    request_id          TEXT    NOT NULL, -- sms-audit's own id for the request
    credential_name     TEXT    NOT NULL,
    peer_addr           TEXT    NOT NULL,
    method              TEXT    NOT NULL,
    path                TEXT    NOT NULL,
    query               TEXT    NOT NULL,
    status              INTEGER NOT NULL, -- what the agent got (502/504 when SMS did not answer)
    outcome             TEXT    NOT NULL, -- answered | unreachable | timeout | too_large | aborted
    error               TEXT,             -- why, when not simply answered
    latency_us          INTEGER NOT NULL, -- from the request's arrival to SMS's answer (or the failure)
    upstream_request_id TEXT,
    request_bytes       INTEGER NOT NULL,
    response_bytes      INTEGER NOT NULL,
    request_body        BLOB,
    response_body       BLOB
);
CREATE INDEX proxy_calls_by_credential ON proxy_calls (credential_name, id);
CREATE INDEX proxy_calls_by_time ON proxy_calls (at);
