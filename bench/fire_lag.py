"""4. Fire lag: schedules every second with spread phases, and a burst due at one instant.

Steady: N schedules with a 1 s interval, phases spread over the second, for D seconds;
lag = published_at - scheduled_for (Sundial), JobAcquired - scheduled start
(APScheduler 4), publish returned - due (Celery beat 5, default settings: no confirms).
The first two seconds are a warm-up and not counted; slots that never ran (coalesced)
are counted as missed.
Burst: N schedules due on the same instant while `sundial scheduler` idles; time to
clear = last published_at - that instant.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import asyncpg

from bench import aps, infra, seed
from bench.stats import summary_ms

LEAD_S = 5.0     # first slots this far after seeding: the process is up by then
WARM_UP_S = 2.0


async def sundial_steady(count: int, duration_s: float) -> dict:
    async with infra.database("lag") as db:
        with infra.vhost("lag") as amqp:
            await seed.schedules(db, count, every_s=1, first_in_s=LEAD_S, spread_s=1.0)
            conn = await asyncpg.connect(db)
            try:
                first = await conn.fetchval(
                    "SELECT extract(epoch FROM min(next_run_at))::float8 FROM schedules")
                proc = infra.sundial("sundial-lag", ["scheduler"], infra.sundial_env(db, amqp))
                await asyncio.sleep(max(0.0, first + duration_s + 1.0 - time.time()))
                cpu = proc.usage()
                proc.stop()
                ran_s = time.time() - proc.started
                passes = await conn.fetchval("SELECT coalesce(sum(ticks), 0)::float8 FROM scheduler_instances")
                lo, hi = first + WARM_UP_S, first + duration_s
                rows = await conn.fetch(
                    "SELECT extract(epoch FROM published_at - scheduled_for)::float8 AS lag,"
                    " extract(epoch FROM created_at - scheduled_for)::float8 AS claimed,"
                    " extract(epoch FROM published_at - created_at)::float8 AS publish"
                    " FROM runs WHERE scheduled_for >= to_timestamp($1)"
                    " AND scheduled_for < to_timestamp($2)", lo, hi)
            finally:
                await conn.close()
    lags = [r["lag"] for r in rows if r["lag"] is not None]
    expected = round((hi - lo) * count)
    # Where the lag goes: slot -> the tick's transaction (created_at) -> confirm recorded.
    split = {"slot_to_tick": summary_ms([r["claimed"] for r in rows]),
             "tick_to_published": summary_ms([r["publish"] for r in rows if r["publish"] is not None])}
    return {**summary_ms(lags), "breakdown": split, "passes_per_s": passes / ran_s,
            "schedules": count, "duration_s": duration_s,
            "expected_slots": expected, "missed_or_unpublished": expected - len(lags),
            "scheduler_cpu_s": cpu.cpu_s,
            "command": f"sundial scheduler; {count} interval schedules of 1 s, phases spread"}


async def sundial_burst(count: int, *, timeout_s: float) -> dict:
    async with infra.database("burst") as db:
        with infra.vhost("burst") as amqp:
            await seed.schedules(db, count, every_s=3600, first_in_s=LEAD_S)
            conn = await asyncpg.connect(db)
            try:
                at = await conn.fetchval(
                    "SELECT extract(epoch FROM min(next_run_at))::float8 FROM schedules")
                proc = infra.sundial("sundial-burst", ["scheduler"], infra.sundial_env(db, amqp))
                try:
                    await asyncio.sleep(max(0.0, at - time.time()))
                    await infra.wait_until(
                        lambda: _published(conn, count), timeout_s, "the burst", every=0.1)
                finally:
                    proc.stop()
                rows = await conn.fetch(
                    "SELECT extract(epoch FROM published_at - scheduled_for)::float8 AS lag FROM runs")
            finally:
                await conn.close()
    lags = [r["lag"] for r in rows]
    return {**summary_ms(lags), "schedules": count, "clear_s": max(lags),
            "rate_per_s": count / max(lags),
            "command": f"sundial scheduler idle; {count} schedules due on one instant"}


async def apscheduler_steady(count: int, duration_s: float) -> dict:
    async with infra.database("aps_lag", migrated=False) as db:
        first = aps.utcnow() + timedelta(seconds=LEAD_S + count / 200)  # seeding takes a while
        await aps.seed(db, count, aps.every_second(first, count))
        events = infra.LOGS / "aps-lag-events.json"
        proc = infra.python_module("aps-lag", "bench.aps",
                                   ["node", "--db", db, "--events", str(events)])
        start = first.timestamp()
        await asyncio.sleep(max(0.0, start + duration_s + 1.0 - time.time()))
        cpu = proc.usage()
        proc.stop()
    lo, hi = start + WARM_UP_S, start + duration_s
    lags = [acq - due for acq, due in json.loads(events.read_text()) if lo <= due < hi]
    expected = round((hi - lo) * count)
    return {**summary_ms(lags), "schedules": count, "duration_s": duration_s,
            "expected_slots": expected, "missed_or_unpublished": expected - len(lags),
            "process_cpu_s": cpu.cpu_s,
            "command": f"python -m bench.aps node --role both; {count} IntervalTrigger(seconds=1)"}


async def celery_steady(count: int, duration_s: float) -> dict:
    with infra.vhost("celery_lag") as amqp:
        out = infra.LOGS / "celery-steady.json"
        proc = infra.python_module("celery-steady", "bench.celery_beat",
                                   ["steady", "--amqp", amqp, "--entries", str(count),
                                    "--seconds", str(duration_s + 2), "--out", str(out)])
        await asyncio.to_thread(proc.proc.wait, duration_s + 60)
        proc.stop()
    data = json.loads(out.read_text())
    start = data["ready"] + 2.0
    lo, hi = start + WARM_UP_S, start + duration_s - 1
    lags = [sent - due for sent, due in data["published"] if lo <= due < hi]
    expected = round((hi - lo) * count)
    return {**summary_ms(lags), "schedules": count, "duration_s": duration_s,
            "expected_slots": expected, "missed_or_unpublished": expected - len(lags),
            "command": f"python -m bench.celery_beat steady; {count} entries every 1 s"}


async def _published(conn: asyncpg.Connection, count: int) -> bool:
    return await conn.fetchval("SELECT count(published_at) FROM runs") >= count
