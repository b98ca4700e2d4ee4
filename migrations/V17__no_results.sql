-- An upload without result items ({}, or consistency_result [] or null) is "no
-- results", a state of its own: never clean. The as-of index gains the result
-- count; the trend counts tasks whose latest upload has no results, and "clean"
-- now needs results. Both derived tables are emptied so that the writer rebuilds
-- them with these rules at start (storage::fleet::catch_up, and the snapshot loop).
DROP INDEX uploads_task_state;
CREATE INDEX uploads_task_state ON uploads (
    task_id, id, received_at, total_files, different_files, target_miss_files,
    target_more_files, regressed, result_count
);
ALTER TABLE fleet_days ADD COLUMN tasks_without_results INTEGER NOT NULL DEFAULT 0;
DELETE FROM fleet_days;
DELETE FROM fleet_snapshots;
