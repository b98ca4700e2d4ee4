-- Refused requests counted per minute, peer and error code: a flood stays visible
-- after its rows have rolled out of the rejection log.
CREATE TABLE rejection_counts (
    minute      INTEGER NOT NULL, -- start of the minute, ms since the epoch (UTC)
    peer_addr   TEXT    NOT NULL,
    error_code  TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (minute, peer_addr, error_code)
) WITHOUT ROWID;
