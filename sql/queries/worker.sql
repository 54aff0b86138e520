-- Queries of the worker: claim, record, heartbeat, registration.

-- name: run_job
-- Run $1 as the database knows it, with what its job asks of a claim: the handler that
-- runs it and the concurrency policy (allow, forbid, replace). Read before a claim.
SELECT r.status, r.attempt, r.cancel_requested, r.available_at <= now() AS available,
       j.id AS job_id, j.handler, j.queue, j.concurrency_policy,
       job_paused(j.id) AS paused
FROM runs r
JOIN jobs j ON j.id = r.job_id
WHERE r.id = $1;

-- name: lock_job_runs
-- Serialise claims of one job's runs until commit (forbid and replace policies only).
SELECT pg_advisory_xact_lock(hashtextextended('sundial.job:' || $1::bigint, 0));

-- name: claim_run
-- Start attempt $2 of run $1 on worker $3, unless it is already taken, finished,
-- cancelled, or a later attempt (a stale duplicate message), not available yet (backoff,
-- jitter), or its job's handler is not one of $4 or its queue not one of $5 (this
-- worker's). What runs and how long it may take are returned from the run and its job,
-- never taken from the message: the run's own payload (a trigger with arguments), else
-- its job's. Not while its queue is paused (a message sent before the pause).
-- With $6 (the batch claim, many pipelined in one transaction): only a job with policy
-- 'allow', and priority: the worker starts the run of highest priority that waits,
-- published, on the same queue for one of its handlers, if one ranks above the message's
-- run (ties: the oldest). The message's run then goes back to the outbox, still queued,
-- for a fresh message (`swapped`: the caller wakes the relay); the better run's own
-- message finds it taken and is dropped. Only runs above priority 0 are looked at
-- (runs_waiting_priority), so with every job at 0 nothing is swapped.
-- fire_lag_s: how late it starts, from when it was due (its slot with jitter, or the
-- end of a retry's backoff), for the worker's fire lag histogram.
-- Here and below, a message in hand proves the run was published, whether or not its
-- publisher lived to mark it. Takeovers and fresh messages are counted per message and
-- attempt: a claim starts afresh.
WITH msg AS (
    SELECT r.id, r.priority, j.queue
    FROM runs r
    JOIN jobs j ON j.id = r.job_id
    WHERE r.id = $1
      AND r.attempt = $2
      AND r.status = 'queued'
      AND NOT r.cancel_requested
      AND r.available_at <= now()
      AND (NOT $6 OR j.concurrency_policy = 'allow')
      AND j.handler = ANY($4::text[])
      AND j.queue = ANY($5::text[])
      AND NOT job_paused(j.id)
    FOR UPDATE OF r
),
better AS (
    -- Per job of the message's queue (few), its best waiting run: one probe of
    -- runs_waiting_priority each, whatever waits on other queues.
    SELECT c.id
    FROM msg
    JOIN jobs j ON j.queue = msg.queue
    CROSS JOIN LATERAL (
        SELECT r.id, r.priority
        FROM runs r
        WHERE r.job_id = j.id
          AND r.status = 'queued'
          AND r.published_at IS NOT NULL
          AND r.priority > 0
          AND r.priority > msg.priority
          AND NOT r.cancel_requested
          AND r.available_at <= now()
        ORDER BY r.priority DESC, r.id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) c
    WHERE $6
      -- Checked once, before any probe: with no published run above priority 0 waiting
      -- anywhere (the common case: runs_waiting_priority is empty), nothing can rank
      -- above the message's run, and a queue of a thousand jobs costs no thousand probes.
      AND EXISTS (SELECT 1 FROM runs w
                  WHERE w.status = 'queued' AND w.published_at IS NOT NULL
                    AND w.priority > 0)
      AND j.concurrency_policy = 'allow'
      AND j.handler = ANY($4::text[])
    ORDER BY c.priority DESC, c.id
    LIMIT 1
),
chosen AS (
    SELECT coalesce((SELECT id FROM better), (SELECT id FROM msg)) AS id
),
handed_back AS (
    UPDATE runs
    SET published_at = NULL,
        publish_lease_until = NULL,
        updated_at = now()
    WHERE id = (SELECT id FROM msg)
      AND EXISTS (SELECT 1 FROM better)
    RETURNING id
)
UPDATE runs r
SET status = 'running',
    published_at = coalesce(r.published_at, now()),
    takeovers = 0,
    republished = 0,
    output = NULL,
    output_at = NULL,
    started_at = now(),
    heartbeat_at = now(),
    worker_id = $3,
    updated_at = now()
FROM chosen, jobs j
WHERE r.id = chosen.id
  AND r.status = 'queued'
  AND j.id = r.job_id
RETURNING r.id, r.job_id, r.attempt, r.max_attempts, j.name AS job, j.handler, j.queue,
          coalesce(r.payload, j.payload) AS payload,
          CASE WHEN r.payload IS NULL THEN j.secret_payload ELSE r.secret_payload END
              AS secret_payload,
          j.timeout_seconds, j.retry_backoff_seconds, j.retry_backoff_max_seconds,
          EXTRACT(EPOCH FROM now() - r.available_at)::float8 AS fire_lag_s,
          $1::bigint AS message_run_id, $2::integer AS message_attempt,
          r.id <> $1 AS swapped;

-- name: skip_run_if_job_busy
-- forbid policy: attempt $2 of run $1 ends 'skipped' when its job already has a running run.
UPDATE runs r
SET status = 'skipped',
    published_at = coalesce(r.published_at, now()),
    finished_at = now(),
    error = 'skipped: run ' || busy.id || ' of this job is still running (concurrency policy forbid)',
    updated_at = now()
FROM (SELECT o.id
      FROM runs o, runs me
      WHERE me.id = $1
        AND o.job_id = me.job_id
        AND o.status = 'running'
        AND o.id <> me.id
      LIMIT 1) AS busy
WHERE r.id = $1
  AND r.attempt = $2
  AND r.status = 'queued'
RETURNING r.id, busy.id AS running_id;

-- name: cancel_other_runs_of_job
-- replace policy: ask the running runs of job $1 other than run $2 to stop.
UPDATE runs
SET cancel_requested = true,
    updated_at = now()
WHERE job_id = $1
  AND status = 'running'
  AND id <> $2
  AND NOT cancel_requested
RETURNING id;

-- name: end_queued_run
-- A queued attempt $2 of run $1 ends without starting, in status $3 with error $4:
-- 'cancelled' (only if a cancel was requested), 'failed' (no worker has its handler),
-- 'dead' (delivered too many times).
UPDATE runs
SET status = $3,
    published_at = coalesce(published_at, now()),
    finished_at = now(),
    error = $4,
    updated_at = now()
WHERE id = $1
  AND attempt = $2
  AND status = 'queued'
  AND ($3 <> 'cancelled' OR cancel_requested)
RETURNING id;

-- name: run_holder
-- A redelivered message whose attempt $2 of run $1 is running: is it still running, and
-- in how many seconds does its holder's heartbeat become older than the lease ($3 s)?
SELECT status = 'running' AND attempt = $2 AS running,
       EXTRACT(EPOCH FROM heartbeat_at + make_interval(secs => $3) - now())::float8 AS stale_in
FROM runs
WHERE id = $1;

-- name: take_over_run
-- Attempt $2 of run $1 is running on a worker whose heartbeat is older than the lease
-- ($4 s) and the broker redelivered its message (the holder's channel closed): worker
-- $3 runs the attempt again, instead of the reaper counting an attempt.
UPDATE runs r
SET worker_id = $3,
    takeovers = r.takeovers + 1,
    started_at = now(),
    heartbeat_at = now(),
    updated_at = now()
FROM jobs j
WHERE r.id = $1
  AND r.attempt = $2
  AND r.status = 'running'
  AND r.heartbeat_at < now() - make_interval(secs => $4)
  AND j.id = r.job_id
  AND j.handler = ANY($5::text[])
  AND j.queue = ANY($6::text[])
RETURNING r.id, r.job_id, r.attempt, r.max_attempts, j.name AS job, j.handler, j.queue,
          coalesce(r.payload, j.payload) AS payload,
          CASE WHEN r.payload IS NULL THEN j.secret_payload ELSE r.secret_payload END
              AS secret_payload,
          j.timeout_seconds, j.retry_backoff_seconds, j.retry_backoff_max_seconds,
          EXTRACT(EPOCH FROM now() - r.available_at)::float8 AS fire_lag_s;

-- name: end_abandoned_run
-- The delivery limit is reached and attempt $2 of run $1 is running on a worker whose
-- heartbeat is older than the lease ($4 s), taken over at least $5 times: it was
-- executing each time a worker died with its message. 'dead'.
UPDATE runs
SET status = 'dead',
    finished_at = now(),
    error = $3,
    updated_at = now()
WHERE id = $1
  AND attempt = $2
  AND status = 'running'
  AND heartbeat_at < now() - make_interval(secs => $4)
  AND takeovers >= $5
RETURNING id;

-- name: requeue_abandoned_run
-- The delivery limit is reached, but attempt $2 of run $1 was not executing at every
-- crash (it waited in a worker that another run killed): queued again, the attempt not
-- counted, for the outbox to publish a fresh message. Its worker's lease ($3 s) is out.
UPDATE runs
SET status = 'queued',
    worker_id = NULL,
    started_at = NULL,
    heartbeat_at = NULL,
    published_at = NULL,
    publish_lease_until = NULL,
    available_at = now(),
    updated_at = now()
WHERE id = $1
  AND attempt = $2
  AND status = 'running'
  AND heartbeat_at < now() - make_interval(secs => $3)
RETURNING id;

-- name: run_state
-- Why a claim found nothing: the run's status and attempt (no row: no such run).
SELECT status, attempt, cancel_requested
FROM runs
WHERE id = $1;

-- name: record_results
-- Finished attempts of worker $1, many at once. Kind: a final status, 'retry' (queued
-- again, attempt counted, after a backoff) or 'release' (queued again at once, the
-- attempt not counted: the worker shut down). Only runs this worker still holds.
UPDATE runs r
SET status = CASE WHEN d.kind IN ('retry', 'release') THEN 'queued' ELSE d.kind END,
    attempt = CASE WHEN d.kind = 'retry' THEN r.attempt + 1 ELSE r.attempt END,
    available_at = CASE WHEN d.kind IN ('retry', 'release')
                        THEN now() + make_interval(secs => d.retry_in_s) ELSE r.available_at END,
    published_at = CASE WHEN d.kind IN ('retry', 'release') THEN NULL ELSE r.published_at END,
    publish_lease_until = NULL,
    worker_id = CASE WHEN d.kind IN ('retry', 'release') THEN NULL ELSE r.worker_id END,
    started_at = CASE WHEN d.kind = 'release' THEN NULL ELSE r.started_at END,
    heartbeat_at = CASE WHEN d.kind IN ('retry', 'release') THEN NULL ELSE r.heartbeat_at END,
    finished_at = CASE WHEN d.kind IN ('retry', 'release') THEN NULL ELSE now() END,
    result = d.result,
    error = d.error,
    -- A run that ends without output of its own keeps the tail written while it ran.
    output = COALESCE(d.output, r.output),
    output_at = CASE WHEN d.output IS NULL THEN r.output_at ELSE now() END,
    updated_at = now()
FROM unnest($2::bigint[], $3::int[], $4::text[], $5::jsonb[], $6::text[], $7::text[],
            $8::float8[]) AS d(id, attempt, kind, result, error, output, retry_in_s)
WHERE r.id = d.id
  AND r.attempt = d.attempt
  AND r.status = 'running'
  AND r.worker_id = $1
RETURNING r.id, d.kind;

-- name: heartbeat_runs
-- Keep the attempts ($1 run ids, $2 attempts) worker $3 holds alive, with the tail of
-- their output that changed since the last beat ($4, NULL: unchanged); returns those
-- still its own, with cancel requests.
UPDATE runs r
SET heartbeat_at = now(),
    output = COALESCE(h.output, r.output),
    output_at = CASE WHEN h.output IS NULL THEN r.output_at ELSE now() END
FROM unnest($1::bigint[], $2::int[], $4::text[]) AS h(id, attempt, output)
WHERE r.id = h.id
  AND r.attempt = h.attempt
  AND r.status = 'running'
  AND r.worker_id = $3
RETURNING r.id, r.attempt, r.cancel_requested;

-- name: upsert_worker
-- Register or heartbeat worker $1 (also after the reaper marked it offline).
INSERT INTO workers (id, host, pid, queues, handlers, concurrency, status,
                     runs_started, runs_succeeded, runs_failed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (id) DO UPDATE
SET queues = excluded.queues,
    handlers = excluded.handlers,
    concurrency = excluded.concurrency,
    status = excluded.status,
    last_heartbeat = now(),
    runs_started = excluded.runs_started,
    runs_succeeded = excluded.runs_succeeded,
    runs_failed = excluded.runs_failed;

-- name: handler_advertised
-- Does another online worker ($2 excepted), heard from within $3 seconds, consuming queue
-- $4, run handler $1? (A worker of another queue never gets the run's message.)
SELECT EXISTS (
    SELECT 1
    FROM workers
    WHERE status = 'online'
      AND $1 = ANY(handlers)
      AND $4 = ANY(queues)
      AND id <> $2
      AND last_heartbeat > now() - make_interval(secs => $3)
);

-- name: unpublish_run
-- A queued attempt $2 of run $1 whose queue is paused: back to the outbox as it was, for
-- the relay to publish once the queue is resumed.
UPDATE runs
SET published_at = NULL,
    publish_lease_until = NULL,
    updated_at = now()
WHERE id = $1
  AND attempt = $2
  AND status = 'queued'
RETURNING id;

-- name: return_run_to_outbox
-- A queued attempt $2 of run $1 that this worker does not start: only another worker of
-- its queue has its handler, or a run taken over from a dead worker executes here alone.
-- The outbox publishes it again after $3 seconds, doubled each time it comes back (up to
-- 16 times), so a run that keeps reaching such workers costs a few messages, not one a
-- second. A requeue would count towards the delivery limit.
UPDATE runs
SET published_at = NULL,
    publish_lease_until = NULL,
    available_at = now() + make_interval(secs => $3 * power(2, least(republished, 4))),
    republished = republished + 1,
    updated_at = now()
WHERE id = $1
  AND attempt = $2
  AND status = 'queued'
RETURNING id;
