-- name: rescue_stale_runs
-- Runs whose worker stopped heartbeating for $1 seconds (never by elapsed time alone):
-- requeue them with the attempt counted, or fail them when out of attempts. Up to $2.
WITH stale AS (
    SELECT id
    FROM runs
    WHERE status = 'running'
      AND heartbeat_at < now() - make_interval(secs => $1)
    ORDER BY heartbeat_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE runs r
SET status = CASE WHEN r.attempt < r.max_attempts THEN 'queued' ELSE 'failed' END,
    attempt = CASE WHEN r.attempt < r.max_attempts THEN r.attempt + 1 ELSE r.attempt END,
    available_at = now(),
    published_at = CASE WHEN r.attempt < r.max_attempts THEN NULL ELSE r.published_at END,
    publish_lease_until = NULL,
    finished_at = CASE WHEN r.attempt < r.max_attempts THEN NULL ELSE now() END,
    error = 'worker ' || coalesce(r.worker_id, '?') || ' stopped heartbeating during attempt '
            || r.attempt,
    heartbeat_at = NULL,
    updated_at = now()
FROM stale
WHERE r.id = stale.id
RETURNING r.id, r.status, r.attempt, r.worker_id;

-- name: expire_untakeable_runs
-- Runs created $2 seconds ago or more that no worker could take all that time (no worker
-- consuming the job's queue with its handler has been heard from for $2 seconds), among
-- those the republish sweep would look at ($1 s, doubling): they fail instead of waiting
-- for ever (one fresh message per 16 x $1 s). Up to $3.
WITH lost_jobs AS (
    -- The jobs no worker could take (few, and found once): only their runs are looked at,
    -- through the job index, so a backlog that live workers drain costs nothing here.
    SELECT j.id
    FROM jobs j
    WHERE NOT EXISTS (
        SELECT 1
        FROM workers w
        WHERE j.queue = ANY (w.queues)
          AND j.handler = ANY (w.handlers)
          AND w.last_heartbeat > now() - make_interval(secs => $2))
),
untakeable AS (
    SELECT lost.id
    FROM lost_jobs
    CROSS JOIN LATERAL (
        SELECT r.id
        FROM runs r
        WHERE r.job_id = lost_jobs.id
          AND r.status = 'queued'
          AND r.published_at < now() - make_interval(secs => $1)
          AND r.published_at < now() - make_interval(secs => $1 * power(2, least(r.republished, 4)))
          AND r.created_at < now() - make_interval(secs => $2)
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) lost
    LIMIT $3
)
UPDATE runs r
SET status = 'failed',
    finished_at = now(),
    error = 'no worker that can take it (queue ' || quote_literal(j.queue) || ', handler '
            || quote_literal(j.handler) || ') has been online for '
            || ($2 / 3600)::numeric(10, 1) || ' h (RUN_EXPIRE_WITHOUT_WORKER_SECONDS): start a '
            || 'worker with that queue in WORKER_QUEUES, then retry the run',
    updated_at = now()
FROM untakeable, jobs j
WHERE r.id = untakeable.id
  AND j.id = r.job_id
RETURNING r.id, r.attempt, j.queue, j.handler;

-- name: republish_unstarted_runs
-- Queued runs published $1 seconds ago or more (twice that after one fresh message, four
-- times after two, ... 16 times at most) that no worker started: their message may be lost (a purged
-- queue, a broker crash, dead-lettered during database trouble). Back to the outbox for
-- a fresh message; a copy that still waits in the queue is dropped by the claim. Up to $2.
WITH unstarted AS (
    SELECT id
    FROM runs
    WHERE status = 'queued'
      AND published_at < now() - make_interval(secs => $1)
      AND published_at < now() - make_interval(secs => $1 * power(2, least(republished, 4)))
    ORDER BY published_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE runs r
SET published_at = NULL,
    publish_lease_until = NULL,
    available_at = now(),
    republished = r.republished + 1,
    updated_at = now()
FROM unstarted
WHERE r.id = unstarted.id
RETURNING r.id, r.attempt, r.republished;

-- name: mark_workers_offline
-- Workers silent for $1 seconds.
UPDATE workers
SET status = 'offline'
WHERE status <> 'offline'
  AND last_heartbeat < now() - make_interval(secs => $1)
RETURNING id;

-- name: forget_workers
-- Offline workers not heard from for $1 seconds: long-gone processes (every restart of a
-- container is a new worker id) leave the list. Their runs keep their worker_id.
DELETE FROM workers
WHERE status = 'offline'
  AND last_heartbeat < now() - make_interval(secs => $1)
RETURNING id;

-- name: forget_scheduler_instances
-- Scheduler instances that have not passed for $1 seconds, stopped or killed.
DELETE FROM scheduler_instances
WHERE coalesce(last_tick_at, started_at) < now() - make_interval(secs => $1)
RETURNING id;

-- name: delete_old_runs
-- Retention: up to $2 finished runs older than $1 days, oldest first, by one scheduler
-- at a time (a transaction-level advisory lock; another instance deletes nothing then).
WITH turn AS (
    SELECT pg_try_advisory_xact_lock(hashtextextended('sundial.retention', 0)) AS mine
),
old AS (
    SELECT id
    FROM runs, turn
    WHERE turn.mine
      AND created_at < now() - $1::float8 * interval '1 day'
      AND status IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'dead')
    ORDER BY created_at
    LIMIT $2
)
DELETE FROM runs
USING old
WHERE runs.id = old.id;

-- name: compact_run_counts
-- Fold the rows writers appended to run_counts into one per status (migration 0014), so
-- that reading the counts stays a few rows; returns how many rows were folded.
SELECT compact_run_counts();
