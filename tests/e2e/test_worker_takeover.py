"""A run taken over from a dead worker executes alone in its new worker, and that isolates
only the taken-over run: runs that may not start beside it stay `queued` (never
`running` while they wait) and start on another worker meanwhile.

The dead worker is staged with SQL and the broker: the run is `running` under a worker id
that no longer heartbeats, and its message has been given back once (redelivered), as
when that worker's channel closed. A real `sundial worker` then holds the message until
the lease runs out and takes the attempt over.
"""

from __future__ import annotations

import asyncio

import aio_pika
import asyncpg

from sundial.core.broker import declare_topology, queue_name
from tests.conftest import wait_for
from tests.e2e.test_worker import (
    add_job,
    events,
    publish,
    run_row,
    scheduler_env,
    trigger,
    wait_final,
    worker_env,
)

# The worker's lease; the dead worker's last heartbeat is older than that.
LEASE_S = 3


async def abandoned_run(pool: asyncpg.Pool, amqp_url: str, queue: str, seconds: float) -> int:
    """A sleep run left `running` by a dead worker, its message redelivered once."""
    job = await add_job(pool, queue, "sleep", {"seconds": seconds}, timeout_seconds=120)
    run_id = await pool.fetchval("INSERT INTO runs (job_id, scheduled_for, trigger) "
                                 "VALUES ($1, now(), 'manual') RETURNING id", job)
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        await declare_topology(channel, [queue], delivery_limit=5)
        await publish(pool, amqp_url, [run_id])
        await pool.execute(
            """UPDATE runs SET status = 'running', worker_id = 'worker@gone:1',
                               started_at = now() - interval '10 s',
                               heartbeat_at = now() - interval '10 s'
               WHERE id = $1""", run_id)
        message = await (await channel.get_queue(queue_name(queue))).get(timeout=5)
        await message.nack(requeue=True)   # the dead worker's channel closed
    return run_id


async def taken_over(pool: asyncpg.Pool, run_id: int, worker: object) -> asyncpg.Record:
    async def check() -> asyncpg.Record | None:
        row = await run_row(pool, run_id)
        return row if row["takeovers"] == 1 and row["worker_id"].endswith(
            f":{worker.pid}") else None
    return await wait_for(check, 20, what=f"run {run_id} to be taken over")


def takeover_env(db_url: str, amqp_url: str, queue: str, **extra: object) -> dict[str, str]:
    return worker_env(db_url, amqp_url, queue, RUN_LEASE_SECONDS=LEASE_S, **extra)


def relay(processes, db_url: str, amqp_url: str) -> None:
    """A scheduler publishes the runs handed back to the outbox; its reaper's lease is
    long, so that the worker holding the message is the one that takes the run over."""
    processes(["scheduler"], scheduler_env(db_url, amqp_url, RUN_LEASE_SECONDS=3600))


async def test_a_run_that_may_not_start_beside_a_taken_over_run_waits_queued(
        pool, db_url, amqp_url, queue, processes):
    """Its `running` time is its execution: it shows `running` only once it runs, and its
    timeout covers that, not the wait."""
    suspect = await abandoned_run(pool, amqp_url, queue, seconds=4)
    relay(processes, db_url, amqp_url)
    worker = processes(["worker"], takeover_env(db_url, amqp_url, queue))
    await taken_over(pool, suspect, worker)
    job = await add_job(pool, queue, "sleep", {"seconds": 1}, timeout_seconds=2, max_attempts=1)
    [waiting] = await trigger(pool, amqp_url, job)
    seen: set[str] = set()
    while (await run_row(pool, suspect))["status"] == "running":
        seen.add((await run_row(pool, waiting))["status"])
        await asyncio.sleep(0.05)
    assert "running" not in seen, "a run waited as 'running' behind the taken-over run"
    done = await wait_final(pool, suspect)
    assert done["status"] == "succeeded"
    row = await wait_final(pool, waiting, timeout=40)
    assert row["status"] == "succeeded", row["error"]
    assert row["started_at"] >= done["finished_at"], "it executed beside the taken-over run"
    assert (row["finished_at"] - row["started_at"]).total_seconds() < 2
    assert events(worker, "run.handed_back")


async def test_runs_start_on_another_worker_while_a_long_taken_over_run_executes(
        pool, db_url, amqp_url, queue, processes):
    """The taken-over run isolates only itself: a forbid job's run that reached its worker
    meanwhile neither waits there as `running` nor makes the job's next run `skipped`;
    both start on another worker while it executes, and none beside it."""
    suspect = await abandoned_run(pool, amqp_url, queue, seconds=60)
    relay(processes, db_url, amqp_url)
    isolating = processes(["worker"], takeover_env(db_url, amqp_url, queue,
                                                   WORKER_CONCURRENCY=2))
    await taken_over(pool, suspect, isolating)
    job = await add_job(pool, queue, "noop", concurrency_policy="forbid")
    [first] = await trigger(pool, amqp_url, job)   # only the isolating worker consumes yet
    await wait_for(lambda: pool.fetchval(
        "SELECT status = 'running' OR republished > 0 FROM runs WHERE id = $1", first),
        20, what="the first run to reach the isolating worker")
    other = processes(["worker"], takeover_env(db_url, amqp_url, queue, WORKER_CONCURRENCY=1))
    await wait_for(lambda: events(other, "worker.consuming"), 20, what="the other worker")
    [second] = await trigger(pool, amqp_url, job)
    for run_id in (second, first):   # the second first: it would be skipped
        row = await wait_final(pool, run_id, timeout=30)
        assert row["status"] == "succeeded", (run_id, row["status"], row["error"])
        assert row["worker_id"].endswith(f":{other.pid}")
    still = await run_row(pool, suspect)
    assert still["status"] == "running" and still["worker_id"].endswith(f":{isolating.pid}")
