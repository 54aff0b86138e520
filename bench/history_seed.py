"""A year of run history written with set-based SQL (generate_series), for `history`.

JOBS jobs on QUEUES queues, most with one interval schedule; `runs` rows spread evenly
over DAYS days up to now, ids in creation order, a realistic mix: mostly scheduled runs
that succeeded, some failed, timed out, cancelled, skipped or dead, manual, retry and
backfill triggers, and at the newest end a few queued (published or not) and running
runs. Triggers are off while writing (session_replication_role = replica: no foreign-key
checks, no per-statement count rows); the per-status counts are then rebuilt from the
table as migration 0014 does, and the table is vacuumed and analysed.
"""

from __future__ import annotations

import asyncpg

JOBS = 3000
QUEUES = 12
WORKERS = 20
DAYS = 365
CHUNK = 1_000_000
QUEUED = 2000          # newest runs still waiting (half of them published)
RUNNING = 200          # the newest before those, running

_JOBS = """
INSERT INTO jobs (name, handler, queue, max_attempts, created_at)
SELECT 'history-' || g, 'noop', 'q' || (g % $2), 1 + (g % 3), now() - interval '400 days'
FROM generate_series(1, $1) AS g
"""
# Four jobs in five have an hourly-ish schedule; the others are run by hand only.
_SCHEDULES = """
INSERT INTO schedules (job_id, kind, interval_seconds, next_run_at, start_at, misfire_policy)
SELECT id, 'interval', 3600, now() + make_interval(secs => id % 3600), now(), 'run_once'
FROM jobs WHERE id % 5 <> 0
"""
_WORKERS = """
INSERT INTO workers (id, host, pid, queues, handlers, concurrency)
SELECT 'worker-' || g, 'host-' || g, 1000 + g,
       ARRAY(SELECT 'q' || q FROM generate_series(0, $2 - 1) AS q), ARRAY['noop'], 20
FROM generate_series(1, $1) AS g
"""
# Run g of $2 (1-based, this chunk: $3..$4; $1 jobs): created at an even step over $5 days up to
# now; job by a multiplicative hash of g (some jobs busier than others: the square
# skews); status and trigger by g's residues; durations 0.1-60 s.
_RUNS = """
INSERT INTO runs (job_id, schedule_id, scheduled_for, trigger, triggered_by, status, attempt,
                  max_attempts, available_at, published_at, started_at, finished_at,
                  heartbeat_at, worker_id, result, error, created_at, updated_at)
SELECT j.id, CASE WHEN x.trig IN ('schedule', 'backfill') THEN s.id END,
       t.at, CASE WHEN s.id IS NULL AND x.trig IN ('schedule', 'backfill') THEN 'manual'
                  ELSE x.trig END,
       CASE WHEN x.trig = 'manual' THEN 'api-key-' || (g % 7) END,
       x.st, 1, j.max_attempts, t.at,
       CASE WHEN x.st = 'queued' AND g % 2 = 0 THEN NULL ELSE t.at + interval '5 ms' END,
       CASE WHEN x.st NOT IN ('queued', 'skipped') THEN t.at + interval '20 ms' END,
       CASE WHEN x.st NOT IN ('queued', 'running') THEN t.at + interval '20 ms' + t.dur END,
       CASE WHEN x.st = 'running' THEN now() WHEN x.st NOT IN ('queued', 'skipped')
            THEN t.at + t.dur END,
       CASE WHEN x.st NOT IN ('queued', 'skipped') THEN 'worker-' || (1 + g % $6::int) END,
       CASE WHEN x.st = 'succeeded' THEN '{"ok": true}'::jsonb END,
       CASE WHEN x.st IN ('failed', 'dead', 'timed_out') THEN 'RuntimeError: boom ' || (g % 97) END,
       t.at, t.at + t.dur
FROM generate_series($3::bigint, $4::bigint) AS g
CROSS JOIN LATERAL (
    SELECT now() - make_interval(secs => ($2::bigint - g)::float8 * $5::int * 86400 / $2::bigint) AS at,
           make_interval(secs => 0.1 + (g * 7 % 600) / 10.0) AS dur,
           1 + ((g * 2654435761) % ($1::bigint * $1::bigint))::float8 ^ 0.5 AS pick
) AS t
CROSS JOIN LATERAL (
    SELECT CASE WHEN g > $2::bigint - $7::int THEN 'queued'
                WHEN g > $2::bigint - $7::int - $8::int THEN 'running'
                WHEN g % 100 < 93 THEN 'succeeded'
                WHEN g % 100 < 97 THEN 'failed'
                WHEN g % 100 = 97 THEN 'timed_out'
                WHEN g / 100 % 10 < 6 THEN 'cancelled'
                WHEN g / 100 % 10 < 9 THEN 'skipped'
                ELSE 'dead' END AS st,
           CASE WHEN g % 100 < 90 THEN 'schedule' WHEN g % 100 < 97 THEN 'manual'
                WHEN g % 100 < 99 THEN 'retry' ELSE 'backfill' END AS trig
) AS x
JOIN jobs j ON j.id = $9::bigint - 1 + least(t.pick::int, $1::int)
LEFT JOIN schedules s ON s.job_id = j.id
"""
_COUNTS = """
WITH gone AS (DELETE FROM run_counts)
INSERT INTO run_counts (status, n)
SELECT status, count(*) FROM runs GROUP BY status
"""


async def _drop_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drop the indexes and unique constraints of `runs` but its primary key (bulk loading
    then building each index once is several times faster than keeping them up to date
    row by row); returns the statements that make them again, as the migrations did."""
    constraints = await conn.fetch(
        "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint "
        "WHERE conrelid = 'runs'::regclass AND contype = 'u'")
    indexes = await conn.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def "
        "FROM pg_index i WHERE i.indrelid = 'runs'::regclass AND NOT i.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)")
    for c in constraints:
        await conn.execute(f"ALTER TABLE runs DROP CONSTRAINT {c['conname']}")
    for i in indexes:
        await conn.execute(f"DROP INDEX {i['name']}")
    return ([i["def"] for i in indexes]
            + [f"ALTER TABLE runs ADD CONSTRAINT {c['conname']} {c['def']}" for c in constraints])


async def history(db_url: str, runs: int, *, days: int = DAYS, jobs: int = JOBS) -> None:
    """Jobs, schedules, workers and `runs` runs over `days` days, vacuumed and analysed."""
    conn = await asyncpg.connect(db_url, command_timeout=None)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(_JOBS, jobs, QUEUES)
        await conn.execute(_SCHEDULES)
        await conn.execute(_WORKERS, WORKERS, QUEUES)
        first_job = await conn.fetchval("SELECT min(id) FROM jobs")
        rebuild = await _drop_indexes(conn)
        for first in range(1, runs + 1, CHUNK):
            last = min(runs, first + CHUNK - 1)
            await conn.execute(_RUNS, jobs, runs, first, last, days, WORKERS, QUEUED,
                               RUNNING, first_job)
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for statement in rebuild:
            await conn.execute(statement)
        await conn.execute("RESET session_replication_role")
        if await conn.fetchval("SELECT to_regclass('run_counts') IS NOT NULL"):
            await conn.execute(_COUNTS)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
