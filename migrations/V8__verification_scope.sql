-- What a verification run covered. `since_checkpoint`: NULL for a full run, else
-- the size of the checkpoint it started from (`verify --since-checkpoint`).
-- `checkpoint_verified`: for an intact full run, the newest checkpoint whose
-- root it recomputed from the chain, where the next `--since-checkpoint` starts.
ALTER TABLE verifications ADD COLUMN since_checkpoint INTEGER;
ALTER TABLE verifications ADD COLUMN checkpoint_verified INTEGER;
