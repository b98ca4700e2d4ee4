-- A task's source server as SMS lists it (`tasks sync`): the pass-through lets a
-- credential limited to some tasks reach the sources of those tasks only.
ALTER TABLE tasks ADD COLUMN sms_source_id TEXT;
CREATE INDEX tasks_by_source ON tasks (sms_source_id) WHERE sms_source_id IS NOT NULL;
