-- Queries of the HTTP API and the admin CLI (services/api/service.py serves both).

-- name: db_now
-- The database's clock: schedule math never trusts the host's.
SELECT now();

-- name: audit
-- Record one write: who, what, on which object; never secret values.
INSERT INTO audit_log (actor, action, target_type, target_id, details)
VALUES ($1, $2, $3, $4, $5);

-- api keys ------------------------------------------------------------------------

-- name: insert_api_key
-- A new key: only its lookup prefix and hash are kept.
INSERT INTO api_keys (name, prefix, key_hash, role, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(days => $5::integer))
RETURNING id, name, prefix, role, created_at, expires_at, revoked_at, last_used_at;

-- name: find_api_key
-- The key with this prefix, with its state judged by the database's clock (and the
-- seconds it has left, NULL if it never expires), and whether its last_used_at is due
-- to be written (touch_api_key).
SELECT id, name, key_hash, role,
       revoked_at IS NOT NULL AS revoked,
       expires_at IS NOT NULL AND expires_at <= now() AS expired,
       EXTRACT(EPOCH FROM expires_at - now())::float8 AS expires_in_s,
       last_used_at IS NULL OR last_used_at < now() - interval '1 minute' AS touch_due
FROM api_keys
WHERE prefix = $1;

-- name: touch_api_key
-- last_used_at, written at most once a minute per key so reads do not all write.
UPDATE api_keys
SET last_used_at = now()
WHERE id = $1
  AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');

-- name: list_api_keys
-- Every key, newest first, without hashes.
SELECT id, name, prefix, role, created_at, expires_at, revoked_at, last_used_at
FROM api_keys
ORDER BY id DESC;

-- name: revoke_api_key
-- Revoke by id or prefix; a key already revoked keeps its first revocation time.
UPDATE api_keys
SET revoked_at = COALESCE(revoked_at, now())
WHERE id = $1 OR prefix = $2
RETURNING id, name, prefix, role, created_at, expires_at, revoked_at, last_used_at;

-- jobs ----------------------------------------------------------------------------

-- name: list_jobs
-- Jobs by name, with their next slot and latest run for an overview.
SELECT j.id, j.name, j.description, j.handler, j.payload, j.secret_payload IS NOT NULL AS has_secrets,
       j.queue, j.priority, j.timeout_seconds, j.max_attempts, j.retry_backoff_seconds,
       j.retry_backoff_max_seconds, j.concurrency_policy, j.enabled, j.created_at, j.updated_at,
       CASE WHEN j.undeclared_at IS NULL THEN j.managed_by END AS managed_by, j.undeclared_at,
       (SELECT count(*) FROM schedules s WHERE s.job_id = j.id) AS schedule_count,
       (SELECT min(s.next_run_at) FROM schedules s WHERE s.job_id = j.id AND s.is_active) AS next_run_at,
       last.status AS last_run_status,
       last.finished_at AS last_run_finished_at
FROM jobs j
LEFT JOIN LATERAL (
    SELECT r.status, r.finished_at
    FROM runs r
    WHERE r.job_id = j.id
    ORDER BY r.id DESC
    LIMIT 1
) last ON true
WHERE ($1::boolean IS NULL OR j.enabled = $1)
ORDER BY j.name
LIMIT $2 OFFSET $3;

-- name: count_jobs
-- How many jobs list_jobs pages through (the X-Total-Count of GET /api/jobs).
SELECT count(*) FROM jobs WHERE ($1::boolean IS NULL OR enabled = $1);

-- name: get_job
-- One job by id ($1) or name ($2); an id match wins over a name that looks like one.
-- managed_by is 'code' while code declares the job (`sundial sync`).
SELECT id, name, description, handler, payload, secret_payload,
       secret_payload IS NOT NULL AS has_secrets,
       queue, priority, timeout_seconds, max_attempts, retry_backoff_seconds,
       retry_backoff_max_seconds, concurrency_policy, enabled, created_at, updated_at,
       CASE WHEN undeclared_at IS NULL THEN managed_by END AS managed_by, undeclared_at
