"""Wake, don't spin: NOTIFY wakes a sleeping scheduler at once, "trigger now" is served,
and a scheduler whose database connections were killed recovers, LISTEN included."""

import asyncio

import asyncpg

from sundial.core.outbox import WAKEUP_CHANNEL
from tests.conftest import service_env, wait_for

LONG_POLL = 60  # far longer than any wait below: only a NOTIFY can explain a quick run


async def add_due_schedule(conn: asyncpg.Connection, queue: str) -> int:
    job = await conn.fetchval(
        "INSERT INTO jobs (name, handler, queue) VALUES ('j' || gen_random_uuid(), 'noop', $1) "
        "RETURNING id", queue)
    return await conn.fetchval(
        "INSERT INTO schedules (job_id, kind, interval_seconds, start_at, next_run_at) "
        "VALUES ($1, 'interval', 3600, now(), now()) RETURNING id", job)


async def wait_started(conn: asyncpg.Connection) -> None:
    await wait_for(lambda: conn.fetchval(
        "SELECT count(*) > 0 FROM scheduler_instances WHERE ticks > 0"), timeout=20,
        what="a first pass")


async def test_notify_wakes_a_sleeping_scheduler(db_url, amqp_url, queue, processes):
    conn = await asyncpg.connect(db_url)
    try:
        scheduler = processes(["scheduler"], service_env(db_url, amqp_url,
                                                         SCHEDULER_POLL_INTERVAL=LONG_POLL))
        await wait_started(conn)
        await asyncio.sleep(1)  # it is now asleep for up to a minute
        sid = await add_due_schedule(conn, queue)
        await conn.execute("SELECT pg_notify($1, 'schedules')", WAKEUP_CHANNEL)
        await wait_for(lambda: conn.fetchval(
            "SELECT count(*) = 1 FROM runs WHERE schedule_id = $1 AND published_at IS NOT NULL", sid),
            timeout=10, what="the run of a notified schedule")

        await conn.execute("UPDATE system_settings SET value = 'true' "
                           "WHERE key = 'scheduler_trigger_requested'")
        await conn.execute("SELECT pg_notify($1, 'trigger')", WAKEUP_CHANNEL)
        await wait_for(lambda: conn.fetchval(
            "SELECT value = 'false' FROM system_settings WHERE key = 'scheduler_trigger_requested'"),
            timeout=10, what="the trigger flag served and cleared")
        status = dict(await conn.fetch(
            "SELECT key, value FROM system_settings WHERE key LIKE 'scheduler_%_run'"))
        assert set(status) == {"scheduler_last_run", "scheduler_next_run"}
        assert scheduler.stop() == 0
        assert '"scheduler.trigger_served"' in scheduler.output()
    finally:
        await conn.close()


async def test_recovers_after_its_database_connections_are_killed(db_url, amqp_url, queue, processes):
    conn = await asyncpg.connect(db_url)
    try:
        scheduler = processes(["scheduler"], service_env(db_url, amqp_url,
                                                         SCHEDULER_POLL_INTERVAL=LONG_POLL))
        await wait_started(conn)
        for _ in range(2):
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            assert killed >= 2, "the pool and the LISTEN connection"
            await asyncio.sleep(1)
        # Only a re-established LISTEN can make this run appear before the long poll.
        await wait_for(lambda: conn.fetchval(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database() "
            "AND query ILIKE 'LISTEN%'"), timeout=20, what="LISTEN re-established")
        sid = await add_due_schedule(conn, queue)
        await conn.execute("SELECT pg_notify($1, 'schedules')", WAKEUP_CHANNEL)
        await wait_for(lambda: conn.fetchval(
            "SELECT count(*) = 1 FROM runs WHERE schedule_id = $1 AND published_at IS NOT NULL", sid),
            timeout=15, what="a run after the connections were killed")
        assert scheduler.alive()
        assert scheduler.stop() == 0
    finally:
        await conn.close()
