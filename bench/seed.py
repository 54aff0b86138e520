"""Sundial's schedules for a measurement, written straight into its own database
(set-based SQL: a million rows in seconds, where the API would take minutes)."""

from __future__ import annotations

import asyncpg

QUEUE = "bench"

_JOBS = """
INSERT INTO jobs (name, handler, queue, max_attempts)
SELECT $1 || g, 'noop', $2, 1
FROM generate_series(1, $3) AS g
"""

# Schedule g (0-based) of n: interval `every` seconds, first slot at `first` + g/n * spread,
# spread over the jobs just created (jobs are few; schedules share them). start_at is that
# first slot, so the stored next_run_at lies on the schedule's own grid.
_SCHEDULES = """
INSERT INTO schedules (job_id, kind, interval_seconds, next_run_at, start_at, misfire_policy)
SELECT j.first_id + g % $1, 'interval', $2, first.at, first.at, 'run_once'
FROM generate_series(0, $5 - 1) AS g,
     LATERAL (SELECT now() + make_interval(secs => $3::float8 + $4::float8 * g / $5::float8)
              AS at) AS first,
     (SELECT min(id) AS first_id FROM jobs WHERE name LIKE $6 || '%') AS j
"""


async def schedules(db_url: str, count: int, *, every_s: float, first_in_s: float,
                    spread_s: float = 0.0, jobs: int = 1000, prefix: str = "bench-") -> None:
    """`count` interval schedules of noop jobs on queue `bench`.

    first_in_s < 0 makes them due now (a backlog); spread_s spreads their phases.
    """
    conn = await asyncpg.connect(db_url)
    try:
        jobs = max(1, min(jobs, count))
        async with conn.transaction():
            await conn.execute(_JOBS, prefix, QUEUE, jobs)
            await conn.execute(_SCHEDULES, jobs, every_s, first_in_s, spread_s, count, prefix)
        await conn.execute("ANALYZE jobs")
        await conn.execute("ANALYZE schedules")
    finally:
        await conn.close()
