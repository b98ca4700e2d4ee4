-- Witnesses (C2SP tlog-witness) the service asks to cosign its checkpoints, and
-- the cosignatures they returned, each verified against the witness's key
-- before it is stored.
CREATE TABLE witnesses (
    id                   INTEGER PRIMARY KEY,
    vkey                 TEXT    NOT NULL UNIQUE,
    url                  TEXT    NOT NULL,
    -- the latest size this witness cosigned (the `old` of the next request)
    cosigned_size        INTEGER,
    cosigned_at          INTEGER,
    last_error           TEXT,
    last_error_at        INTEGER,
    -- it refused a checkpoint as inconsistent (422): an alarm until it cosigns again
    refused_inconsistent INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE cosignatures (
    tree_size   INTEGER NOT NULL REFERENCES checkpoints (tree_size),
    witness_id  INTEGER NOT NULL REFERENCES witnesses (id),
    -- the cosignature's own timestamp (POSIX seconds) and its signature line
    signed_at   INTEGER NOT NULL,
    line        TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (tree_size, witness_id)
) STRICT;
