-- The fleet as of every N-th upload id: each task's latest upload up to `upto`,
-- packed (storage::fleet::encode_states). A state as of any id is then the nearest
-- snapshot before it plus the uploads in between, instead of a seek per task.
-- Derived from the uploads alone: made in the background, never changed.
CREATE TABLE fleet_snapshots (
    upto   INTEGER PRIMARY KEY,
    states BLOB    NOT NULL
);
