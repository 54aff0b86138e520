"""Scenarios 11 and 12. Every run ends: database errors that are not a lost connection, and messages that are
lost, under steady dispatch.

- The database goes read-only (as after a failover to a standby that is not promoted yet:
  `default_transaction_read_only` plus every backend terminated) and comes back.
  Workers wait out the errors with their messages in hand instead of returning them to
  the broker until the delivery limit dead-letters them.
- The run queue is purged while no worker consumes it. The scheduler's sweep gives every
  published run that never started a fresh message.

Both end with the checker's zero counts: no run stuck in queued or running, none lost,
none executed twice at one attempt.
"""

from __future__ import annotations

import asyncio

import aio_pika
import asyncpg
import pytest

from sundial.core.broker import queue_name
from tests.chaos.checker import check, violations
from tests.chaos.stack import (
    RUN_LEASE_S,
    freeze,
    manual_runs,
    scheduler_env,
    seeded,
    worker_env,
)
from tests.chaos.test_outages import flowing, steady, terminate_backends
from tests.conftest import wait_for


async def read_only(conn: asyncpg.Connection, on: bool) -> None:
    """New sessions of this database are read-only (or not); the others are ended so that
    every process reconnects into it. `conn` keeps its own session (and its writes)."""
    name = await conn.fetchval("SELECT current_database()")
    setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
    await conn.execute(f'ALTER DATABASE "{name}" {setting}')
    await terminate_backends(conn)


@pytest.mark.parametrize("down_s", [
    pytest.param(7, id="short"),
    pytest.param(10, id="long", marks=pytest.mark.slow),
])
async def test_database_read_only_for_a_while_every_run_still_ends_once(
        db_url, amqp_url, queue, processes, down_s):
    seed, _ = seeded()
    conn = await asyncpg.connect(db_url)
    try:
        job = await steady(conn, queue)
        scheduler = processes(["scheduler"], scheduler_env(db_url, amqp_url))
        worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
        await flowing(conn, await conn.fetchval("SELECT now()"), 30, "start")
        # Runs published while no worker consumes reach a worker that cannot claim them.
        assert worker.stop() == 0
        waiting = await manual_runs(conn, job, 20)
        await wait_for(lambda: conn.fetchval(
            "SELECT count(*) = 0 FROM runs WHERE id = ANY($1) AND published_at IS NULL",
            waiting), 30, what="the manual runs to be published")
        await read_only(conn, True)
        try:
            worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
            await asyncio.sleep(down_s)
        finally:
            await read_only(conn, False)
        await flowing(conn, await conn.fetchval("SELECT now()"), 30, "the database writable again")
        assert scheduler.alive() and worker.alive(), "recovered without a restart"
        await freeze(conn)
        # Longer than the lease, results could not be written and the reaper may rescue a
        # run once the database is back: it executes again at its next attempt, by design.
        counts = await check(conn, amqp_url, seed=seed, reruns=down_s > RUN_LEASE_S)
        dead = await conn.fetchval("SELECT count(*) FROM runs WHERE status = 'dead'")
        print(f"seed={seed} dead={dead}")
        assert dead == 0, "a run ended dead because the database was read-only"
        assert not violations(counts), f"seed={seed}: {violations(counts)}"
    finally:
        await conn.close()


@pytest.mark.parametrize("rounds", [
    pytest.param(1, id="short"),
    pytest.param(3, id="long", marks=pytest.mark.slow),
])
async def test_purged_queue_every_published_run_gets_a_fresh_message(
        db_url, amqp_url, queue, processes, rounds):
    seed, _ = seeded()
    conn = await asyncpg.connect(db_url)
    try:
        await steady(conn, queue)
        env = scheduler_env(db_url, amqp_url, RUN_REPUBLISH_AFTER_SECONDS=1)
        scheduler = processes(["scheduler"], env)
        worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
        await flowing(conn, await conn.fetchval("SELECT now()"), 30, "start")
        purged_total = 0
        async with await aio_pika.connect(amqp_url) as broker:
            channel = await broker.channel()
            runs_queue = await channel.get_queue(queue_name(queue))
            for n in range(rounds):
                assert worker.stop() == 0

                async def waiting() -> bool:
                    declared = await channel.declare_queue(queue_name(queue), passive=True)
                    return declared.declaration_result.message_count >= 10

                await wait_for(waiting, 30, what="messages waiting in the queue")
                purged = (await runs_queue.purge()).message_count
                assert purged >= 10, purged
                purged_total += purged
                worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
                await flowing(conn, await conn.fetchval("SELECT now()"), 30, f"purge {n + 1}")
        await freeze(conn)
        counts = await check(conn, amqp_url, seed=seed)
        assert scheduler.alive() and worker.alive()
        print(f"seed={seed} purged={purged_total}")
        assert not violations(counts), f"seed={seed}: {violations(counts)}"
    finally:
        await conn.close()
