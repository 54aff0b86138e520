-- 0009_run_arguments: runs with arguments, idempotency keys, backfill, priority.
--
-- A run started with arguments keeps the payload it executes: `payload` (secret fields
-- masked, as jobs.payload) and `secret_payload` (those fields, encrypted, as
-- jobs.secret_payload). NULL means "the job's payload as it is when the run starts",
-- which is what scheduled runs and plain "run now" runs do.
ALTER TABLE runs ADD COLUMN payload jsonb;
ALTER TABLE runs ADD COLUMN secret_payload text;

-- A trigger with an idempotency key makes one run per job and key; a repeat finds that
-- run. The key is the uniqueness, so concurrent identical requests insert one row
-- (INSERT ... ON CONFLICT). A key older than its window is taken off its first run so
-- the key can be used again (services/api/service.py, IDEMPOTENCY_WINDOW).
ALTER TABLE runs ADD COLUMN idempotency_key text;
ALTER TABLE runs ADD CONSTRAINT runs_idempotency_key_length
    CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 200);
CREATE UNIQUE INDEX runs_idempotency ON runs (job_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Backfilled runs say so in the history; they share the tick's slot key
-- (UNIQUE (schedule_id, scheduled_for)), so a slot is never run twice by either.
ALTER TABLE runs DROP CONSTRAINT runs_trigger;
ALTER TABLE runs ADD CONSTRAINT runs_trigger
    CHECK (trigger IN ('schedule', 'manual', 'retry', 'backfill'));

-- Priority (0-9) is the run's, copied from its job when the run is made (a trigger may
-- set its own): a worker with a free slot takes the highest-priority run waiting on its
-- queue before the one its message names (worker.sql, claim_run). Runs waiting now take
-- their job's priority.
ALTER TABLE runs ADD COLUMN priority smallint NOT NULL DEFAULT 0;
ALTER TABLE runs ADD CONSTRAINT runs_priority_range CHECK (priority BETWEEN 0 AND 9);
UPDATE runs r
SET priority = j.priority
FROM jobs j
WHERE j.id = r.job_id
  AND r.status = 'queued'
  AND j.priority <> 0;

-- The claim looks for a better run among the published, waiting runs above priority 0,
-- job by job of the message's queue (a queue is the jobs', not the runs'): one probe per
-- job, whatever waits elsewhere. With every job at 0 (the common case) the index is empty.
CREATE INDEX runs_waiting_priority ON runs (job_id, priority DESC, id)
    WHERE status = 'queued' AND published_at IS NOT NULL AND priority > 0;
CREATE INDEX jobs_queue ON jobs (queue);
