"""1. Dispatch rate: a backlog of due schedules turned into recorded runs handed to the
workers, by one scheduler process and nothing else (no worker runs).

Sundial: runs recorded, next_run_at advanced and messages confirmed by RabbitMQ, per
second, from `sundial scheduler`'s start until every run has published_at.
APScheduler 4: one process with role `scheduler` (no worker) and the schedules due at
once; jobs created in its data store (the `jobs` table its workers acquire from: its
hand-over) per second, from its start to the last jobs.created_at. Nothing is executed.
Celery beat 5: its loop with a realistic schedule (1,000 entries at full size) due
at once, run as `celery beat` runs it (PersistentScheduler, default settings: no
publisher confirms); messages published per second, from its start. Once more with
`confirm_publish` (not a default) for the guarantee Sundial gives, labelled as such.
"""

from __future__ import annotations

import json
import time

import asyncpg

from bench import aps, infra, seed

DONE_SQL = """
SELECT NOT EXISTS (SELECT 1 FROM schedules WHERE is_active AND next_run_at <= now())
   AND NOT EXISTS (SELECT 1 FROM runs WHERE status = 'queued' AND published_at IS NULL)
"""


async def sundial(count: int, *, timeout_s: float) -> dict:
    async with infra.database("dispatch") as db:
        with infra.vhost("dispatch") as amqp:
            await seed.schedules(db, count, every_s=3600, first_in_s=-1)
            conn = await asyncpg.connect(db)
            try:
                started = time.time()
                proc = infra.sundial("sundial-dispatch", ["scheduler"], infra.sundial_env(db, amqp))
                try:
                    await infra.wait_until(lambda: conn.fetchval(DONE_SQL), timeout_s,
                                           f"{count} runs published", every=0.2)
                    cpu = proc.usage()
                finally:
                    proc.stop()
                row = await conn.fetchrow(
                    "SELECT count(*) AS runs, count(published_at) AS published,"
                    " extract(epoch FROM min(created_at))::float8 AS first_created,"
                    " extract(epoch FROM max(published_at))::float8 AS last_published"
                    " FROM runs")
                advanced = await conn.fetchval(
                    "SELECT count(*) FROM schedules WHERE next_run_at > now() AND run_count = 1")
            finally:
                await conn.close()
            confirmed = await infra.queue_depth(amqp, "sundial." + seed.QUEUE)
    seconds = row["last_published"] - started
    return {"schedules": count, "runs": row["runs"], "published": row["published"],
            "advanced": advanced, "messages_in_queue": confirmed,
            "seconds": seconds, "rate_per_s": row["published"] / seconds,
            "rate_after_start_per_s": row["published"] / (row["last_published"] - row["first_created"]),
            "scheduler_cpu_s": cpu.cpu_s, "scheduler_rss_mb": cpu.rss_mb,
            "measures": "runs recorded + schedules advanced + messages confirmed by RabbitMQ",
            "command": "sundial scheduler  (defaults: SCHEDULER_BATCH_SIZE=500)"}


async def apscheduler(count: int, *, timeout_s: float) -> dict:
    async with infra.database("aps_dispatch", migrated=False) as db:
        await aps.seed(db, count, aps.due_at(aps.utcnow()))
        conn = await asyncpg.connect(db)
        try:
            started = time.time()
            proc = infra.python_module("aps-dispatch", "bench.aps",
                                       ["node", "--db", db, "--role", "scheduler"])
            try:
                await infra.wait_until(
                    lambda: _at_least(conn, "SELECT count(*) FROM jobs", count),
                    timeout_s, f"{count} APScheduler jobs created", every=0.2)
                cpu = proc.usage()
            finally:
                proc.stop()
            last = await conn.fetchval(
                "SELECT extract(epoch FROM max(created_at))::float8 FROM jobs")
            executed = await conn.fetchval("SELECT count(*) FROM job_results")
        finally:
            await conn.close()
    seconds = last - started
    return {"schedules": count, "jobs_created": count, "jobs_executed": executed,
            "seconds": seconds, "rate_per_s": count / seconds, "process_cpu_s": cpu.cpu_s,
            "process_rss_mb": cpu.rss_mb,
            "measures": "jobs created in its data store (no worker, nothing executed)",
            "command": "python -m bench.aps node --role scheduler  (no worker)"}


async def celery_beat(count: int, *, cap_s: float, confirms: bool = False) -> dict:
    tag = "celery-backlog-confirms" if confirms else "celery-backlog"
    with infra.vhost("celery") as amqp:
        out = infra.LOGS / f"{tag}.json"
        started = time.time()
        proc = infra.python_module(tag, "bench.celery_beat",
                                   ["backlog", "--amqp", amqp, "--entries", str(count),
                                    "--seconds", str(cap_s), "--out", str(out),
                                    *(["--confirms"] if confirms else [])])
        proc.proc.wait(cap_s + 60)
        proc.stop()
        data = json.loads(out.read_text())
        in_queue = await infra.queue_depth(amqp, "bench.celery")
    published = data["published"]
    end = published[-1][0] if len(published) >= count else data["ended"]
    seconds = end - started
    how = ("confirmed by RabbitMQ (confirm_publish: not a default)" if confirms
           else "sent, not confirmed (Celery's default: no publisher confirms)")
    return {"entries": count, "published": len(published), "messages_in_queue": in_queue,
            "seconds": seconds, "rate_per_s": len(published) / seconds,
            "rate_after_start_per_s": (len(published) - 1) / max(1e-9, end - published[0][0])
            if published else None,
            "capped": len(published) < count, "cap_s": cap_s, "confirms": confirms,
            "measures": f"messages published per second, {how}",
            "command": "python -m bench.celery_beat backlog  (PersistentScheduler, "
                       + ("confirm_publish)" if confirms else "default settings)")}


async def _at_least(conn: asyncpg.Connection, sql: str, count: int) -> bool:
    return await conn.fetchval(sql) >= count
