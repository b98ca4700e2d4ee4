-- The RFC 6962 Merkle tree over the ledger: leaf i is upload id i + 1, its input
-- the 32 bytes of that upload's entry_hash. Every hash the tree ever completes is
-- stored once, at the index C2SP tlog-tiles (Go's sumdb/tlog) gives it, so that a
-- root, an inclusion proof or a consistency proof at any size reads O(log n) rows.
-- Filled by the writer with each upload (and for older databases on the first
-- start after this migration).
CREATE TABLE tree_hashes (
    idx  INTEGER PRIMARY KEY, -- stored hash index
    hash BLOB    NOT NULL     -- 32 bytes
);

-- Signed checkpoints of the tree (C2SP tlog-checkpoint as a signed note), one per
-- tree size. The signing key is never in the database.
CREATE TABLE checkpoints (
    tree_size INTEGER PRIMARY KEY,
    root_hash BLOB    NOT NULL, -- 32 bytes
    made_at   INTEGER NOT NULL, -- ms since the epoch
    note      TEXT    NOT NULL
);
