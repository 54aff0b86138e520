-- A run can be published and never start: its message was purged with its queue, lost by
-- a broker that crashed, or dead-lettered while the database could not be written. The
-- scheduler's sweep hands such runs back to the outbox for a fresh message (a second copy
-- of a message is harmless: the claim runs an attempt once). `republished` counts the
-- fresh messages of the current attempt, so each comes twice as late as the one before
-- and a long backlog (no worker for an hour) costs a few copies, not one per sweep.
ALTER TABLE runs ADD COLUMN republished integer NOT NULL DEFAULT 0;

-- The sweep looks only at queued runs that were published, oldest first.
CREATE INDEX runs_unstarted ON runs (published_at) WHERE status = 'queued' AND published_at IS NOT NULL;
