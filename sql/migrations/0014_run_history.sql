-- sundial: no transaction
-- 0014_run_history: years of history stay cheap to read and to write.
--
-- Applied one statement at a time, outside a transaction (the line above; see
-- services/core/migrate.py), so that the indexes of `runs` are built CONCURRENTLY: a
-- big history keeps taking writes while they build. Each statement can run again after
-- an interruption (IF EXISTS / OR REPLACE; an index is dropped before it is built, so an
-- invalid one left by a failed build goes too).

-- Runs by status, kept by the database as runs come, change status and go: the overview's
-- totals and /metrics' sundial_runs{status} read a few rows instead of counting the whole
-- history. Writers only ever append rows (a status and a signed count): no row is updated
-- by two transactions, so no writer waits for another. compact_run_counts() (the
-- scheduler's retention loop) folds them into one row per status; readers sum.
CREATE TABLE IF NOT EXISTS run_counts (
    status  text   NOT NULL,
    n       bigint NOT NULL
);

CREATE OR REPLACE FUNCTION run_counts_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_counts (status, n) SELECT status, count(*) FROM new_runs GROUP BY status;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION run_counts_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_counts (status, n) SELECT status, -count(*) FROM old_runs GROUP BY status;
    RETURN NULL;
END
$$;

-- Per row, and only when the status changes (the trigger's WHEN, checked without calling
-- the function): heartbeats and other updates cost nothing here.
CREATE OR REPLACE FUNCTION run_counts_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_counts (status, n) VALUES (OLD.status, -1), (NEW.status, 1);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION run_counts_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM run_counts;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS run_counts_inserted ON runs;
CREATE TRIGGER run_counts_inserted AFTER INSERT ON runs
    REFERENCING NEW TABLE AS new_runs
    FOR EACH STATEMENT EXECUTE FUNCTION run_counts_inserted();

DROP TRIGGER IF EXISTS run_counts_deleted ON runs;
CREATE TRIGGER run_counts_deleted AFTER DELETE ON runs
    REFERENCING OLD TABLE AS old_runs
    FOR EACH STATEMENT EXECUTE FUNCTION run_counts_deleted();

DROP TRIGGER IF EXISTS run_counts_changed ON runs;
CREATE TRIGGER run_counts_changed AFTER UPDATE OF status ON runs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION run_counts_changed();

DROP TRIGGER IF EXISTS run_counts_truncated ON runs;
CREATE TRIGGER run_counts_truncated AFTER TRUNCATE ON runs
    FOR EACH STATEMENT EXECUTE FUNCTION run_counts_truncated();

-- Fold the appended rows into one per status. Rows appended after this statement's
-- snapshot are not seen, so not deleted: they stay for the next fold.
CREATE OR REPLACE FUNCTION compact_run_counts() RETURNS bigint
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM run_counts RETURNING status, n
    ),
    kept AS (
        INSERT INTO run_counts (status, n)
        SELECT status, sum(n) FROM gone GROUP BY status HAVING sum(n) <> 0
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;

-- The counts of the runs there are now: one statement, one snapshot, so the runs it counts
-- and the rows it replaces were written by the same transactions (those committed before
-- it); rows of later ones stay and add up on top. The triggers exist already.
WITH gone AS (
    DELETE FROM run_counts
)
INSERT INTO run_counts (status, n)
SELECT status, count(*) FROM runs GROUP BY status;

-- HOT: an update that changes no indexed column (nor one an index's WHERE reads) can stay
-- on its page without touching any index, if the page has room. A heartbeat writes
-- heartbeat_at, output and output_at: the reaper's index on heartbeat_at made every beat
-- write every index of the table. The reaper and the workers list now find running runs
-- by worker (a column that changes with the status only); the running runs are few, so
-- ordering them by heartbeat is a small sort.
DROP INDEX CONCURRENTLY IF EXISTS runs_running_worker;
CREATE INDEX CONCURRENTLY runs_running_worker ON runs (worker_id) WHERE status = 'running';
DROP INDEX CONCURRENTLY IF EXISTS runs_running;

-- The run list filtered by status, newest first: walks the status's own runs by id (a
-- rare status no longer means reading the whole history backwards for a page), and
-- counts them with a queue filter from the index alone (job_id). Replaces the index on
-- status alone, which served the same lookups.
DROP INDEX CONCURRENTLY IF EXISTS runs_status_id;
CREATE INDEX CONCURRENTLY runs_status_id ON runs (status, id) INCLUDE (job_id);
DROP INDEX CONCURRENTLY IF EXISTS runs_status;

-- A job's history, newest first, as before, carrying status and schedule: the run list's
-- count for a job and a status, or for a schedule, reads the index alone instead of a
-- heap page per run. Replaces runs_job_history.
DROP INDEX CONCURRENTLY IF EXISTS runs_job_recent;
CREATE INDEX CONCURRENTLY runs_job_recent ON runs (job_id, id DESC) INCLUDE (status, schedule_id);
DROP INDEX CONCURRENTLY IF EXISTS runs_job_history;

-- The run list with a time bound, newest first by creation time then id: walks from the
-- bound (with the cursor as an index condition), however far back. Replaces the index on
-- created_at alone (retention and the last hour's metrics read it the same way).
DROP INDEX CONCURRENTLY IF EXISTS runs_created_id;
CREATE INDEX CONCURRENTLY runs_created_id ON runs (created_at, id);
DROP INDEX CONCURRENTLY IF EXISTS runs_created;

-- Room on each page for the updated versions of its rows (heartbeats, status changes):
-- pages written from now on keep 10% free. Existing pages keep theirs until rewritten.
ALTER TABLE runs SET (fillfactor = 90);
