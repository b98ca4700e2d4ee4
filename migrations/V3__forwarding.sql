-- Forwarding to SMS: a durable outbox of deliveries, every attempt, replays.

-- A replay: a set of stored uploads sent again on request.
CREATE TABLE replays (
    id            INTEGER PRIMARY KEY,
    created_at    INTEGER NOT NULL,
    requested_by  TEXT    NOT NULL,
    -- 'server' (web or API, sent by the running service) or 'cli' (sent by the
    -- replay command itself)
    runner        TEXT    NOT NULL CHECK (runner IN ('server', 'cli')),
    target        TEXT    NOT NULL,
    filter        TEXT    NOT NULL,
    total         INTEGER NOT NULL,
    finished_at   INTEGER
);

-- One upload to be sent to one endpoint. Live deliveries are added in the same
-- transaction as their upload.
CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    upload_id        INTEGER NOT NULL REFERENCES uploads (id),
    task_id          TEXT    NOT NULL,
    target           TEXT    NOT NULL,
    trigger          TEXT    NOT NULL CHECK (trigger IN ('live', 'replay')),
    replay_id        INTEGER REFERENCES replays (id),
    state            TEXT    NOT NULL
                     CHECK (state IN ('pending', 'delivered', 'failed', 'dead', 'superseded')),
    created_at       INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    finished_at      INTEGER,
    last_status      INTEGER,
    last_error       TEXT
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_by_upload ON deliveries (upload_id);
-- A task's waiting deliveries, without walking past all its delivered ones.
CREATE INDEX deliveries_pending_by_task ON deliveries (task_id, target, upload_id)
    WHERE state = 'pending';
CREATE INDEX deliveries_by_replay ON deliveries (replay_id, state) WHERE replay_id IS NOT NULL;
-- Only the states an operator looks for are indexed: each index entry costs the
-- writer on every delivery's insert or change of state.
CREATE INDEX deliveries_given_up ON deliveries (id) WHERE state IN ('failed', 'dead');

CREATE TABLE delivery_attempts (
    id                   INTEGER PRIMARY KEY,
    delivery_id          INTEGER NOT NULL REFERENCES deliveries (id),
    at                   INTEGER NOT NULL,
    target_url           TEXT    NOT NULL,
    trigger              TEXT    NOT NULL CHECK (trigger IN ('live', 'retry', 'replay')),
    http_status          INTEGER,
    upstream_request_id  TEXT,
    error_code           TEXT,
    error_msg            TEXT,
    transport_error      TEXT,
    response_head        TEXT,
    latency_ms           INTEGER NOT NULL
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, id);
CREATE INDEX delivery_attempts_by_time ON delivery_attempts (at);
