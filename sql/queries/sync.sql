-- Queries of `sundial sync` (services/api/sync.py): the jobs declared in code, written in
-- one transaction under one advisory lock.

-- name: sync_lock
-- One sync at a time: a second one waits, then finds the first one's work done.
SELECT pg_advisory_xact_lock($1);

-- name: sync_jobs
-- The jobs a sync may write: those named by a declaration ($1) and those code manages.
SELECT *
FROM jobs
WHERE name = ANY($1::text[])
   OR managed_by = 'code'
ORDER BY id
FOR UPDATE;

-- name: sync_schedules
-- The schedules of those jobs.
SELECT *
FROM schedules
WHERE job_id = ANY($1::bigint[])
ORDER BY id
FOR UPDATE;

-- name: manage_job
-- The job is managed by code and declared (again).
UPDATE jobs
SET managed_by = 'code',
    undeclared_at = NULL
WHERE id = $1;

-- name: undeclare_job
-- Code no longer declares the job: it is disabled (its slots pass without runs), its
-- schedules and history stay.
UPDATE jobs
SET enabled = false,
    undeclared_at = now(),
    updated_at = now()
WHERE id = $1;

-- name: key_schedule
-- The schedule is the one with this key in its job's declaration.
UPDATE schedules
SET managed_key = $2
WHERE id = $1;

-- name: release_schedules
-- Schedules their job's declaration no longer holds: inactive, no longer keyed (open to
-- deletion), their runs kept.
UPDATE schedules
SET is_active = false,
    next_run_at = NULL,
    managed_key = NULL,
    updated_at = now()
WHERE id = ANY($1::bigint[]);
