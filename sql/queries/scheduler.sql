-- name: claim_due_schedules
-- Lock up to $1 due schedules (due within $2 seconds of look-ahead) and up to $1 never
-- planned ones (next_run_at IS NULL), with what their runs need. Two CTEs, each
-- served by the partial index on next_run_at and returning the columns of the rows it
-- locked (no second look-up of them), so a tick stays O(due). The payload as jsonb's
-- text: the tick puts it in the run messages as is.
WITH due AS (
    SELECT id, job_id, kind, interval_seconds, cron, run_at, timezone, jitter_seconds,
           start_at, end_at, misfire_policy, misfire_grace_seconds, created_at, next_run_at,
           true AS due
    FROM schedules
    WHERE is_active
      AND next_run_at <= now() + make_interval(secs => $2)
    ORDER BY next_run_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
),
fresh AS (
    SELECT id, job_id, kind, interval_seconds, cron, run_at, timezone, jitter_seconds,
           start_at, end_at, misfire_policy, misfire_grace_seconds, created_at, next_run_at,
           false AS due
    FROM schedules
    WHERE is_active
      AND next_run_at IS NULL
    LIMIT $1
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    SELECT * FROM due
    UNION ALL
    SELECT * FROM fresh
)
SELECT s.id, s.job_id, s.kind, s.interval_seconds, s.cron, s.run_at, s.timezone,
       s.jitter_seconds, s.start_at, s.end_at, s.misfire_policy, s.misfire_grace_seconds,
       s.created_at, s.next_run_at, s.due,
       j.enabled, j.name AS job, j.handler, j.payload::text AS payload_json, j.queue,
       j.timeout_seconds, j.max_attempts,
       now() AS db_now
FROM claimed s
JOIN jobs j ON j.id = s.job_id;

-- name: record_runs_and_advance
-- One statement, one round trip: one run per planned slot ($1-$5), with its job's
-- priority, a slot that already has its run left alone; runs available now are leased to
-- this publisher for $6 seconds, later ones (jitter, look-ahead) and those of a paused
-- queue are left to the relay (which holds the latter until the queue is resumed).
-- And every claimed schedule ($7-$9) moved on: next slot, active flag, last slot run and
-- run count (from the runs this statement inserted). Returns the runs inserted.
WITH inserted AS (
    INSERT INTO runs (job_id, schedule_id, scheduled_for, trigger, status, attempt,
                      max_attempts, available_at, publish_lease_until, priority)
    SELECT t.job_id, t.schedule_id, t.scheduled_for, 'schedule', 'queued', 1,
           t.max_attempts, t.available_at,
           -- job_paused(j.id), for the whole batch at once (a hashed subplan, not a
           -- function call per run).
           CASE WHEN t.available_at <= now()
                     AND j.queue NOT IN (SELECT queue FROM queue_pauses)
                     AND NOT EXISTS (SELECT 1 FROM queue_pauses WHERE queue = '*')
                THEN now() + make_interval(secs => $6) END,
           j.priority
    FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::timestamptz[],
                $5::integer[])
         AS t(schedule_id, job_id, scheduled_for, available_at, max_attempts)
    JOIN jobs j ON j.id = t.job_id
    ON CONFLICT (schedule_id, scheduled_for) DO NOTHING
    RETURNING id, schedule_id, scheduled_for, publish_lease_until IS NOT NULL AS leased
),
per_schedule AS (
    SELECT schedule_id, count(*)::integer AS runs, max(scheduled_for) AS last_run_at
    FROM inserted
    GROUP BY schedule_id
),
advanced AS (
    UPDATE schedules s
    SET next_run_at = t.next_run_at,
        is_active = t.is_active,
        last_run_at = COALESCE(p.last_run_at, s.last_run_at),
        run_count = s.run_count + COALESCE(p.runs, 0),
        -- Planned again: an error of a postponed tick is over (dispatch trouble stays
        -- with its failure_count until a run publishes).
        last_error = CASE WHEN s.failure_count = 0 THEN NULL ELSE s.last_error END,
        updated_at = now()
    FROM unnest($7::bigint[], $8::timestamptz[], $9::boolean[]) AS t(id, next_run_at, is_active)
         LEFT JOIN per_schedule p ON p.schedule_id = t.id
    WHERE s.id = t.id
)
SELECT id, schedule_id, scheduled_for, leased FROM inserted;

-- name: set_aside_schedules
-- Schedules that cannot be planned stop being claimed until a person fixes them through
-- the API or the CLI: inactive, no next slot, last_error ($2) saying what to fix.
UPDATE schedules s
SET is_active = false,
    next_run_at = NULL,
    set_aside_at = now(),
    last_error = t.error,
    updated_at = now()
