-- The state of `sms-audit witness serve`: per log (origin), the latest
-- checkpoint this witness cosigned, replaced atomically with each cosignature,
-- and the checkpoints it refused although their signature verified (evidence of
-- a log's misbehaviour, kept bounded).
CREATE TABLE witnessed_logs (
    origin      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL CHECK (size >= 0),
    root        TEXT NOT NULL,
    -- the checkpoint with the log's signature and this witness's cosignature,
    -- as the monitoring read serves it
    checkpoint  TEXT NOT NULL,
    cosigned_at INTEGER NOT NULL
) STRICT;

CREATE TABLE witness_refusals (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    origin     TEXT NOT NULL,
    status     INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    checkpoint TEXT NOT NULL
) STRICT;
