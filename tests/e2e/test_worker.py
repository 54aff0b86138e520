"""Real `sundial worker` processes against the real PostgreSQL and RabbitMQ.

Runs are inserted with SQL and published with sundial.core.outbox.publish_runs, as the
scheduler's outbox does; one test drives them from a schedule with `sundial scheduler`.
"""

from __future__ import annotations

import json
import signal
import uuid
from typing import Any

import aio_pika
import asyncpg

from sundial.core.broker import DEAD_LETTER_QUEUE, Outgoing, Publisher, declare_topology
from sundial.core.messages import encode_run
from sundial.core.outbox import publish_runs
from tests.conftest import service_env, wait_for

FINAL = ("succeeded", "failed", "timed_out", "cancelled", "skipped", "dead")


def worker_env(db_url: str, amqp_url: str, queue: str, **extra: object) -> dict[str, str]:
    return service_env(db_url, amqp_url, **{"WORKER_QUEUES": queue, "WORKER_HEARTBEAT_INTERVAL": 0.5,
                                            "HEALTHCHECK_INTERVAL": 1, "WORKER_CONCURRENCY": 4,
                                            **extra})


async def add_job(conn: asyncpg.Connection, queue: str, handler: str, payload: dict | None = None,
                  **columns: Any) -> int:
    names = ["name", "handler", "queue", "payload", *columns]
    values = [f"{handler}-{uuid.uuid4().hex[:12]}", handler, queue, payload or {},
              *columns.values()]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchval(
        f"INSERT INTO jobs ({', '.join(names)}) VALUES ({placeholders}) RETURNING id", *values)


async def trigger(pool: asyncpg.Pool, amqp_url: str, job_id: int, count: int = 1) -> list[int]:
    """Insert `count` manual runs of the job and publish them as the outbox does."""
    rows = await pool.fetch(
        """INSERT INTO runs (job_id, scheduled_for, trigger, max_attempts)
           SELECT j.id, now(), 'manual', j.max_attempts FROM jobs j, generate_series(1, $2)
           WHERE j.id = $1
           RETURNING id""", job_id, count)
    ids = [r["id"] for r in rows]
    await publish(pool, amqp_url, ids)
    return ids


async def publish(pool: asyncpg.Pool, amqp_url: str, run_ids: list[int]) -> None:
    """Publish runs inserted by the test as a real publisher would: lease, publish, mark."""
    await pool.execute("UPDATE runs SET publish_lease_until = now() + interval '30 s' "
                       "WHERE id = ANY($1) AND published_at IS NULL", run_ids)
    rows = await pool.fetch(
        """SELECT r.id AS run_id, r.job_id, j.name AS job, j.handler, j.payload, j.queue,
                  r.schedule_id, r.scheduled_for, r.attempt, j.timeout_seconds
           FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = ANY($1)""", run_ids)
    publisher = Publisher(amqp_url, delivery_limit=5)
    try:
        result = await publish_runs(pool, publisher, [dict(r) for r in rows])
    finally:
        await publisher.close()
    assert not result.failed, result.failed


async def run_row(pool: asyncpg.Pool, run_id: int) -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)


async def wait_final(pool: asyncpg.Pool, run_id: int, timeout: float = 30) -> asyncpg.Record:
    async def final() -> asyncpg.Record | None:
        row = await run_row(pool, run_id)
        return row if row["status"] in FINAL else None
    return await wait_for(final, timeout, what=f"run {run_id} to finish")


def events(process: Any, name: str) -> list[dict]:
    """The process's log events called `name` (its log file may hold earlier runs' too:
    only lines after this process's own start count)."""
    found: list[dict] = []
    for line in process.output().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("event") == "worker.started" and event.get("worker_id", "").endswith(
                f":{process.pid}"):
            found = []
        if event.get("event") == name:
            found.append(event)
    return found


