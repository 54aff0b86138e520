-- Jobs and schedules declared in code (`@job("name", cron=...)`, `sundial.declare(...)`)
-- are written by `sundial sync`, which upserts them by name and marks them here, so that
-- the API, the CLI and the dashboard can show them and refuse the edits the next sync
-- would undo. Nothing is deleted by a sync: what code no longer declares is disabled and
-- keeps its history.
--
-- jobs.managed_by: 'code' for a job a sync wrote; NULL for a job made through the API,
-- the CLI or the dashboard.
ALTER TABLE jobs ADD COLUMN managed_by text;
ALTER TABLE jobs ADD CONSTRAINT jobs_managed_by CHECK (managed_by IN ('code'));
-- When a sync last found the job no longer declared and disabled it (NULL while it is
-- declared). Such a job is open to edits and deletion again; declaring it again
-- enables it.
ALTER TABLE jobs ADD COLUMN undeclared_at timestamptz;
-- schedules.managed_key: the schedule's key in its job's declaration (its position, or
-- the key the declaration gives), by which a sync finds it again; NULL for a schedule
-- made through the API and for one a sync disabled because it is no longer declared.
ALTER TABLE schedules ADD COLUMN managed_key text;
CREATE UNIQUE INDEX schedules_managed_key ON schedules (job_id, managed_key)
    WHERE managed_key IS NOT NULL;
