-- Who set a task's name: 'cli' (`tasks add --name`, kept by `tasks sync` unless
-- --overwrite-names) or 'sms' (`tasks sync`/`import`, updated by the next sync).
-- Names stored before this column: from SMS for tasks SMS registered, else by hand.
ALTER TABLE tasks ADD COLUMN name_set_by TEXT CHECK (name_set_by IN ('cli', 'sms'));
UPDATE tasks SET name_set_by = CASE WHEN registered_by = 'sms' THEN 'sms' ELSE 'cli' END
  WHERE name IS NOT NULL;
