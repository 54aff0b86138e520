"""Scenarios 5, 6 and 7: workers SIGKILLed mid-run and drained with SIGTERM, every
message delivered twice, and poison messages."""

from __future__ import annotations

import asyncio
import json
import time

import aio_pika
import asyncpg
import pytest

from sundial.core.broker import Outgoing, Publisher, declare_topology
from sundial.core.messages import encode_run
from sundial.core.settings import Settings
from tests.chaos.checker import check, violations
from tests.chaos.stack import manual_runs, probe_job, scheduler_env, seeded, worker_env
from tests.conftest import wait_for

# The delivery limit of the poison scenario.
LIMIT = 3


@pytest.mark.parametrize("seconds, runs", [
    pytest.param(10, 12, id="short"),
    pytest.param(60, 60, id="long", marks=pytest.mark.slow),
])
async def test_sigkilled_workers_complete_each_run_exactly_once(db_url, amqp_url, queue,
                                                                processes, seconds, runs):
    seed, rng = seeded()
    conn = await asyncpg.connect(db_url)
    try:
        jobs = [await probe_job(conn, queue, seconds=s) for s in (2, 3, 4, 5)]
        processes(["scheduler"], scheduler_env(db_url, amqp_url, RUN_LEASE_SECONDS=2))
        env = worker_env(db_url, amqp_url, queue, WORKER_CONCURRENCY=4, RUN_LEASE_SECONDS=2)
        workers = [processes(["worker"], env) for _ in range(2)]
        for i in range(runs):
            await manual_runs(conn, jobs[i % len(jobs)], 1)
        killed: list[int] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(2.0, 4.0))
            i = rng.randrange(len(workers))
            killed.append(workers[i].proc.pid)
            workers[i].kill()
            workers[i] = processes(["worker"], env)
        counts = await check(conn, amqp_url, seed=seed, killed=killed, drain_timeout=120)
        rescued = await conn.fetchval("SELECT count(*) FROM runs WHERE attempt > 1")
        again = await conn.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM probe_executions GROUP BY run_id, attempt "
            "HAVING count(*) > 1) d")
        print(f"seed={seed} kills={len(killed)} runs rescued at a later attempt={rescued} "
              f"attempts run again after their worker was killed={again}")
        assert not violations(counts), f"seed={seed}: {violations(counts)}"
        assert await conn.fetchval("SELECT count(*) FROM runs WHERE status <> 'succeeded'") == 0
    finally:
        await conn.close()


async def test_sigterm_drain_causes_no_retry(db_url, amqp_url, queue, processes):
    seed, _ = seeded()
    conn = await asyncpg.connect(db_url)
    try:
        job = await probe_job(conn, queue, seconds=2)
        processes(["scheduler"], scheduler_env(db_url, amqp_url))
        worker = processes(["worker"], worker_env(db_url, amqp_url, queue,
                                                  WORKER_SHUTDOWN_GRACE=30))
        ids = await manual_runs(conn, job, 4)
        await wait_for(lambda: conn.fetchval(
            "SELECT count(*) = 4 FROM runs WHERE status = 'running'"), timeout=30,
            what="the runs to start")
        assert worker.stop(timeout=60) == 0
        rows = await conn.fetch("SELECT status, attempt FROM runs WHERE id = ANY($1)", ids)
        assert [(r["status"], r["attempt"]) for r in rows] == [("succeeded", 1)] * 4
        counts = await check(conn, amqp_url, seed=seed)
        assert not violations(counts), f"seed={seed}: {violations(counts)}"
    finally:
        await conn.close()


async def publish_copies(pool: asyncpg.Pool, amqp_url: str, run_ids: list[int]) -> None:
    """Second copies of the runs' messages, straight to the broker: the database is left
    to the relay, which publishes (and marks) the originals."""
    rows = await pool.fetch(
        """SELECT r.id AS run_id, r.job_id, j.name AS job, j.handler, j.payload, j.queue,
                  r.schedule_id, r.scheduled_for, r.attempt, j.timeout_seconds
           FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = ANY($1)""", run_ids)
    # The queue is declared with the services' default delivery limit: declare it alike.
    publisher = Publisher(amqp_url, delivery_limit=Settings.model_fields["delivery_limit"].default)
    try:
        errors = await publisher.publish_many(
            [Outgoing(r["run_id"], r["queue"], encode_run(r)) for r in rows])
    finally:
        await publisher.close()
    assert not any(errors), errors


