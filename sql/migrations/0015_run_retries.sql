-- sundial: no transaction
-- 0016_run_retries: one live retry per run.
--
-- A retry made by hand (POST /api/runs/{id}/retry, POST /api/runs/retry, the CLI, the
-- dashboard) knows the run it retries: retry_of, the first run of the chain (a retry of a
-- retry points where its original points). A run has at most one retry queued, running or
-- succeeded at a time: retrying it again (the same bulk retry twice, two people at once)
-- makes no second run. NULL for every other run, which the index never holds, so writing
-- runs costs nothing more.
--
-- Applied one statement at a time (the line above; services/core/migrate.py): the index is
-- built CONCURRENTLY, so a big history keeps taking writes. Each statement can run again.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS retry_of bigint;

DROP INDEX CONCURRENTLY IF EXISTS runs_live_retry;
CREATE UNIQUE INDEX CONCURRENTLY runs_live_retry ON runs (retry_of)
    WHERE retry_of IS NOT NULL AND status IN ('queued', 'running', 'succeeded');
