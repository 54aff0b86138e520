"""Scenario 10: schedules no scheduler can plan, written with SQL among healthy ones while
three schedulers run. Each bad row is set aside once, with its error; no scheduler dies,
and every slot of the healthy schedules runs exactly once."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import asyncpg
import pytest

from tests.chaos.checker import check, violations
from tests.chaos.stack import freeze, interval_schedules, probe_job, scheduler_env, seeded, worker_env
from tests.conftest import wait_for
from tests.poison import insert_poison_schedules


async def insert_poison(conn: asyncpg.Connection, job_id: int) -> dict[int, str]:
    rows = await insert_poison_schedules(conn, job_id)
    await conn.execute("SELECT pg_notify('sundial_scheduler', 'schedules')")
    return rows


def set_aside_events(outputs: list[str], since: datetime) -> list[int]:
    """The schedule ids of the `schedule.set_aside` events logged since `since` (a log
    file keeps earlier runs of the test)."""
    ids = []
    for output in outputs:
        for line in output.splitlines():
            if '"schedule.set_aside"' in line:
                event = json.loads(line)
                if datetime.fromisoformat(event["timestamp"]) >= since:
                    ids.append(event["schedule_id"])
    return ids


@pytest.mark.parametrize("seconds", [
    pytest.param(6, id="short"),
    pytest.param(40, id="long", marks=pytest.mark.slow),
])
async def test_poison_rows_are_set_aside_while_healthy_schedules_fire(
        db_url, amqp_url, queue, processes, seconds):
    seed, rng = seeded()
    conn = await asyncpg.connect(db_url)
    try:
        job = await probe_job(conn, queue)
        # Bad rows before any scheduler starts (each used to kill every instance on its
        # first pass), among healthy ones, and more while they run.
        poison = await insert_poison(conn, job)
        healthy = await interval_schedules(conn, job, 20, every_s=1)
        poison |= await insert_poison(conn, job)
        started = datetime.now(UTC)
        worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
        schedulers = [processes(["scheduler"], scheduler_env(db_url, amqp_url))
                      for _ in range(3)]
        batches = 2
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.5, min(4.0, seconds / 2)))
            poison |= await insert_poison(conn, job)
            batches += 1
        await wait_for(lambda: conn.fetchval(
            "SELECT count(*) = 0 FROM schedules WHERE id = ANY($1) AND set_aside_at IS NULL",
            list(poison)), timeout=20, what="every bad row set aside")
        assert [p.alive() for p in schedulers] == [True] * 3, "a scheduler died"
        await wait_for(lambda: conn.fetchval(
            "SELECT count(*) = 0 FROM runs WHERE published_at IS NULL"), timeout=30,
            what="every run published")
        await freeze(conn)

        rows = {r["id"]: r for r in await conn.fetch(
            "SELECT id, is_active, next_run_at, last_error, run_count FROM schedules "
            "WHERE id = ANY($1)", list(poison))}
        for sid, error in poison.items():
            row = rows[sid]
            assert (row["next_run_at"], row["run_count"]) == (None, 0), dict(row)
            assert row["last_error"].startswith(f"schedule {sid}: {error}"), row["last_error"]
        assert not await conn.fetchval("SELECT count(*) FROM runs WHERE schedule_id = ANY($1)",
                                       list(poison))
        fired = await conn.fetchval("SELECT count(DISTINCT schedule_id) FROM runs "
                                    "WHERE schedule_id = ANY($1)", healthy)
        counts = await check(conn, amqp_url, seed=seed)
        codes = [p.stop() for p in schedulers]
        assert worker.stop() == 0
        per_instance = [set_aside_events([p.output()], started) for p in schedulers]
        events = [sid for ids in per_instance for sid in ids]
        print(f"seed={seed} bad rows={len(poison)} in {batches} batches, "
              f"set aside per instance={[len(ids) for ids in per_instance]}")
        assert codes == [0, 0, 0]
        assert fired == len(healthy), "every healthy schedule fired"
        assert sorted(events) == sorted(poison), "each bad row set aside once, by one instance"
        assert not violations(counts), f"seed={seed}: {violations(counts)}"
    finally:
        await conn.close()