async def test_noop_runs_succeed_with_results(pool, db_url, amqp_url, queue, processes):
    job = await add_job(pool, queue, "noop")
    worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
    run_ids = await trigger(pool, amqp_url, job, count=20)
    for run_id in run_ids:
        row = await wait_final(pool, run_id)
        assert row["status"] == "succeeded"
        assert row["result"] == {"ok": True}
        assert row["attempt"] == 1 and row["finished_at"] >= row["started_at"]
        assert row["worker_id"].startswith("worker@")
    registered = await pool.fetchrow("SELECT * FROM workers")
    assert registered["status"] == "online" and queue in registered["queues"]
    assert {"noop", "sleep", "http"} <= set(registered["handlers"])
    assert "command" not in registered["handlers"]
    assert worker.stop() == 0
    assert await pool.fetchval("SELECT status FROM workers") == "offline"


async def test_a_delivered_run_counts_as_published_though_its_publisher_never_marked_it(
        pool, db_url, amqp_url, queue, processes):
    """A publisher that crashed between the broker's confirm and marking the run: the
    message reaches a worker anyway, so the run is published, not stuck in the outbox."""
    job = await add_job(pool, queue, "noop")
    run_id = await pool.fetchval(
        "INSERT INTO runs (job_id, scheduled_for, trigger) VALUES ($1, now(), 'manual') RETURNING id",
        job)
    row = await pool.fetchrow(
        """SELECT r.id AS run_id, r.job_id, j.name AS job, j.handler, j.payload, j.queue,
                  r.schedule_id, r.scheduled_for, r.attempt, j.timeout_seconds
           FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = $1""", run_id)
    publisher = Publisher(amqp_url, delivery_limit=5)
    try:
        assert await publisher.publish_many([Outgoing(run_id, queue, encode_run(row))]) == [None]
    finally:
        await publisher.close()
    processes(["worker"], worker_env(db_url, amqp_url, queue))
    done = await wait_final(pool, run_id)
    assert done["status"] == "succeeded"
    assert done["published_at"] is not None and done["published_at"] <= done["started_at"]


async def test_a_claim_starts_the_takeover_count_afresh(pool, db_url, amqp_url, queue,
                                                        processes):
    """Takeovers are counted per message: a run queued again for a fresh message (after
    waiting in dying workers) must not carry its old count to the next delivery limit."""
    job = await add_job(pool, queue, "noop")
    [run_id] = await trigger(pool, amqp_url, job)
    await pool.execute("UPDATE runs SET takeovers = 2 WHERE id = $1", run_id)
    processes(["worker"], worker_env(db_url, amqp_url, queue))
    done = await wait_final(pool, run_id)
    assert done["status"] == "succeeded" and done["takeovers"] == 0


def scheduler_env(db_url: str, amqp_url: str, **extra: object) -> dict[str, str]:
    return service_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=0.5, **extra)


async def test_a_schedule_every_second_yields_succeeded_runs(pool, db_url, amqp_url, queue,
                                                             processes):
    job = await add_job(pool, queue, "noop")
    await pool.execute(
        """INSERT INTO schedules (job_id, kind, interval_seconds, start_at)
           VALUES ($1, 'interval', 1, now())""", job)
    processes(["scheduler"], scheduler_env(db_url, amqp_url))
    processes(["worker"], worker_env(db_url, amqp_url, queue))
    await wait_for(lambda: pool.fetchval(
        "SELECT count(*) >= 3 FROM runs WHERE status = 'succeeded'"), 30,
        what="three scheduled runs to succeed")
    rows = await pool.fetch("SELECT * FROM runs WHERE status = 'succeeded'")
    assert all(r["result"] == {"ok": True} and r["trigger"] == "schedule" for r in rows)
    assert len({r["scheduled_for"] for r in rows}) == len(rows)


async def test_sigkilled_worker_run_is_completed_by_another_exactly_once(
        pool, db_url, amqp_url, queue, processes):
    job = await add_job(pool, queue, "sleep", {"seconds": 2}, max_attempts=3)
    first = processes(["worker"], worker_env(db_url, amqp_url, queue))
    [run_id] = await trigger(pool, amqp_url, job)
    await wait_for(lambda: pool.fetchval("SELECT status = 'running' FROM runs WHERE id = $1",
                                         run_id), 20, what="the run to start")
    first.kill()
    # The scheduler's reaper rescues the run by heartbeat age; its relay republishes it.
    processes(["scheduler"], scheduler_env(db_url, amqp_url, RUN_LEASE_SECONDS=2))
    second = processes(["worker"], worker_env(db_url, amqp_url, queue, LOG_LEVEL="DEBUG"))
    row = await wait_final(pool, run_id, timeout=40)
    assert row["status"] == "succeeded"
    assert row["attempt"] == 2
    assert row["worker_id"].endswith(f":{second.pid}")
    assert await pool.fetchval("SELECT count(*) FROM runs") == 1
    claimed = [e for e in events(second, "run.claimed") if e["run_id"] == run_id]
    assert [e["attempt"] for e in claimed] == [2]
    assert second.stop() == 0