FROM jobs
WHERE id = $1 OR name = $2
ORDER BY (id IS NOT DISTINCT FROM $1) DESC
LIMIT 1;

-- name: lock_job
-- Lock job $1 until the transaction ends: an edit writes every field of the row it read,
-- so no concurrent write (another edit, a `sundial sync`) may come in between.
SELECT id FROM jobs WHERE id = $1 FOR UPDATE;

-- name: insert_job
-- A new job; a duplicate name raises a unique violation (409).
INSERT INTO jobs (name, description, handler, payload, secret_payload, queue, priority,
                  timeout_seconds, max_attempts, retry_backoff_seconds,
                  retry_backoff_max_seconds, concurrency_policy, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
RETURNING id;

-- name: update_job
-- Every field of a job at once (the service merged the change into the current row).
UPDATE jobs
SET name = $2, description = $3, handler = $4, payload = $5, secret_payload = $6,
    queue = $7, priority = $8, timeout_seconds = $9, max_attempts = $10,
    retry_backoff_seconds = $11, retry_backoff_max_seconds = $12,
    concurrency_policy = $13, enabled = $14, updated_at = now()
WHERE id = $1;

-- name: delete_job
-- A job goes with its schedules and its run history (ON DELETE CASCADE).
DELETE FROM jobs WHERE id = $1 RETURNING id;

-- schedules -----------------------------------------------------------------------

-- name: list_schedules
-- Schedules, optionally of one job, by id.
SELECT s.*, j.name AS job
FROM schedules s
JOIN jobs j ON j.id = s.job_id
WHERE ($1::bigint IS NULL OR s.job_id = $1)
  AND ($2::boolean IS NULL OR s.is_active = $2)
ORDER BY s.id
LIMIT $3 OFFSET $4;

-- name: count_schedules
-- How many schedules list_schedules pages through (X-Total-Count of GET /api/schedules).
SELECT count(*)
FROM schedules
WHERE ($1::bigint IS NULL OR job_id = $1)
  AND ($2::boolean IS NULL OR is_active = $2);

-- name: get_schedule
-- One schedule with its job's name.
SELECT s.*, j.name AS job
FROM schedules s
JOIN jobs j ON j.id = s.job_id
WHERE s.id = $1;

-- name: lock_schedule
-- The schedule, locked for an update in this transaction, with its job's name and
-- whether code declares that job (then only pausing and resuming are left to people).
SELECT s.*, j.name AS job, (j.managed_by = 'code' AND j.undeclared_at IS NULL) AS job_managed
FROM schedules s
JOIN jobs j ON j.id = s.job_id
WHERE s.id = $1
FOR UPDATE OF s;

-- name: insert_schedule
-- A new schedule with its first slot already computed (the tick then finds it due).
INSERT INTO schedules (job_id, kind, interval_seconds, cron, run_at, timezone,
                       jitter_seconds, start_at, end_at, misfire_policy,
                       misfire_grace_seconds, is_active, next_run_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now(), now())
RETURNING id;

-- name: update_schedule
-- Every field of a schedule at once, with its recomputed next slot. The fields passed
-- validation: a schedule the scheduler had set aside is back, its error cleared.
UPDATE schedules
SET kind = $2, interval_seconds = $3, cron = $4, run_at = $5, timezone = $6,
    jitter_seconds = $7, start_at = $8, end_at = $9, misfire_policy = $10,
    misfire_grace_seconds = $11, is_active = $12, next_run_at = $13,
    last_error = CASE WHEN set_aside_at IS NULL THEN last_error END,
    set_aside_at = NULL,
    updated_at = now()
WHERE id = $1;

-- name: delete_schedule
-- Its runs stay in the history, detached (ON DELETE SET NULL).
DELETE FROM schedules WHERE id = $1 RETURNING id;

-- runs ----------------------------------------------------------------------------

-- name: insert_manual_run
-- A run of the job with id $1 or name $6 (as get_job) requested by a person or a
-- program ($2: who), leased to this publisher for $3 seconds (NULL: no publisher here,
-- the scheduler's relay publishes it), with its audit_log row (action $4, details $5
-- plus the job's name): one statement, so one transaction. Its own payload $7 (secret
-- fields masked) and encrypted secret fields $8 (NULL: the job's payload at start),
-- idempotency key $9 and priority $10 (NULL: the job's). Returns what its message needs;
-- no row if there is no such job, or if the job has a run with key $9 already
-- (find_keyed_run finds it: a concurrent request with the same key waits here for the
-- first to commit, then inserts nothing). The API's trigger and retry and the client's
-- defer (in the caller's transaction) all write runs with it (sundial.core.enqueue);
-- $5 and $7 are JSON text, so a connection without Sundial's jsonb codec binds them too.
-- queue_paused: whether its queue (or every queue) is paused now, so that the publisher
-- holds it back without reading queue_pauses again. With $11, its transaction commits
-- without waiting for the WAL flush: the caller waits for a later commit's flush before
-- it answers (sundial.core.enqueue), so the run is durable before anyone is told of it.
WITH job AS (
    SELECT id, name, handler, payload, queue, priority, timeout_seconds, max_attempts
    FROM jobs
    WHERE id = $1 OR name = $6
    ORDER BY (id IS NOT DISTINCT FROM $1) DESC
    LIMIT 1
),
run AS (
    INSERT INTO runs (job_id, schedule_id, scheduled_for, trigger, triggered_by, status,
                      attempt, max_attempts, available_at, publish_lease_until,
                      payload, secret_payload, idempotency_key, priority)
    SELECT job.id, NULL, now(), 'manual', $2, 'queued', 1, job.max_attempts, now(),
           now() + make_interval(secs => $3), $7::text::jsonb, $8, $9,
           coalesce($10, job.priority)
    FROM job
    WHERE NOT $11::boolean OR set_config('synchronous_commit', 'off', true) IS NOT NULL
    ON CONFLICT (job_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, job_id, schedule_id, scheduled_for, attempt, payload
),
audit AS (
    INSERT INTO audit_log (actor, action, target_type, target_id, details)
    SELECT $2, $4, 'run', run.id::text, $5::text::jsonb || jsonb_build_object('job', job.name)
    FROM run, job
)
SELECT run.id AS run_id, run.job_id, job.name AS job, job.handler,
       coalesce(run.payload, job.payload) AS payload, job.queue,
       run.schedule_id, run.scheduled_for, run.attempt, job.timeout_seconds,
       EXISTS (SELECT 1 FROM queue_pauses p WHERE p.queue IN (job.queue, '*')) AS queue_paused
FROM run
JOIN job ON job.id = run.job_id;

-- name: expire_idempotency_key
-- Key $2 of job $1 was first used more than $3 seconds ago: it is free again (the run
-- that had it stays, without it).
UPDATE runs
SET idempotency_key = NULL,
    updated_at = now()
WHERE job_id = $1
  AND idempotency_key = $2
  AND created_at < now() - make_interval(secs => $3);

-- name: find_keyed_run
-- The run of job $1 made with idempotency key $2, as it is now.
SELECT id, status, job_id
FROM runs
WHERE job_id = $1
  AND idempotency_key = $2;

-- name: run_arguments
-- What a retry of run $1 runs again: its own payload (NULL: the job's) and priority;
-- its status and its job's name.
SELECT r.job_id, j.name AS job, r.status, r.payload, r.secret_payload, r.priority
FROM runs r
JOIN jobs j ON j.id = r.job_id
WHERE r.id = $1;

-- name: backfill_slots
-- Which of the slots $2 of schedule $1 have a run already (the tick's or a backfill's).
SELECT scheduled_for
FROM runs
WHERE schedule_id = $1
  AND scheduled_for = ANY($2::timestamptz[]);

-- name: insert_backfill_runs
-- One run of job $1 per slot $3 of schedule $2, available now, for the relay to publish;
-- a slot that has its run already is left alone (the slot key the tick uses). With the
-- audit row (actor $4, details $5).
WITH run AS (
    INSERT INTO runs (job_id, schedule_id, scheduled_for, trigger, triggered_by, status,
                      attempt, max_attempts, available_at, priority)
    SELECT j.id, $2, t.slot, 'backfill', $4, 'queued', 1, j.max_attempts, now(), j.priority
    FROM jobs j, unnest($3::timestamptz[]) AS t(slot)
    WHERE j.id = $1
    ON CONFLICT (schedule_id, scheduled_for) DO NOTHING
    RETURNING id, scheduled_for
),
audit AS (
    INSERT INTO audit_log (actor, action, target_type, target_id, details)
    SELECT $4, 'schedule.backfill', 'schedule', $2::text,
           $5::jsonb || jsonb_build_object('created', count(*))
    FROM run
)
SELECT id, scheduled_for FROM run ORDER BY scheduled_for;

-- name: list_runs
-- History, newest first, keyset-paginated ($6: the last id of the previous page),
-- optionally of the jobs of one queue ($8), with the number of runs the filters select
-- whatever the cursor (`total`, on every row; one row of NULLs but `total` for an empty
-- page). Newest first is by id; with a time bound ($4, $5) by creation time, then id (the
-- index on both walks from the bound; by id, a page months back would read every newer
-- run first). One of the page branches runs, the others are a constant false.
-- The page is found in two steps: first the ids of its runs, from filters on columns the
-- indexes of `runs` carry (id, job_id, status, schedule_id, created_at: an index alone
-- answers, however many runs a filter passes over), then those few rows with their job.
-- The queue is a filter on job_id (its jobs, hashed once), not a join, for the same reason.
-- With statuses and no time bound, each status's runs are walked newest first by their
-- own index (runs_status_id) and the pages merged: a rare status, or several, reads a
-- page per status, not the history until enough of them turn up.
-- NOT MATERIALIZED: the page and the count each get their own plan (the page walks an
-- index and stops after $7 rows). The count: with no filter but the status, the counts
-- the database keeps (run_counts: exact, a few rows); otherwise the matching runs counted
-- up to $9 at most (a bound on its cost whatever the history; the service then says "at
-- least $9 - 1", total_exact false).
WITH matching AS NOT MATERIALIZED (
    SELECT r.id, r.created_at, r.status, r.job_id
    FROM runs r
    WHERE ($1::bigint IS NULL OR r.job_id = $1)
      -- A schedule's runs are its job's: the job's history index finds them newest first.
      AND ($2::bigint IS NULL OR (r.schedule_id = $2
                                  AND r.job_id = (SELECT job_id FROM schedules WHERE id = $2)))
      AND ($4::timestamptz IS NULL OR r.created_at >= $4)
      AND ($5::timestamptz IS NULL OR r.created_at < $5)
),
-- The ids of the queue's jobs ($8), for a filter on job_id that an index's job_id
-- answers (no join). The pages walk an index in their order and test each run's job
-- (`job_id + 0`: not a lookup of each job's runs, which would then all be sorted); the
-- count looks up each job's runs in the job's history index.
queue_jobs AS (
    SELECT ARRAY(SELECT id FROM jobs WHERE queue = $8) AS ids
),
page_ids AS (
    (SELECT id
     FROM matching
     WHERE $3::text[] IS NULL AND $4::timestamptz IS NULL AND $5::timestamptz IS NULL
       AND ($6::bigint IS NULL OR id < $6)
       AND ($8::text IS NULL OR job_id + 0 = ANY((SELECT ids FROM queue_jobs)::bigint[]))
     ORDER BY id DESC
     LIMIT $7)
    UNION ALL
    (SELECT m.id
     FROM (SELECT DISTINCT unnest($3::text[])) AS s (status)
     CROSS JOIN LATERAL (
         SELECT id
         FROM matching
         WHERE matching.status = s.status
           AND ($6::bigint IS NULL OR id < $6)
           AND ($8::text IS NULL OR job_id + 0 = ANY((SELECT ids FROM queue_jobs)::bigint[]))
         ORDER BY id DESC
         LIMIT $7
     ) AS m
     WHERE $3::text[] IS NOT NULL AND $4::timestamptz IS NULL AND $5::timestamptz IS NULL
     ORDER BY m.id DESC
     LIMIT $7)
    UNION ALL
    (SELECT id
     FROM matching
     WHERE ($4::timestamptz IS NOT NULL OR $5::timestamptz IS NOT NULL)
       AND ($3::text[] IS NULL OR status = ANY($3))
       AND ($8::text IS NULL OR job_id + 0 = ANY((SELECT ids FROM queue_jobs)::bigint[]))
       AND ($6::bigint IS NULL
            OR (created_at, id) < (SELECT created_at, id FROM runs WHERE id = $6))
     ORDER BY created_at DESC, id DESC
     LIMIT $7)
),
page AS (
    SELECT r.id, r.job_id, j.name AS job, r.schedule_id, r.scheduled_for, r.trigger,
           r.triggered_by, r.status, r.attempt, r.max_attempts, r.available_at,
           r.published_at, r.cancel_requested, r.started_at, r.finished_at, r.heartbeat_at,
           r.worker_id, r.error, r.priority, r.created_at, r.updated_at,
           EXTRACT(EPOCH FROM (r.finished_at - r.started_at))::float8 AS duration_s
    FROM page_ids p
    JOIN runs r ON r.id = p.id
    JOIN jobs j ON j.id = r.job_id
),
-- Up to $9 matching runs; with a time bound, walked in the page's order from the bound
-- (without it, the planner may scan the table from its oldest end, counting on finding
-- recent runs early).
capped AS (
    (SELECT FROM matching
     WHERE $4::timestamptz IS NULL AND $5::timestamptz IS NULL
       AND ($3::text[] IS NULL OR status = ANY($3))
       -- Without a status, each of the queue's jobs' runs from the job's history index;
       -- with one, the status's runs from its index, each job_id looked up in a hash.
       AND ($8::text IS NULL
            OR ($3::text[] IS NULL AND job_id = ANY((SELECT ids FROM queue_jobs)::bigint[]))
            OR ($3::text[] IS NOT NULL
                AND job_id IN (SELECT unnest(ids) FROM queue_jobs)))
     LIMIT $9)
    UNION ALL
    (SELECT FROM matching
     WHERE ($4::timestamptz IS NOT NULL OR $5::timestamptz IS NOT NULL)
       AND ($3::text[] IS NULL OR status = ANY($3))
       AND ($8::text IS NULL OR job_id + 0 = ANY((SELECT ids FROM queue_jobs)::bigint[]))
     ORDER BY created_at DESC, id DESC
     LIMIT $9)
),
total AS (
    SELECT CASE WHEN $1::bigint IS NULL AND $2::bigint IS NULL AND $4::timestamptz IS NULL
                     AND $5::timestamptz IS NULL AND $8::text IS NULL
                THEN (SELECT COALESCE(sum(n), 0)::bigint FROM run_counts
                      WHERE $3::text[] IS NULL OR status = ANY($3))
                ELSE (SELECT count(*) FROM capped)
           END AS n
)
SELECT page.*, total.n AS total
FROM total
LEFT JOIN page ON true
ORDER BY CASE WHEN $4::timestamptz IS NOT NULL OR $5::timestamptz IS NOT NULL
              THEN page.created_at END DESC,
         page.id DESC;

-- name: get_run
-- One run with everything: result, error, output, attempts, timings.
SELECT r.id, r.job_id, j.name AS job, j.handler, r.schedule_id, r.scheduled_for, r.trigger,
       r.triggered_by, r.status, r.attempt, r.max_attempts, r.available_at,
       r.published_at, r.cancel_requested, r.started_at, r.finished_at, r.heartbeat_at,
       r.worker_id, r.result, r.error, r.output, r.output_at, r.priority, r.payload,
       r.idempotency_key, r.created_at, r.updated_at,
       EXTRACT(EPOCH FROM (r.finished_at - r.started_at))::float8 AS duration_s
FROM runs r
JOIN jobs j ON j.id = r.job_id
WHERE r.id = $1;

-- name: cancel_run
-- A queued run is cancelled at once; a running one is asked to stop (its worker ends it
-- within a heartbeat). Final runs are left alone (no row).
UPDATE runs
SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
    cancel_requested = true,
    updated_at = now()
WHERE id = $1
  AND status IN ('queued', 'running')
RETURNING id, status;

-- name: cancel_runs
-- cancel_run for many runs at once ($1: their ids): those still queued or running.
UPDATE runs r
SET status = CASE WHEN r.status = 'queued' THEN 'cancelled' ELSE r.status END,
    finished_at = CASE WHEN r.status = 'queued' THEN now() ELSE r.finished_at END,
    cancel_requested = true,
    updated_at = now()
FROM unnest($1::bigint[]) AS t(id)
WHERE r.id = t.id
  AND r.status IN ('queued', 'running')
RETURNING r.id, r.status;

-- name: insert_retry_runs
-- A new manual run (attempt 1) of the job of each run in $1 that is still in one of the
-- statuses $5, requested by $2, leased to this publisher for $3 seconds (NULL: the
-- scheduler's relay publishes them), with one audit_log row (action $6, target run $7
-- or none; $4: its details plus the retried and new run ids). Each new run has its
-- original's payload, secret fields and priority and retry_of the first run of its chain;
-- one per chain, and none for a chain that has a retry queued, running or succeeded
-- (runs_live_retry). Returns what their messages need.
WITH original AS (
    SELECT DISTINCT ON (coalesce(r.retry_of, r.id))
           r.id, coalesce(r.retry_of, r.id) AS root, r.job_id, r.payload, r.secret_payload,
           r.priority
    FROM unnest($1::bigint[]) AS t(id)
    JOIN runs r ON r.id = t.id
    WHERE r.status = ANY($5::text[])
    ORDER BY coalesce(r.retry_of, r.id), r.id DESC
),
run AS (
    INSERT INTO runs (job_id, schedule_id, scheduled_for, trigger, triggered_by, status,
                      attempt, max_attempts, available_at, publish_lease_until,
                      payload, secret_payload, priority, retry_of)
    SELECT j.id, NULL, now(), 'manual', $2, 'queued', 1, j.max_attempts, now(),
           now() + make_interval(secs => $3), original.payload, original.secret_payload,
           coalesce(original.priority, j.priority), original.root
    FROM original
    JOIN jobs j ON j.id = original.job_id
    ORDER BY original.root
    ON CONFLICT (retry_of) WHERE retry_of IS NOT NULL AND status IN ('queued', 'running', 'succeeded')
    DO NOTHING
    RETURNING id, job_id, schedule_id, scheduled_for, attempt, payload, retry_of
),
audit AS (
    INSERT INTO audit_log (actor, action, target_type, target_id, details)
    SELECT $2, $6, 'run', $7,
           $4::jsonb || jsonb_build_object(
               'retried', (SELECT jsonb_agg(o.id ORDER BY o.id) FROM original o
                           WHERE o.root IN (SELECT retry_of FROM run)),
               'queued', (SELECT jsonb_agg(id ORDER BY id) FROM run))
)
SELECT run.id AS run_id, run.job_id, j.name AS job, j.handler,
       coalesce(run.payload, j.payload) AS payload, j.queue,
       run.schedule_id, run.scheduled_for, run.attempt, j.timeout_seconds
FROM run
JOIN jobs j ON j.id = run.job_id
ORDER BY run.id;

-- name: live_retry
-- The retry of run $1's chain that is queued, running or succeeded, if any.
SELECT x.id, x.status
FROM runs r
JOIN runs x ON x.retry_of = coalesce(r.retry_of, r.id)
WHERE r.id = $1
  AND x.retry_of IS NOT NULL
  AND x.status IN ('queued', 'running', 'succeeded');

-- queues --------------------------------------------------------------------------

-- name: list_queues
-- Every queue a job names or a pause holds ('*': all of them), with its pause, its jobs
-- and its queued runs (published or held), counted once for all queues from the queued
-- runs alone (the status index), whatever the history.
WITH names AS (
    SELECT queue FROM jobs
    UNION
    SELECT queue FROM queue_pauses
),
queued AS (
    SELECT j.queue, count(*) AS n
    FROM runs r
    JOIN jobs j ON j.id = r.job_id
    WHERE r.status = 'queued'
    GROUP BY j.queue
)
SELECT n.queue, p.paused_at, p.paused_by,
       (SELECT count(*) FROM jobs j WHERE j.queue = n.queue) AS jobs,
       COALESCE(queued.n, 0) AS queued
FROM names n
LEFT JOIN queue_pauses p ON p.queue = n.queue
LEFT JOIN queued ON queued.queue = n.queue
ORDER BY n.queue;

-- name: queue_in_use
-- Whether any job runs on queue $1.
SELECT EXISTS (SELECT 1 FROM jobs WHERE queue = $1);

-- name: pause_queue
-- Hold queue $1's runs in the outbox ('*': every queue's), paused by $2; a queue paused
-- already keeps its first pause.
INSERT INTO queue_pauses (queue, paused_by)
VALUES ($1, $2)
ON CONFLICT (queue) DO NOTHING;

-- name: resume_queue
-- Let the relay publish queue $1's runs again ('*': lift the pause of every queue).
DELETE FROM queue_pauses WHERE queue = $1;

-- name: queue_pause
-- The pause of queue $1 and that of every queue ('*'), if any.
SELECT p.paused_at, p.paused_by,
       EXISTS (SELECT 1 FROM queue_pauses WHERE queue = '*') AS all_paused
FROM (SELECT 1) AS one
LEFT JOIN queue_pauses p ON p.queue = $1;

-- scheduler, workers, stats --------------------------------------------------------

-- name: scheduler_status
-- The keys the scheduler writes after each pass, and the database's clock.
SELECT now() AS db_now,
       (SELECT value FROM system_settings WHERE key = 'scheduler_last_run') AS last_run,
       (SELECT value FROM system_settings WHERE key = 'scheduler_next_run') AS next_run,
       (SELECT value FROM system_settings WHERE key = 'scheduler_trigger_requested') AS trigger_requested;

-- name: scheduler_instances
-- Every scheduler process known, most recently ticking first; one that says it runs but
-- has not passed for $1 seconds (killed, frozen, cut off) is 'stale'.
SELECT id, host, pid, started_at, last_tick_at, next_tick_at, ticks, dispatched, failures,
       CASE WHEN status = 'running'
                 AND coalesce(last_tick_at, started_at) < now() - make_interval(secs => $1)
            THEN 'stale' ELSE status END AS status,
       tzdata, broker_blocked_since, broker_blocked_reason
FROM scheduler_instances
ORDER BY last_tick_at DESC NULLS LAST, id;

-- name: request_scheduler_trigger
-- "Run a pass now": one scheduler takes the flag and clears it.
INSERT INTO system_settings (key, value, updated_at)
VALUES ('scheduler_trigger_requested', 'true', now())
ON CONFLICT (key) DO UPDATE SET value = 'true', updated_at = now();

-- name: list_workers
-- Workers with their liveness judged by heartbeat age ($1 seconds).
SELECT id, host, pid, queues, handlers, concurrency, status, started_at, last_heartbeat,
       runs_started, runs_succeeded, runs_failed,
       (status <> 'offline' AND last_heartbeat > now() - make_interval(secs => $1)) AS online,
       (SELECT count(*) FROM runs r WHERE r.worker_id = w.id AND r.status = 'running') AS running
FROM workers w
ORDER BY online DESC, id;

-- name: stats
-- Totals for the overview: jobs and executions. The runs by status are the counts the
-- database keeps (run_counts, migration 0014: exact, a few rows to sum whatever the
-- history), not a count of the table.
WITH counts AS (
    SELECT status, sum(n)::bigint AS n FROM run_counts GROUP BY status
)
SELECT (SELECT count(*) FROM jobs) AS jobs_total,
       (SELECT count(*) FROM jobs WHERE enabled) AS jobs_enabled,
       COALESCE(sum(n), 0)::bigint AS runs_total,
       COALESCE(sum(n) FILTER (WHERE status = 'succeeded'), 0)::bigint AS runs_succeeded,
       COALESCE(sum(n) FILTER (WHERE status IN ('failed', 'timed_out', 'dead')), 0)::bigint
           AS runs_failed,
       COALESCE(sum(n) FILTER (WHERE status = 'running'), 0)::bigint AS runs_running,
       COALESCE(sum(n) FILTER (WHERE status = 'queued'), 0)::bigint AS runs_queued
FROM counts;

-- name: job_health
-- Job $1's runs that finished in the last $2 seconds, by outcome, with the mean and 95th
-- percentile of their durations (runs that succeeded or failed) and its latest success.
-- Reads the index runs_job_finished only (job, status, finish time).
SELECT now() - make_interval(secs => $2) AS since,
       count(*) AS finished,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status IN ('failed', 'timed_out', 'dead')) AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE status = 'skipped') AS skipped,
       avg(EXTRACT(EPOCH FROM finished_at - started_at))
           FILTER (WHERE status IN ('succeeded', 'failed', 'timed_out', 'dead'))::float8
           AS avg_duration_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM finished_at - started_at))
           FILTER (WHERE status IN ('succeeded', 'failed', 'timed_out', 'dead'))::float8
           AS p95_duration_s,
       (SELECT max(finished_at) FROM runs
        WHERE job_id = $1 AND status = 'succeeded' AND finished_at IS NOT NULL) AS last_success_at
FROM runs
WHERE job_id = $1
  AND status IN ('succeeded', 'failed', 'timed_out', 'dead', 'cancelled', 'skipped')
  AND finished_at >= now() - make_interval(secs => $2);

-- name: list_audit
-- The audit log, newest first, keyset-paginated on id ($6: the last id of the previous
-- page); filters: actor $1, action $2 (exact, or a prefix ending in '.': 'job.'),
-- target type $3 and id $4, at or after $5, before $7.
SELECT id, at, actor, action, target_type, target_id, details
FROM audit_log
WHERE ($1::text IS NULL OR actor = $1)
  AND ($2::text IS NULL OR action = $2 OR (right($2, 1) = '.' AND starts_with(action, $2)))
  AND ($3::text IS NULL OR target_type = $3)
  AND ($4::text IS NULL OR target_id = $4)
  AND ($5::timestamptz IS NULL OR at >= $5)
  AND ($7::timestamptz IS NULL OR at < $7)
  AND ($6::bigint IS NULL OR id < $6)
ORDER BY id DESC
LIMIT $8;
