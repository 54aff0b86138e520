-- 0012_live_output: a running run's output while it runs, and per-job health.
--
-- The worker writes the tail of a running run's captured output (stdout and stderr of
-- command jobs, prints and logs of Python jobs) into runs.output at each heartbeat;
-- output_at says when it last did, so a reader can tell a quiet run from a stalled
-- writer. The final output replaces the tail when the run ends.
ALTER TABLE runs ADD COLUMN output_at timestamptz;

-- Per-job health (GET /api/jobs/{id}/health: success rate, durations over a window) and
-- the dead man's switch metric (a job's latest success) read a job's finished runs by
-- status and finish time: this index answers both without reading other jobs' runs,
-- and carries started_at so durations come from the index alone.
CREATE INDEX runs_job_finished ON runs (job_id, status, finished_at) INCLUDE (started_at)
    WHERE finished_at IS NOT NULL;