async def test_timeout_ends_the_run_timed_out(pool, db_url, amqp_url, queue, processes):
    job = await add_job(pool, queue, "sleep", {"seconds": 30}, timeout_seconds=1, max_attempts=3)
    processes(["worker"], worker_env(db_url, amqp_url, queue))
    [run_id] = await trigger(pool, amqp_url, job)
    row = await wait_final(pool, run_id)
    assert row["status"] == "timed_out"
    assert row["attempt"] == 1
    assert "timed out after 1s" in row["error"]


async def test_failure_is_retried_with_backoff_then_succeeds(pool, db_url, amqp_url, queue,
                                                             processes):
    job = await add_job(pool, queue, "python", {"function": "flaky",
                                                "kwargs": {"succeed_on_attempt": 2}},
                        max_attempts=3, retry_backoff_seconds=2.0)
    env = worker_env(db_url, amqp_url, queue, WORKER_IMPORTS="tests.e2e.test_worker_jobs")
    processes(["worker"], env)
    [run_id] = await trigger(pool, amqp_url, job)
    waiting = await wait_for(lambda: pool.fetchrow(
        "SELECT * FROM runs WHERE id = $1 AND status = 'queued' AND attempt = 2", run_id),
        20, what="the first attempt to fail")
    backoff = (waiting["available_at"] - waiting["updated_at"]).total_seconds()
    assert 1.5 <= backoff <= 2.5
    assert "attempt 1 fails on purpose" in waiting["error"]
    assert waiting["published_at"] is None and waiting["worker_id"] is None
    processes(["scheduler"], scheduler_env(db_url, amqp_url))  # its relay publishes the retry
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded"
    assert row["attempt"] == 2
    assert row["result"] == {"attempt": 2}


async def test_out_of_attempts_fails_with_error_and_traceback(pool, db_url, amqp_url, queue,
                                                              processes):
    job = await add_job(pool, queue, "python", {"function": "always_fails"},
                        max_attempts=2, retry_backoff_seconds=0.2)
    env = worker_env(db_url, amqp_url, queue, WORKER_IMPORTS="tests.e2e.test_worker_jobs")
    processes(["worker"], env)
    processes(["scheduler"], scheduler_env(db_url, amqp_url))
    [run_id] = await trigger(pool, amqp_url, job)
    row = await wait_final(pool, run_id)
    assert row["status"] == "failed"
    assert row["attempt"] == 2
    assert row["error"] == "ValueError: this job always fails"
    assert "Traceback" in row["output"] and "always_fails" in row["output"]


async def dead_letters(amqp_url: str, message_ids: set[str], timeout: float = 20) -> set[str]:
    """Wait until the given message ids are in sundial.dead; returns those found."""
    found: set[str] = set()
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        dead = await channel.get_queue(DEAD_LETTER_QUEUE)

        async def seen() -> bool:
            while (message := await dead.get(fail=False)) is not None:
                if message.message_id in message_ids:
                    found.add(message.message_id)
                    await message.ack()
                else:
                    await message.nack(requeue=True)
                    break
            return found >= message_ids
        await wait_for(seen, timeout, interval=0.2, what=f"{message_ids} in {DEAD_LETTER_QUEUE}")
    return found


