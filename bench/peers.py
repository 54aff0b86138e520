"""7. End to end with the peers users pick for it, measured like Sundial's measure 2:
N due runs -> executed by a trivial task and recorded as succeeded, runs/s from the start
of the process that turns schedules into work to the last result recorded.

Celery 5: beat (`bench.celery_beat backlog`: PersistentScheduler, default settings, so no
publisher confirms) with N entries due at once, and one `celery worker --pool prefork
--concurrency W` (W child processes, one task at a time each, prefetch multiplier 4:
defaults) on the same RabbitMQ (a vhost of its own), results in PostgreSQL through
SQLAlchemy (`db+postgresql://`, table celery_taskmeta). The worker is up first (its
queue has a consumer); from beat's start to the last date_done of the N SUCCESS rows.

procrastinate: W `procrastinate worker` processes (concurrency 100 each, like Sundial's
workers; the app's psycopg pool at its default size) on queue `bench`, up first (in
procrastinate_workers); then one more procrastinate worker that knows the N periodic
tasks (cron every minute: at its start each one's last slot is due, inside the
10-minute max delay) and listens to a queue nothing is sent to: the deferrer, in the
place of Sundial's scheduler. From its start to the last `succeeded` event of the N jobs
(the slot's timestamp is the job's argument: only the first slot counts).

Dispatch (procrastinate, measure 1): that deferring process alone with N periodic tasks
due, nothing executed; jobs deferred (row in procrastinate_jobs, the hand-over to its
workers) per second, from its start to the last `deferred` event.

Fire lag (procrastinate): that deferring process alone with N periodic tasks every second
(cron has no phases: all on the second), nothing executed; lag = the job's `deferred`
event - its slot. Celery's fire lag is beat's (measure 4): the worker is not involved.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import aio_pika
import aiormq
import asyncpg

from bench import celery_beat, infra, procrastinate_app
from bench.end_to_end import _at_least
from bench.stats import summary_ms

CONCURRENCY = 100        # procrastinate's worker concurrency, as Sundial's WORKER_CONCURRENCY
LEAD_S = 5.0             # fire lag: slots counted from this long after the process start
WARM_UP_S = 2.0
DEFERRER_QUEUE = "bench-deferrer"   # a queue nothing is sent to: the deferrer executes nothing

CELERY_DONE_SQL = """
SELECT count(*) AS done, extract(epoch FROM max(date_done) AT TIME ZONE 'UTC')::float8 AS last
FROM celery_taskmeta WHERE status = 'SUCCESS'
"""

# The first slot's jobs only (a later minute's are deferred too if the run crosses one).
PROCRASTINATE_DONE_SQL = """
WITH first AS (SELECT min((args->>'timestamp')::bigint) AS slot FROM procrastinate_jobs),
     ours AS (SELECT j.id, j.status FROM procrastinate_jobs j, first
              WHERE (j.args->>'timestamp')::bigint = first.slot)
SELECT (SELECT count(*) FROM ours WHERE status = 'succeeded') AS done,
       (SELECT count(*) FROM ours WHERE status NOT IN ('succeeded', 'todo', 'doing')) AS other,
       (SELECT extract(epoch FROM max(at))::float8 FROM procrastinate_events
        WHERE type = 'succeeded' AND job_id IN (SELECT id FROM ours)) AS last,
       (SELECT extract(epoch FROM min(at))::float8 FROM procrastinate_events
        WHERE type = 'deferred' AND job_id IN (SELECT id FROM ours)) AS first
