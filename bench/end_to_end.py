"""2. End-to-end rate: due runs executed by the `noop` handler and recorded as succeeded,
per second, with 1, 2 and 4 worker processes.

Sundial: the workers are started and registered first; then one `sundial scheduler`
dispatches a backlog; measured from the scheduler's start to the last finished_at.
APScheduler 4: its worker processes (role worker) started first, then one role-scheduler
process; measured from that start to the last job_results.finished_at.
"""

from __future__ import annotations

import time

import asyncpg

from bench import aps, infra, seed

CONCURRENCY = 100  # Sundial's WORKER_CONCURRENCY; APScheduler's default max_concurrent_jobs

SUCCEEDED_SQL = "SELECT count(*) FROM runs WHERE status = 'succeeded'"


async def sundial(count: int, workers: int, *, timeout_s: float) -> dict:
    async with infra.database("e2e") as db:
        with infra.vhost("e2e") as amqp:
            await seed.schedules(db, count, every_s=3600, first_in_s=-1)
            conn = await asyncpg.connect(db)
            env = infra.sundial_env(db, amqp, WORKER_QUEUES=seed.QUEUE,
                                    WORKER_CONCURRENCY=CONCURRENCY)
            procs = [infra.sundial(f"sundial-worker-{workers}-{i}", ["worker"], env)
                     for i in range(workers)]
            try:
                await infra.wait_until(
                    lambda: _at_least(conn, "SELECT count(*) FROM workers WHERE status = 'online'",
                                      workers), 60, "workers online")
                started = time.time()
                procs.append(infra.sundial(f"sundial-e2e-scheduler-{workers}", ["scheduler"], env))
                await infra.wait_until(lambda: _at_least(conn, SUCCEEDED_SQL, count), timeout_s,
                                       f"{count} runs succeeded", every=0.25)
                cpu = [p.usage().cpu_s for p in procs]
                last = await conn.fetchval(
                    "SELECT extract(epoch FROM max(finished_at))::float8 FROM runs")
                other = await conn.fetchval("SELECT count(*) FROM runs WHERE status <> 'succeeded'")
            finally:
                for p in procs:
                    p.stop()
                await conn.close()
    seconds = last - started
    return {"runs": count, "workers": workers, "concurrency": CONCURRENCY,
            "not_succeeded": other, "seconds": seconds, "rate_per_s": count / seconds,
            "worker_cpu_s": cpu[:-1], "scheduler_cpu_s": cpu[-1],
            "command": f"sundial scheduler + {workers} x sundial worker "
                       f"(WORKER_QUEUES=bench WORKER_CONCURRENCY={CONCURRENCY})"}


async def apscheduler(count: int, workers: int, *, timeout_s: float) -> dict:
    async with infra.database("aps_e2e", migrated=False) as db:
        await aps.seed(db, count, aps.due_at(aps.utcnow()))
        conn = await asyncpg.connect(db)
        procs = [infra.python_module(f"aps-worker-{workers}-{i}", "bench.aps",
                                     ["node", "--db", db, "--role", "worker"])
                 for i in range(workers)]
        try:
            await _settle(procs)
            started = time.time()
            procs.append(infra.python_module(f"aps-scheduler-{workers}", "bench.aps",
                                             ["node", "--db", db, "--role", "scheduler"]))
            await infra.wait_until(
                lambda: _at_least(conn, "SELECT count(*) FROM job_results", count), timeout_s,
                f"{count} APScheduler jobs finished", every=0.25)
            last = await conn.fetchval(
                "SELECT extract(epoch FROM max(finished_at))::float8 FROM job_results")
            failed = await conn.fetchval(
                "SELECT count(*) FROM job_results WHERE outcome::text <> 'success'")
        finally:
            for p in procs:
                p.stop()
            await conn.close()
    seconds = last - started
    return {"jobs": count, "workers": workers, "max_concurrent_jobs": CONCURRENCY,
            "not_succeeded": failed, "seconds": seconds, "rate_per_s": count / seconds,
            "command": f"python -m bench.aps node --role scheduler + {workers} x --role worker"}


async def _settle(procs: list[infra.Proc]) -> None:
    """Give APScheduler workers the time to import and connect (they do not register)."""
    import asyncio

    await asyncio.sleep(3.0)
    for p in procs:
        if not p.alive():
            raise RuntimeError(f"bench: {p.name} exited: {p.output()[-500:]}")


async def _at_least(conn: asyncpg.Connection, sql: str, count: int) -> bool:
    return await conn.fetchval(sql) >= count
