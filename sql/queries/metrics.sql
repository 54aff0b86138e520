-- Queries of the API's /metrics: read from the database at each scrape, so every API
-- replica serves the same values.

-- name: metrics_runs_by_status
-- Runs kept in the database by status: the counts the database keeps (run_counts,
-- migration 0014), exact and read in a few rows whatever the history's size.
SELECT status, sum(n)::bigint AS n FROM run_counts GROUP BY status HAVING sum(n) <> 0;

-- name: metrics_job_runs
-- Runs created in the last hour by job, queue and status (through the index on
-- created_at, so a scrape reads an hour of runs, not the whole history). The $1 jobs
-- with the most such runs keep their name; the others are summed under job_name
-- '_other', so the series stay few (no job name starts with '_': jobs_name_format).
WITH per_job AS (
    SELECT job_id, status, count(*) AS n
    FROM runs
    WHERE created_at >= now() - interval '1 hour'
    GROUP BY job_id, status
),
ranked AS (
    SELECT job_id, rank() OVER (ORDER BY sum(n) DESC, job_id) AS place
    FROM per_job
    GROUP BY job_id
)
SELECT CASE WHEN ranked.place <= $1 THEN j.name ELSE '_other' END AS job_name,
       j.queue, per_job.status, sum(per_job.n)::bigint AS n
FROM per_job
JOIN ranked USING (job_id)
JOIN jobs j ON j.id = per_job.job_id
GROUP BY 1, 2, 3;

-- name: metrics_queues
-- Every queue a job uses or an online worker (heartbeat within $1 s) consumes, with its
-- queued runs (published or not, available or not; counted once for all queues from the
-- queued runs alone) and its online workers: an idle queue shows 0, not nothing.
WITH online AS (
    SELECT id, queues FROM workers
    WHERE status <> 'offline' AND last_heartbeat > now() - make_interval(secs => $1)
),
names AS (
    SELECT queue FROM jobs
    UNION
    SELECT unnest(queues) FROM online
),
queued AS (
    SELECT j.queue, count(*) AS n
    FROM runs r
    JOIN jobs j ON j.id = r.job_id
    WHERE r.status = 'queued'
    GROUP BY j.queue
)
SELECT names.queue,
       COALESCE(queued.n, 0) AS depth,
       (SELECT count(*) FROM online WHERE names.queue = ANY(online.queues)) AS workers
FROM names
LEFT JOIN queued USING (queue);

-- name: metrics_gauges
-- Dispatch lag (the oldest available run not yet published, those a queue pause holds
-- aside), the outbox's size (held runs included), workers
-- online (heartbeat within $1 s), their busy and total run slots, and the scheduler's
-- last pass, and its running instances the broker blocks ($2: stale after).
WITH online AS (
    SELECT id, concurrency FROM workers
    WHERE status <> 'offline' AND last_heartbeat > now() - make_interval(secs => $1)
)
SELECT COALESCE(EXTRACT(EPOCH FROM (now() - (
           -- The outbox's index in order, up to the first run no pause holds: min()
           -- would test every available run's job.
           SELECT available_at FROM runs
           WHERE status = 'queued' AND published_at IS NULL AND available_at <= now()
             AND NOT job_paused(job_id)
           ORDER BY available_at
           LIMIT 1))), 0)::float8
           AS dispatch_lag_s,
       (SELECT count(*) FROM runs WHERE status = 'queued' AND published_at IS NULL) AS outbox,
       (SELECT count(*) FROM online) AS workers_online,
       (SELECT COALESCE(sum(concurrency), 0) FROM online)::bigint AS slots,
       (SELECT count(*) FROM runs r JOIN online o ON o.id = r.worker_id
        WHERE r.status = 'running') AS busy,
       (SELECT EXTRACT(EPOCH FROM max(last_tick_at)) FROM scheduler_instances)::float8 AS scheduler_last_tick,
       (SELECT count(*) FROM scheduler_instances
        WHERE status = 'running' AND broker_blocked_since IS NOT NULL
          AND last_tick_at > now() - make_interval(secs => $2)) AS schedulers_blocked;

-- name: metrics_last_success
-- For the dead man's switch: when each job with an active schedule last succeeded (its
-- creation if never), at most $1 jobs by name.
SELECT j.name AS job_name,
       EXTRACT(EPOCH FROM COALESCE(
           (SELECT max(r.finished_at) FROM runs r
            WHERE r.job_id = j.id AND r.status = 'succeeded'),
           j.created_at))::float8 AS at
FROM jobs j
WHERE EXISTS (SELECT 1 FROM schedules s WHERE s.job_id = j.id AND s.is_active)
ORDER BY j.name
LIMIT $1;
