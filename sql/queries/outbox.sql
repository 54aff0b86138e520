-- name: mark_published
-- After the broker's confirms: these runs ($1 ids, $2 the attempts published) are on
-- the broker. A run handed back to the outbox meanwhile (a fast retry or a drain's
-- release: queued again, lease cleared, perhaps a new attempt) is left for the relay.
-- A schedule whose runs publish again loses its dispatch trouble (failure_count,
-- last_error; the history stays in the log); set-aside schedules keep their error. The
-- join meets the schedules_failing index, which holds only the failing schedules.
WITH marked AS (
    UPDATE runs r
    SET published_at = now(),
        publish_lease_until = NULL
    FROM unnest($1::bigint[], $2::integer[]) AS d(id, attempt)
    WHERE r.id = d.id
      AND r.attempt = d.attempt
      AND r.published_at IS NULL
      AND (r.publish_lease_until IS NOT NULL OR r.status <> 'queued')
    RETURNING r.schedule_id
)
UPDATE schedules s
SET failure_count = 0,
    last_error = NULL,
    updated_at = now()
WHERE s.failure_count > 0
  AND s.set_aside_at IS NULL
  AND s.id IN (SELECT schedule_id FROM marked);

-- name: claim_unpublished
-- The relay: lease up to $1 queued, unpublished, available runs for $2 seconds
-- (left by a crashed publisher, a broker outage, jitter or a retry's backoff), but none
-- of a paused queue (queue_pauses; '*' pauses them all).
WITH pending AS (
    SELECT id
    FROM runs
    WHERE status = 'queued'
      AND published_at IS NULL
      AND available_at <= now()
      AND (publish_lease_until IS NULL OR publish_lease_until < now())
      AND NOT job_paused(job_id)
    ORDER BY available_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE runs r
SET publish_lease_until = now() + make_interval(secs => $2)
FROM pending, jobs j
WHERE r.id = pending.id
  AND j.id = r.job_id
RETURNING r.id AS run_id, r.job_id, j.name AS job, j.handler,
          coalesce(r.payload, j.payload) AS payload, j.queue,
          r.schedule_id, r.scheduled_for, r.attempt, j.timeout_seconds;

-- name: paused_queues
-- The queues whose runs are not to be published now ('*': all of them).
SELECT queue FROM queue_pauses;

-- name: release_publish_lease
-- A publish failed: let the relay take these runs on its next pass.
UPDATE runs
SET publish_lease_until = NULL
WHERE id = ANY($1::bigint[])
  AND published_at IS NULL;
