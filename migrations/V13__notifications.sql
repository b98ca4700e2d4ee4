-- Notifications (`--notify-url`): one row per event (the unique key is what
-- deduplicates), and one send per configured URL, retried like deliveries.
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY,
    -- e.g. 'regressed:upload:123', 'delivery:45:dead', 'verification:7',
    -- 'upstream-down:<failing since>'
    event       TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL CHECK (kind IN ('regressed', 'delivery_failed',
                    'delivery_dead', 'verification_broken', 'upstream_down')),
    text        TEXT    NOT NULL,
    -- The JSON object POSTed (has `text`).
    payload     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE notification_sends (
    id               INTEGER PRIMARY KEY,
    notification_id  INTEGER NOT NULL REFERENCES notifications (id),
    url              TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'dead')),
    created_at       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    finished_at      INTEGER,
    last_status      INTEGER,
    last_error       TEXT,
    UNIQUE (notification_id, url)
);
CREATE INDEX notification_sends_pending ON notification_sends (next_attempt_at)
    WHERE state = 'pending';
