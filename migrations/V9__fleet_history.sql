-- Fleet history: every task as of any moment, the fleet's trend by day, and every
-- task's latest counts per directory. All kept by the writer in the upload's
-- transaction, so that no page scans the uploads.

-- A task's state as of upload id N ("its latest upload with id <= N") is one seek
-- in this index, which also holds what the as-of views show of that upload. It
-- replaces uploads_by_task (task_id, id), whose uses it serves as well.
CREATE INDEX uploads_task_state ON uploads (
    task_id, id, received_at, total_files, different_files, target_miss_files,
    target_more_files, regressed
);
DROP INDEX uploads_by_task;

-- The fleet at the end of each UTC day on which uploads arrived (a day without
-- uploads is the same as the last one before it): tasks that have reported at
-- least once, open problems summed over every task's latest upload, and tasks
-- whose latest upload has no problems. day = received_at / 86,400,000.
CREATE TABLE fleet_days (
    day             INTEGER PRIMARY KEY,
    tasks_reporting INTEGER NOT NULL,
    open_problems   INTEGER NOT NULL,
    tasks_clean     INTEGER NOT NULL
);

-- Every task's latest counts for each directory it has reported (the last item
-- for that directory in the latest upload that has it).
CREATE TABLE task_directories (
    dir_check             TEXT    NOT NULL,
    task_id               TEXT    NOT NULL,
    upload_id             INTEGER NOT NULL,
    num_total_files       INTEGER NOT NULL,
    num_different_files   INTEGER NOT NULL,
    num_target_miss_files INTEGER NOT NULL,
    num_target_more_files INTEGER NOT NULL,
    PRIMARY KEY (dir_check, task_id)
) WITHOUT ROWID;

-- Both tables are filled from the uploads so far by the writer when it starts
-- (storage::fleet::catch_up), then kept with each upload.