FROM unnest($1::bigint[], $2::text[]) AS t(id, error)
WHERE s.id = t.id;

-- name: postpone_schedules
-- Schedules whose planning failed in a way validation does not know (a fault, not a bad
-- value): they stay active and are tried again in $3 seconds, last_error ($2) saying why.
UPDATE schedules s
SET next_run_at = now() + make_interval(secs => $3),
    last_error = t.error,
    updated_at = now()
FROM unnest($1::bigint[], $2::text[]) AS t(id, error)
WHERE s.id = t.id;

-- name: record_publish_failures
-- The broker refused or could not be reached: count it on each schedule concerned.
UPDATE schedules s
SET failure_count = s.failure_count + t.failures,
    last_error = $3,
    updated_at = now()
FROM unnest($1::bigint[], $2::integer[]) AS t(id, failures)
WHERE s.id = t.id;

-- name: seconds_until_next_work
-- How long the scheduler may sleep: until the earliest active schedule's next slot
-- (`schedules`) and until the earliest unpublished run not held by a publisher becomes
-- available (`outbox`), in seconds from now; NULL where there is nothing. The outbox part
-- walks the runs_outbox index from its start, past the runs publishers hold (at most the
-- batches in flight), whatever the outbox's size; held runs whose lease runs out are
-- found by the relay's once-a-second sweep. The runs of paused queues wait for a resume
-- (which wakes the scheduler), not for a time: they are passed over.
SELECT EXTRACT(EPOCH FROM (LEAST(
           (SELECT min(next_run_at) FROM schedules WHERE is_active),
           (SELECT now() FROM schedules WHERE is_active AND next_run_at IS NULL LIMIT 1)
       ) - now()))::float8 AS schedules,
       EXTRACT(EPOCH FROM (
           (SELECT available_at
            FROM runs
            WHERE status = 'queued'
              AND published_at IS NULL
              AND (publish_lease_until IS NULL OR publish_lease_until < now())
              AND NOT job_paused(job_id)
            ORDER BY available_at
            LIMIT 1)
       - now()))::float8 AS outbox;

-- name: register_instance
-- This process, in scheduler_instances (a restart with the same name starts afresh),
-- with the tzdata release it computes fire times with ($4).
INSERT INTO scheduler_instances (id, host, pid, started_at, status, tzdata)
VALUES ($1, $2, $3, now(), 'running', $4)
ON CONFLICT (id) DO UPDATE
SET host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = now(), status = 'running',
    tzdata = EXCLUDED.tzdata, ticks = 0, dispatched = 0, failures = 0,
    broker_blocked_since = NULL, broker_blocked_reason = NULL;

-- name: record_status
-- After a pass: this instance's counters, whether the broker blocks its publishing
-- (since $9, for the reason $10; both NULL when not) and the keys the API reads
-- (scheduler_last_run, scheduler_next_run, ISO 8601). The instance's row comes back
-- (host $6, pid $7, tzdata $8) if it was forgotten while this process could not pass.
WITH instance AS (
    INSERT INTO scheduler_instances (id, host, pid, started_at, status, tzdata, last_tick_at,
                                     next_tick_at, ticks, dispatched, failures,
                                     broker_blocked_since, broker_blocked_reason)
    VALUES ($1, $6, $7, now(), 'running', $8, now(), now() + make_interval(secs => $2),
            $3, $4, $5, $9, $10)
    ON CONFLICT (id) DO UPDATE
    SET last_tick_at = now(),
        next_tick_at = now() + make_interval(secs => $2),
        ticks = $3, dispatched = $4, failures = $5, status = 'running',
        broker_blocked_since = $9, broker_blocked_reason = $10
)
INSERT INTO system_settings (key, value, updated_at)
VALUES ('scheduler_last_run', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), now()),
       ('scheduler_next_run',
        to_char((now() + make_interval(secs => $2)) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        now())
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;

-- name: stop_instance
-- A clean exit.
UPDATE scheduler_instances
SET status = 'stopped', next_tick_at = NULL, broker_blocked_since = NULL,
    broker_blocked_reason = NULL
WHERE id = $1;

-- name: take_trigger_request
-- "Trigger now" from the API: one scheduler serves it and clears the flag.
UPDATE system_settings
SET value = 'false', updated_at = now()
WHERE key = 'scheduler_trigger_requested'
  AND value = 'true'
RETURNING key;