async def test_poison_messages_go_to_the_dead_letter_queue(pool, db_url, amqp_url, queue,
                                                          processes):
    worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
    job = await add_job(pool, queue, "noop")
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        exchange = await declare_topology(channel, [queue], delivery_limit=5)
        for message_id, body in ((f"garbage-{queue}", b"\x00not json"),
                                 (f"unknown-{queue}", json.dumps({
                                     "version": 1, "run_id": 987654321, "job_id": job, "job": "x",
                                     "handler": "noop", "payload": {}, "schedule_id": None,
                                     "scheduled_for": "2024-01-01T00:00:00Z", "attempt": 1,
                                     "timeout_seconds": 5}).encode())):
            await exchange.publish(aio_pika.Message(body, message_id=message_id), routing_key=queue)
    await dead_letters(amqp_url, {f"garbage-{queue}", f"unknown-{queue}"})
    reasons = {e["reason"] for e in events(worker, "message.rejected")}
    assert reasons == {"undecodable", "unknown run"}
    # The worker keeps going.
    [run_id] = await trigger(pool, amqp_url, job)
    assert (await wait_final(pool, run_id))["status"] == "succeeded"


async def test_cancel_requested_running_run_ends_cancelled(pool, db_url, amqp_url, queue,
                                                           processes):
    job = await add_job(pool, queue, "sleep", {"seconds": 60})
    processes(["worker"], worker_env(db_url, amqp_url, queue))
    [run_id] = await trigger(pool, amqp_url, job)
    await wait_for(lambda: pool.fetchval("SELECT status = 'running' FROM runs WHERE id = $1",
                                         run_id), 20, what="the run to start")
    await pool.execute("UPDATE runs SET cancel_requested = true WHERE id = $1", run_id)
    row = await wait_final(pool, run_id, timeout=10)
    assert row["status"] == "cancelled"


async def test_cancel_requested_queued_run_never_starts(pool, db_url, amqp_url, queue, processes):
    job = await add_job(pool, queue, "noop")
    [run_id] = await pool.fetch(
        """INSERT INTO runs (job_id, scheduled_for, trigger, cancel_requested)
           VALUES ($1, now(), 'manual', true) RETURNING id""", job)
    run_id = run_id["id"]
    await publish(pool, amqp_url, [run_id])
    processes(["worker"], worker_env(db_url, amqp_url, queue))
    row = await wait_final(pool, run_id)
    assert row["status"] == "cancelled" and row["started_at"] is None


async def test_forbid_policy_skips_a_run_while_another_runs(pool, db_url, amqp_url, queue,
                                                            processes):
    job = await add_job(pool, queue, "sleep", {"seconds": 3}, concurrency_policy="forbid")
    processes(["worker"], worker_env(db_url, amqp_url, queue))
    [first] = await trigger(pool, amqp_url, job)
    await wait_for(lambda: pool.fetchval("SELECT status = 'running' FROM runs WHERE id = $1",
                                         first), 20, what="the first run to start")
    [second] = await trigger(pool, amqp_url, job)
    skipped = await wait_final(pool, second)
    assert skipped["status"] == "skipped"
    assert f"run {first}" in skipped["error"]
    assert (await wait_final(pool, first))["status"] == "succeeded"


async def test_sigterm_requeues_runs_still_running_after_the_grace(pool, db_url, amqp_url, queue,
                                                                   processes):
    job = await add_job(pool, queue, "sleep", {"seconds": 60})
    worker = processes(["worker"], worker_env(db_url, amqp_url, queue, WORKER_SHUTDOWN_GRACE=1))
    [run_id] = await trigger(pool, amqp_url, job)
    await wait_for(lambda: pool.fetchval("SELECT status = 'running' FROM runs WHERE id = $1",
                                         run_id), 20, what="the run to start")
    worker.signal(signal.SIGTERM)
    assert worker.proc.wait(20) == 0
    row = await run_row(pool, run_id)
    assert row["status"] == "queued" and row["attempt"] == 1
    assert row["published_at"] is None and row["worker_id"] is None
    assert await pool.fetchval("SELECT status FROM workers") == "offline"



async def test_replace_policy_cancels_the_running_run(pool, db_url, amqp_url, queue, processes):
    job = await add_job(pool, queue, "sleep", {"seconds": 3}, concurrency_policy="replace")
    processes(["worker"], worker_env(db_url, amqp_url, queue))
    [first] = await trigger(pool, amqp_url, job)
    await wait_for(lambda: pool.fetchval("SELECT status = 'running' FROM runs WHERE id = $1",
                                         first), 20, what="the first run to start")
    [second] = await trigger(pool, amqp_url, job)
    assert (await wait_final(pool, first))["status"] == "cancelled"
    assert (await wait_final(pool, second))["status"] == "succeeded"
