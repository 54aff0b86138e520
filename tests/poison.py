"""Schedule rows no scheduler can plan, written with SQL as the CHECK constraints allow."""

from __future__ import annotations

# (columns, values as SQL, what the row's last_error says after "schedule <id>: ")
POISON_SCHEDULES = [
    ("kind, cron", "'cron', '61 * * * *'", "cron '61 * * * *': minute '61' must be 0-59"),
    ("kind, cron", "'cron', '0 0 30 2 *'", "cron '0 0 30 2 *': day-of-month '30' must be"),
    ("kind, cron, timezone", "'cron', '* * * * *', 'Europe'",
     "timezone 'Europe': unknown time zone"),
    ("kind, interval_seconds, start_at, misfire_policy",
     "'interval', 1e-6, now() - interval '1 hour', 'run_all'",
     "interval_seconds 1e-06: must be a number of seconds from 1"),
    ("kind, interval_seconds, jitter_seconds", "'interval', 1, 1e300",
     "jitter_seconds 1e+300: must be a number of seconds from 0 to 86400"),
]


async def insert_poison_schedules(conn, job_id: int) -> dict[int, str]:
    """One row of each kind, due now and never planned: schedule id -> expected error.
    `conn`: an asyncpg connection or pool."""
    rows = {}
    for columns, values, error in POISON_SCHEDULES:
        for next_run_at in ("now() - interval '1 s'", "NULL"):
            sid = await conn.fetchval(
                f"INSERT INTO schedules (job_id, {columns}, next_run_at) "
                f"VALUES ($1, {values}, {next_run_at}) RETURNING id", job_id)
            rows[sid] = error
    return rows
