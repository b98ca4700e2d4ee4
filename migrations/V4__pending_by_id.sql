-- Leaner outbox: fewer index entries for the writer to keep per delivery.

-- The sender reads pending deliveries in id order from a cursor. With only an
-- index on next_attempt_at it walked the table itself (every delivery ever made);
-- this index holds only the pending ones, in id order, with what decides if one is due.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_pending ON deliveries (id, next_attempt_at) WHERE state = 'pending';

-- Attempts are read in id order (recording order) instead: the upstream health
-- on /deliveries is "since the last success".
DROP INDEX delivery_attempts_by_time;
