-- The schedules whose runs the broker refused or could not take (failure_count > 0):
-- marking runs published clears their trouble, and finds them through this index, which
-- holds only those rows (none while the broker is healthy).
CREATE INDEX schedules_failing ON schedules (id) WHERE failure_count > 0;
