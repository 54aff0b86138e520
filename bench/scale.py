"""5. Scale and idle cost: many stored schedules, few due.

For each size: `size` schedules due in one to two hours plus FEW_DUE schedules due every
FEW_EVERY_S seconds, vacuumed and analysed as autovacuum would leave them. Tick cost =
the median execution time (EXPLAIN ANALYZE, run in a rolled-back transaction, after
WARM_UP unmeasured runs so the pages a pass reads are cached as in a running system) of
the claim query and of the sleep-time query, the two statements every pass runs; then
`sundial scheduler` runs for a window and its CPU (from /proc/<pid>/stat) and RSS are
read.
Peers, idle with their own stored schedules: APScheduler 4 (role both) and Celery beat
5 (entries in memory), CPU over the same window and RSS.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from datetime import timedelta

import asyncpg

from bench import aps, infra, seed
from sundial.core.sql import q

FEW_DUE = 10
FEW_EVERY_S = 10.0
REPEAT = 51
WARM_UP = 20
WARM_S = 5.0


async def _explain_ms(conn: asyncpg.Connection, sql: str, *args: object) -> float:
    """Median execution time; rolled back, so the claim's locks and writes never stay."""
    times = []
    for i in range(WARM_UP + REPEAT):
        tx = conn.transaction()
        await tx.start()
        try:
            plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
        finally:
            await tx.rollback()
        if i >= WARM_UP:
            times.append(json.loads(plan)[0]["Execution Time"])
    return statistics.median(times)


async def _settle(proc: infra.Proc, timeout_s: float = 120.0) -> None:
    """Wait until start-up is over (a second with under 50 ms of CPU), then WARM_S more:
    Celery beat builds its entries for seconds, and the idle window must not see it."""
    deadline = time.monotonic() + timeout_s
    last = proc.usage().cpu_s
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        now = proc.usage().cpu_s
        if now - last < 0.05:
            break
        last = now
    await asyncio.sleep(WARM_S)


async def _idle(proc: infra.Proc, window_s: float) -> tuple[float, float]:
    """(share of a core, RSS in MB) over the window, after start-up."""
    await _settle(proc)
    before, t0 = proc.usage(), time.monotonic()
    await asyncio.sleep(window_s)
    after, t1 = proc.usage(), time.monotonic()
    return (after.cpu_s - before.cpu_s) / (t1 - t0), after.rss_mb


async def sundial(size: int, window_s: float) -> dict:
    async with infra.database("scale") as db:
        with infra.vhost("scale") as amqp:
            await seed.schedules(db, size, every_s=3600, first_in_s=3600, spread_s=3600)
            await seed.schedules(db, FEW_DUE, every_s=FEW_EVERY_S, first_in_s=-FEW_EVERY_S,
                                 spread_s=FEW_EVERY_S, prefix="bench-few-")
            conn = await asyncpg.connect(db)
            try:
                await conn.execute("VACUUM (ANALYZE) schedules")
                claim_ms = await _explain_ms(conn, q("claim_due_schedules"), 500, 0.0)
                sleep_ms = await _explain_ms(conn, q("seconds_until_next_work"))
                proc = infra.sundial(f"sundial-idle-{size}", ["scheduler"],
                                     infra.sundial_env(db, amqp))
                try:
                    cpu, rss = await _idle(proc, window_s)
                finally:
                    proc.stop()
                runs = await conn.fetchval("SELECT count(*) FROM runs")
            finally:
                await conn.close()
    return {"schedules": size, "few_due": f"{FEW_DUE} every {FEW_EVERY_S:g} s",
            "claim_query_ms": claim_ms, "sleep_query_ms": sleep_ms,
            "explain_runs": REPEAT, "explain_warm_up": WARM_UP,
            "tick_ms": claim_ms + sleep_ms, "cpu_core_pct": cpu * 100,
            "cpu_s_per_min": cpu * 60, "rss_mb": rss, "window_s": window_s,
            "runs_dispatched": runs,
            "command": f"sundial scheduler with {size} stored schedules"}


async def apscheduler(size: int, window_s: float) -> dict:
    async with infra.database("aps_idle", migrated=False) as db:
        await aps.seed(db, size, aps.due_at(aps.utcnow() + timedelta(hours=1)))
        proc = infra.python_module(f"aps-idle-{size}", "bench.aps", ["node", "--db", db])
        try:
            cpu, rss = await _idle(proc, window_s)
        finally:
            proc.stop()
    return {"schedules": size, "cpu_core_pct": cpu * 100, "cpu_s_per_min": cpu * 60,
            "rss_mb": rss, "window_s": window_s,
            "command": f"python -m bench.aps node --role both with {size} stored schedules"}


async def celery_beat(size: int, window_s: float) -> dict:
    with infra.vhost("celery_idle") as amqp:
        out = infra.LOGS / "celery-idle.json"
        proc = infra.python_module(f"celery-idle-{size}", "bench.celery_beat",
                                   ["idle", "--amqp", amqp, "--entries", str(size),
                                    "--seconds", str(180 + window_s), "--out", str(out)])
        try:
            cpu, rss = await _idle(proc, window_s)
        finally:
            proc.stop()
    return {"schedules": size, "cpu_core_pct": cpu * 100, "cpu_s_per_min": cpu * 60,
            "rss_mb": rss, "window_s": window_s,
            "command": f"python -m bench.celery_beat idle with {size} entries (PersistentScheduler, kept in memory)"}
