-- name: mark_published
-- After the broker's confirms: these runs are on the broker; the relay leaves them alone.
UPDATE runs
SET published_at = now(),
    publish_lease_until = NULL
WHERE id = ANY($1::bigint[])
  AND published_at IS NULL;

-- name: claim_unpublished
-- The relay: lease up to $1 queued, unpublished, available runs for $2 seconds
-- (left by a crashed publisher, a broker outage, jitter or a retry's backoff).
WITH pending AS (
    SELECT id
    FROM runs
    WHERE status = 'queued'
      AND published_at IS NULL
      AND available_at <= now()
      AND (publish_lease_until IS NULL OR publish_lease_until < now())
    ORDER BY available_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE runs r
SET publish_lease_until = now() + make_interval(secs => $2)
FROM pending, jobs j
WHERE r.id = pending.id
  AND j.id = r.job_id
RETURNING r.id AS run_id, r.job_id, j.name AS job, j.handler, j.payload, j.queue,
          r.schedule_id, r.scheduled_for, r.attempt, j.timeout_seconds;

-- name: release_publish_lease
-- A publish failed: let the relay take these runs on its next pass.
UPDATE runs
SET publish_lease_until = NULL
WHERE id = ANY($1::bigint[])
  AND published_at IS NULL;

-- name: next_outbox_at
-- When the earliest unpublished run becomes available (the relay's next wake-up).
SELECT min(available_at)
FROM runs
WHERE status = 'queued'
  AND published_at IS NULL;