@pytest.mark.parametrize("runs", [
    pytest.param(20, id="short"),
    pytest.param(500, id="long", marks=pytest.mark.slow),
])
async def test_every_message_delivered_twice_executes_once(db_url, amqp_url, queue, processes,
                                                           pool, runs):
    seed, _ = seeded()
    conn = await asyncpg.connect(db_url)
    try:
        job = await probe_job(conn, queue, seconds=0.2)
        env = worker_env(db_url, amqp_url, queue)
        workers = [processes(["worker"], env) for _ in range(2)]
        processes(["scheduler"], scheduler_env(db_url, amqp_url))
        ids = await manual_runs(conn, job, runs)
        # The relay publishes each run; the test publishes every message a second time,
        # as a relay that crashed after the broker's confirm and before marking it would.
        for start in range(0, runs, 50):
            await publish_copies(pool, amqp_url, ids[start:start + 50])
        counts = await check(conn, amqp_url, seed=seed)
        for w in workers:
            assert w.stop() == 0
        assert not violations(counts), f"seed={seed}: {violations(counts)}"
        assert await conn.fetchval("SELECT count(*) FROM probe_executions") == runs
    finally:
        await conn.close()


async def test_poison_messages_are_dead_lettered_while_healthy_runs_flow(
        db_url, amqp_url, queue, processes):
    seed, _ = seeded()
    conn = await asyncpg.connect(db_url)
    try:
        healthy = await probe_job(conn, queue)
        suicide = await probe_job(conn, queue, function="chaos.suicide", max_attempts=3)
        # Every process declares the queue with the same delivery limit. The reaper's
        # lease is longer than the workers', so that it is the worker holding the
        # redelivered message that takes the killer run over, every time.
        processes(["scheduler"], scheduler_env(db_url, amqp_url, RUN_LEASE_SECONDS=6,
                                               RABBITMQ_DELIVERY_LIMIT=LIMIT))
        env = worker_env(db_url, amqp_url, queue, RABBITMQ_DELIVERY_LIMIT=LIMIT,
                         RUN_LEASE_SECONDS=1)
        worker = processes(["worker"], env)
        garbage, unknown = f"garbage-{queue}", f"unknown-{queue}"
        async with await aio_pika.connect(amqp_url) as broker:
            channel = await broker.channel()
            exchange = await declare_topology(channel, [queue], delivery_limit=LIMIT)
            for message_id, body in ((garbage, b"\x00not json"), (unknown, json.dumps({
                    "version": 1, "run_id": 987654321, "job_id": healthy, "job": "x",
                    "handler": "python", "payload": {}, "schedule_id": None,
                    "scheduled_for": "2024-01-01T00:00:00Z", "attempt": 1,
                    "timeout_seconds": 5}).encode())):
                await exchange.publish(aio_pika.Message(body, message_id=message_id),
                                       routing_key=queue)
        [killer] = await manual_runs(conn, suicide, 1)
        ids = []
        crashed: list[int] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ids += await manual_runs(conn, healthy, 2)
            await asyncio.sleep(0.5)
            if not worker.alive():
                assert worker.proc.returncode == 17, "only the killer job ends a worker"
                crashed.append(worker.proc.pid)
                worker = processes(["worker"], env)
            final = await conn.fetchval("SELECT status FROM runs WHERE id = $1", killer)
            if final not in ("queued", "running"):
                break
        row = await conn.fetchrow("SELECT status, attempt, error FROM runs WHERE id = $1", killer)
        print(f"seed={seed} killer run {killer}: {dict(row)} after {len(crashed)} worker crashes")
        counts = await check(conn, amqp_url, seed=seed, expected_dead={garbage, unknown, str(killer)},
                             killed=crashed)
        # One crash per delivery, the last delivery ends it: no attempt was counted.
        assert (row["status"], row["attempt"], len(crashed)) == ("dead", 1, LIMIT), row
        assert f"delivered {LIMIT + 1} times without a result" in row["error"]
        assert await conn.fetchval(
            "SELECT count(*) FROM runs WHERE id = ANY($1) AND status = 'succeeded'", ids) == len(ids)
        assert not violations(counts), f"seed={seed}: {violations(counts)}"
    finally:
        await conn.close()
