-- How many tasks have reported each directory, kept by triggers as rows come
-- and go in task_directories, so that listing directories and counting one
-- directory's tasks read one row each instead of counting every task's row
-- (at 100,000 tasks the directory page spent most of its time counting).
-- An upsert that updates an existing row fires no INSERT trigger: only a task
-- reporting a directory for the first time costs a write here.
CREATE TABLE directory_tasks (
    dir_check TEXT    PRIMARY KEY,
    tasks     INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO directory_tasks (dir_check, tasks)
SELECT dir_check, count(*) FROM task_directories GROUP BY dir_check;

CREATE TRIGGER directory_tasks_counted AFTER INSERT ON task_directories
BEGIN
    INSERT INTO directory_tasks (dir_check, tasks) VALUES (new.dir_check, 1)
    ON CONFLICT (dir_check) DO UPDATE SET tasks = tasks + 1;
END;

CREATE TRIGGER directory_tasks_uncounted AFTER DELETE ON task_directories
BEGIN
    UPDATE directory_tasks SET tasks = tasks - 1 WHERE dir_check = old.dir_check;
    DELETE FROM directory_tasks WHERE dir_check = old.dir_check AND tasks = 0;
END;
