-- A schedule the scheduler cannot plan (a cron, time zone or interval written with SQL
-- that validation refuses) is set aside by the tick instead of failing it: is_active
-- false, next_run_at NULL, last_error saying what is wrong and how to fix it, and
-- set_aside_at saying when. It tells a schedule set aside by the scheduler from one
-- paused by a person: a write through the API or the CLI that passes validation clears
-- it and makes the schedule active again.
ALTER TABLE schedules ADD COLUMN set_aside_at timestamptz;
