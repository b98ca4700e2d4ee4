-- A reconciliation with SMS that found tasks not matching is announced
-- (`reconciliation`). As V21: both notification tables are copied into tables that
-- allow the kind, the child first dropped, and the index made again.
CREATE TABLE notifications_v23 (
    id          INTEGER PRIMARY KEY,
    -- e.g. 'regressed:upload:123', 'delivery:45:dead', 'verification:7',
    -- 'upstream-down:<failing since>', 'witness-refused:<witness id>:<why>',
    -- 'reconciliation:<run id>'
    event       TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL CHECK (kind IN ('regressed', 'delivery_failed',
                    'delivery_dead', 'verification_broken', 'upstream_down', 'witness_refused',
                    'reconciliation')),
    text        TEXT    NOT NULL,
    -- The JSON object POSTed (has `text`).
    payload     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
INSERT INTO notifications_v23 SELECT * FROM notifications;

CREATE TABLE notification_sends_v23 (
    id               INTEGER PRIMARY KEY,
    notification_id  INTEGER NOT NULL REFERENCES notifications_v23 (id),
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
INSERT INTO notification_sends_v23 SELECT * FROM notification_sends;

DROP TABLE notification_sends;
DROP TABLE notifications;
ALTER TABLE notifications_v23 RENAME TO notifications;
ALTER TABLE notification_sends_v23 RENAME TO notification_sends;
CREATE INDEX notification_sends_pending ON notification_sends (next_attempt_at)
    WHERE state = 'pending';