"""


def celery_worker_argv(concurrency: int) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "bench.celery_beat", "worker", "--pool",
            "prefork", "--concurrency", str(concurrency), "-Q", celery_beat.QUEUE,
            "--loglevel", "WARNING"]


async def celery(count: int, workers: int, *, timeout_s: float) -> dict:
    async with infra.database("celery_e2e", migrated=False) as db:
        with infra.vhost("celery_e2e") as amqp:
            backend = "db+" + db
            env = {**os.environ, "BENCH_CELERY_BROKER": amqp, "BENCH_CELERY_BACKEND": backend}
            worker = infra.Proc(f"celery-worker-{workers}", celery_worker_argv(workers), env)
            conn = await asyncpg.connect(db)
            try:
                await infra.wait_until(lambda: _consumers(amqp, celery_beat.QUEUE), 90,
                                       "the Celery worker consuming")
                out = infra.LOGS / f"celery-e2e-{workers}.json"
                started = time.time()
                beat = infra.python_module(f"celery-e2e-beat-{workers}", "bench.celery_beat",
                                           ["backlog", "--amqp", amqp, "--entries", str(count),
                                            "--seconds", str(timeout_s), "--out", str(out),
                                            "--backend", backend])
                try:
                    await infra.wait_until(lambda: _celery_done(conn, count), timeout_s,
                                           f"{count} Celery results", every=0.25)
                    cpu = infra.usage(worker.pid).cpu_s
                finally:
                    beat.stop()
                row = await conn.fetchrow(CELERY_DONE_SQL)
                first = json.loads(out.read_text())["published"][0][0]
                failed = await conn.fetchval(
                    "SELECT count(*) FROM celery_taskmeta WHERE status <> 'SUCCESS'")
            finally:
                worker.stop()
                await conn.close()
    seconds = row["last"] - started
    return {"runs": count, "workers": workers, "concurrency": workers,
            "not_succeeded": failed, "seconds": seconds, "rate_per_s": row["done"] / seconds,
            "rate_after_first_per_s": row["done"] / (row["last"] - first),
            "worker_main_cpu_s": cpu,
            "measures": "beat entries due -> executed by the prefork worker, SUCCESS in "
                        "celery_taskmeta (PostgreSQL); no publisher confirms (default)",
            "command": f"bench.celery_beat backlog (defaults) + celery worker --pool prefork "
                       f"--concurrency {workers}; result_backend db+postgresql://"}


async def procrastinate(count: int, workers: int, *, timeout_s: float) -> dict:
    async with infra.database("procrastinate_e2e", migrated=False) as db:
        await apply_schema(db)
        conn = await asyncpg.connect(db)
        procs = [procrastinate_worker(f"procrastinate-worker-{workers}-{i}", db, 0,
                                      procrastinate_app.QUEUE, CONCURRENCY)
                 for i in range(workers)]
        try:
            await infra.wait_until(
                lambda: _at_least(conn, "SELECT count(*) FROM procrastinate_workers", workers),
                90, "procrastinate workers registered")
            started = time.time()
            procs.append(procrastinate_worker(f"procrastinate-deferrer-{workers}", db, count,
                                              DEFERRER_QUEUE, 1))
            await infra.wait_until(lambda: _procrastinate_done(conn, count), timeout_s,
                                   f"{count} procrastinate jobs succeeded", every=0.25)
            cpu = [p.usage().cpu_s for p in procs]
            row = await conn.fetchrow(PROCRASTINATE_DONE_SQL)
        finally:
            for p in procs:
                p.stop()
            await conn.close()
    seconds = row["last"] - started
    return {"runs": count, "workers": workers, "concurrency": CONCURRENCY,
            "not_succeeded": row["other"], "seconds": seconds,
            "rate_per_s": row["done"] / seconds,
            "rate_after_first_per_s": row["done"] / (row["last"] - row["first"]),
            "worker_cpu_s": cpu[:-1], "deferrer_cpu_s": cpu[-1],
            "measures": "periodic tasks due -> job deferred, executed, status succeeded "
                        "(procrastinate_jobs/events)",
            "command": f"procrastinate worker (periodic deferrer, queue {DEFERRER_QUEUE}) + "
                       f"{workers} x procrastinate worker --queues bench "
                       f"--concurrency {CONCURRENCY}"}


async def procrastinate_dispatch(count: int, *, timeout_s: float) -> dict:
    async with infra.database("procrastinate_dispatch", migrated=False) as db:
        await apply_schema(db)
        conn = await asyncpg.connect(db)
        try:
            started = time.time()
            proc = procrastinate_worker("procrastinate-dispatch", db, count, DEFERRER_QUEUE, 1)
            try:
                await infra.wait_until(
                    lambda: _at_least(conn, "SELECT count(*) FROM procrastinate_jobs", count),
                    timeout_s, f"{count} procrastinate jobs deferred", every=0.2)
                cpu = proc.usage()
            finally:
                proc.stop()
            last = await conn.fetchval(
                "SELECT extract(epoch FROM max(at))::float8 FROM procrastinate_events"
                " WHERE type = 'deferred'")
            executed = await conn.fetchval(
                "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'todo'")
        finally:
            await conn.close()
    seconds = last - started
    return {"schedules": count, "jobs_deferred": count, "jobs_executed": executed,
            "seconds": seconds, "rate_per_s": count / seconds, "process_cpu_s": cpu.cpu_s,
            "process_rss_mb": cpu.rss_mb,
            "measures": "jobs deferred into procrastinate_jobs (nothing executed)",
            "command": f"procrastinate worker with {count} periodic tasks due, executing nothing"}


async def procrastinate_steady(count: int, duration_s: float) -> dict:
    async with infra.database("procrastinate_lag", migrated=False) as db:
        await apply_schema(db)
        proc = procrastinate_worker("procrastinate-lag", db, count, DEFERRER_QUEUE, 1,
                                    cron="* * * * * *")
        await asyncio.sleep(LEAD_S + duration_s + 1.0)
        cpu = proc.usage()
        proc.stop()
        lo, hi = proc.started + LEAD_S + WARM_UP_S, proc.started + LEAD_S + duration_s
        conn = await asyncpg.connect(db)
        try:
            rows = await conn.fetch(
                "SELECT extract(epoch FROM e.at)::float8 - (j.args->>'timestamp')::float8 AS lag"
                " FROM procrastinate_jobs j JOIN procrastinate_events e"
                " ON e.job_id = j.id AND e.type = 'deferred'"
                " WHERE (j.args->>'timestamp')::float8 >= $1"
                " AND (j.args->>'timestamp')::float8 < $2", lo, hi)
            # How fast it deferred at all, whichever slots: when it falls behind, the
            # window's slots are never reached and this is what the run can tell.
            pace = await conn.fetchrow(
                "SELECT count(*) AS n, extract(epoch FROM max(at) - min(at))::float8 AS span"
                " FROM procrastinate_events WHERE type = 'deferred'")
        finally:
            await conn.close()
    lags = [r["lag"] for r in rows]
    expected = round((hi - lo) * count)
    return {**summary_ms(lags), "schedules": count, "duration_s": duration_s,
            "expected_slots": expected, "missed_or_unpublished": expected - len(lags),
            "deferred_total": pace["n"],
            "deferred_per_s": pace["n"] / pace["span"] if pace["span"] else None,
            "process_cpu_s": cpu.cpu_s,
            "measures": "job deferred (row + `deferred` event) - its cron slot; all slots on "
                        "the second; the deferrer sleeps 0.5 s past each slot by design",
            "command": f"procrastinate worker, {count} periodic tasks cron '* * * * * *' "
                       "(seconds), executing nothing"}


def procrastinate_worker(name: str, db: str, periodic: int, queue: str, concurrency: int, *,
                         cron: str = "* * * * *") -> infra.Proc:
    env = {**os.environ, "BENCH_PROCRASTINATE_DB": db, "BENCH_PERIODIC": str(periodic),
           "BENCH_CRON": cron}
    return infra.Proc(name, [sys.executable, "-m", "procrastinate", "--app",
                             "bench.procrastinate_app.app", "worker", "--queues", queue,
                             "--concurrency", str(concurrency)], env)


async def apply_schema(db: str) -> None:
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=db))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def _consumers(amqp_url: str, queue: str) -> bool:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.consumer_count > 0
    except (aio_pika.exceptions.ChannelClosed, aiormq.exceptions.ChannelNotFoundEntity):
        return False
    finally:
        await connection.close()


async def _celery_done(conn: asyncpg.Connection, count: int) -> bool:
    try:
        return (await conn.fetchrow(CELERY_DONE_SQL))["done"] >= count
    except asyncpg.UndefinedTableError:  # the backend creates it with the first result
        return False


async def _procrastinate_done(conn: asyncpg.Connection, count: int) -> bool:
    return (await conn.fetchrow(PROCRASTINATE_DONE_SQL))["done"] >= count
