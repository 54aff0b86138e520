-- The IANA release of the tzdata package each scheduler computes fire times with
-- (e.g. '2026a'), so GET /api/scheduler/status can show instances that disagree.
ALTER TABLE scheduler_instances ADD COLUMN tzdata text;
