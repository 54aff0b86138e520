"""Scenarios 1, 2 and 8: schedulers SIGKILLed at random and at injected points of the
outbox's path (sundial.core.faults), all down then back (misfire policies), and a scheduler
whose host clock is 30 s wrong."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from sundial.core import faults
from sundial.core.schedule import Spec, plan
from tests.chaos.checker import check, slots_before, violations
from tests.chaos.stack import freeze, interval_schedules, probe_job, scheduler_env, seeded, worker_env
from tests.conftest import Process, wait_for

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


@pytest.mark.parametrize("seconds, schedules", [
    pytest.param(8, 10, id="short"),
    pytest.param(60, 50, id="long", marks=pytest.mark.slow),
])
async def test_sigkilled_schedulers_lose_and_double_nothing(db_url, amqp_url, queue, processes,
                                                            seconds, schedules):
    seed, rng = seeded()
    conn = await asyncpg.connect(db_url)
    try:
        job = await probe_job(conn, queue)
        await interval_schedules(conn, job, schedules, every_s=2)
        env = scheduler_env(db_url, amqp_url)

        points = list(faults.POINTS)
        rng.shuffle(points)
        started = 0

        def start_scheduler() -> tuple[Process, str | None]:
            # Every other instance also dies at an injected point of the outbox's path,
            # the points taken in turn: the first time it gets there.
            nonlocal started
            started += 1
            point = points[(started // 2) % len(points)] if started % 2 else None
            extra = {faults.ENV: point} if point else {}
            return processes(["scheduler"], {**env, **extra}), point

        worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
        schedulers = [start_scheduler() for _ in range(3)]
        kills = 0
        injected: dict[str, int] = dict.fromkeys(faults.POINTS, 0)

        def collect() -> None:
            """Count the instances that died at their point, and start others instead."""
            for i, (process, point) in enumerate(schedulers):
                if point and not process.alive():
                    assert process.proc.returncode == -signal.SIGKILL, process.proc.returncode
                    injected[point] += 1
                    schedulers[i] = start_scheduler()

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            collect()
            i = rng.randrange(3)
            schedulers[i][0].kill()
            kills += 1
            schedulers[i] = start_scheduler()
        # The instances still carrying a point get a few more seconds to reach it (a short
        # run may otherwise end before any got there: the random kills come first).
        settle = time.monotonic() + 6
        while time.monotonic() < settle and not any(injected.values()):
            await asyncio.sleep(0.25)
            collect()
        # The survivors relay whatever the killed instances left unpublished.
        await wait_for(lambda: conn.fetchval(
            "SELECT count(*) = 0 FROM runs WHERE published_at IS NULL"), timeout=30,
            what="every run published")
        await freeze(conn)
        counts = await check(conn, amqp_url, seed=seed)
        for process, _ in schedulers:   # one may still be starting: no exit code to hold
            process.stop()
        assert worker.stop() == 0
        print(f"seed={seed} kills={kills} killed at injected points: {injected}")
        assert not violations(counts), f"seed={seed}: {violations(counts)}"
        assert kills >= 2
        assert any(injected.values()), f"seed={seed}: no instance died at an injected point"
        if seconds >= 60:
            assert all(injected.values()), f"seed={seed}: a fault point was never reached"
    finally:
        await conn.close()


# (policy, grace): each exercises a different rule of sundial.core.schedule.plan after downtime.
POLICIES = [("run_all", 3600.0), ("run_all", 3.0), ("run_once", 1.0), ("skip", 1.0),
            ("skip", 3.0)]


@pytest.mark.parametrize("down_s", [
    pytest.param(7, id="short"),
    pytest.param(30, id="long", marks=pytest.mark.slow),
])
async def test_catch_up_after_downtime_follows_each_misfire_policy(db_url, amqp_url, queue,
                                                                   processes, down_s):
    seed, _ = seeded()
    conn = await asyncpg.connect(db_url)
    try:
        job = await probe_job(conn, queue)
        ids = {}
        for policy, grace in POLICIES:
            # The first slot after the schedulers are up: the slots before the stop are
            # all expected, and a policy with a short grace would skip one a slow
            # start-up made late.
            [sid] = await interval_schedules(conn, job, 1, every_s=1, policy=policy,
                                             grace_s=grace, start_in_s=5)
            ids[sid] = (policy, grace)
        env = scheduler_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=0.5)
        worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
        schedulers = [processes(["scheduler"], env) for _ in range(2)]
        await wait_for(lambda: conn.fetchval(
            "SELECT count(DISTINCT schedule_id) = $1 FROM runs", len(ids)), timeout=30,
            what="every schedule fired")
        assert [p.stop() for p in schedulers] == [0, 0]
        stopped = {r["id"]: r for r in await conn.fetch("SELECT * FROM schedules")}
        up_after = await conn.fetchval("SELECT now()") + timedelta(seconds=down_s)
        await asyncio.sleep(down_s)
        # One scheduler comes back first, so one tick (one transaction, one now())
        # catches every schedule up; a second joins afterwards.
        back = processes(["scheduler"], env)
        await wait_for(lambda: conn.fetchval(
            "SELECT count(*) > 0 FROM runs WHERE created_at >= $1", up_after), timeout=30,
            what="the catch-up tick")
        processes(["scheduler"], env)
        catch_up_at = await conn.fetchval("SELECT min(created_at) FROM runs WHERE created_at >= $1",
                                          up_after)
        await asyncio.sleep(3)
        # Each schedule fires every second, so a next_run_at is in the past for the moment
        # between its slot and the tick that fires it: caught up means all are ahead at
        # some instant, not at any given one.
        await wait_for(lambda: conn.fetchval(
            "SELECT bool_and(next_run_at > now()) FROM schedules"), timeout=10, interval=0.02,
            what="next_run_at in the future once caught up")
        await freeze(conn)
        expected = {}
        for sid, row in stopped.items():
            final = await conn.fetchrow("SELECT * FROM schedules WHERE id = $1", sid)
            spec = Spec.from_row(row)
            tick = plan(spec, row["next_run_at"], catch_up_at)
            every = slots_before(final, final["next_run_at"])
            expected[sid] = ([s for s in every if s < row["next_run_at"]] + tick.slots
                             + [s for s in every if s >= tick.next_run_at])
            missed = len([s for s in every if row["next_run_at"] <= s < tick.next_run_at]) \
                - len(tick.slots)
            print(f"schedule {sid} {ids[sid]}: catch-up runs {len(tick.slots)}, missed {missed}")
        counts = await check(conn, amqp_url, seed=seed, expected_slots=expected)
        assert back.alive()
        assert worker.stop() == 0
        assert not violations(counts), f"seed={seed}: {violations(counts)}"
    finally:
        await conn.close()


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="libfaketime is not installed")
@pytest.mark.parametrize("seconds", [
    pytest.param(8, id="short"),
    pytest.param(40, id="long", marks=pytest.mark.slow),
])
async def test_a_scheduler_with_a_wrong_clock_fires_nothing_early_or_twice(
        db_url, amqp_url, queue, processes, seconds):
    seed, _ = seeded()
    conn = await asyncpg.connect(db_url)
    try:
        job = await probe_job(conn, queue)
        await interval_schedules(conn, job, 10, every_s=2)
        worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
        skewed = []
        for offset in ("+30s", "-30s"):
            env = scheduler_env(db_url, amqp_url, LD_PRELOAD=str(LIBFAKETIME), FAKETIME=offset,
                                FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_NO_CACHE="1")
            skewed.append(processes(["scheduler"], env))
        await asyncio.sleep(seconds)
        early = await conn.fetchval("SELECT count(*) FROM runs WHERE created_at < scheduled_for")
        fired = await conn.fetchval("SELECT count(*) FROM runs")
        await freeze(conn)
        counts = await check(conn, amqp_url, seed=seed)
        assert [p.stop() for p in skewed] == [0, 0]
        assert worker.stop() == 0
        print(f"seed={seed} runs={fired} fired_early={early}")
        assert early == 0, "a run was created before its slot by the database clock"
        assert fired >= 10, "the skewed schedulers fired"
        assert not violations(counts), f"seed={seed}: {violations(counts)}"
    finally:
        await conn.close()


def test_libfaketime_shifts_the_clock_of_a_child() -> None:
    if not LIBFAKETIME.exists():
        pytest.skip("libfaketime is not installed")
    import subprocess
    import sys
    env = {**os.environ, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": "+30s"}
    out = subprocess.run([sys.executable, "-c", "import time; print(time.time())"], env=env,
                         capture_output=True, text=True, check=True)
    assert float(out.stdout) - time.time() > 25
