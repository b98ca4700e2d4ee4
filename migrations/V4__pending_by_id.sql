-- Leaner outbox: fewer index entries for the writer to keep per delivery.

-- The sender reads pending deliveries in id order from a cursor. With only an
-- index on next_attempt_at it walked the table itself (every delivery ever made);
-- this index holds only the pending ones, in id order, with what decides if one is due.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_pending ON deliveries (id, next_attempt_at) WHERE state = 'pending';

-- Attempts are read in id order (recording order) instead: the upstream health
-- on /deliveries is "since the last success".
DROP INDEX delivery_attempts_by_time;

-- A task's waiting deliveries per group (live: replay_id NULL, or one replay): the
-- sender asks for the oldest one of a group, which without replay_id in the key
-- meant walking every other group's (a replay of many uploads of one task read
-- them all for each upload).
DROP INDEX deliveries_pending_by_task;
CREATE INDEX deliveries_pending_by_task ON deliveries (task_id, target, replay_id, upload_id)
    WHERE state = 'pending';
