"""Scenario 14: a real PostgreSQL failover. A primary and a synchronous streaming standby
of their own (tests/chaos/pgpair.py); every process gets both hosts in DATABASE_URL with
`target_session_attrs=read-write`.

- Under load, the primary is stopped (immediate: a crash, no checkpoint) and, a few
  seconds later, the standby promoted. Two schedulers and a worker carry on against the
  new primary without a restart, and the checker counts zero.
- The old primary stays up but read-only while the standby is promoted: connections
  already open to it fail their next write (SQLSTATE 25006), and the pool replaces them
  with connections to the new primary.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from sundial.core.db import create_pool
from sundial.core.migrate import migrate
from tests.chaos.checker import check, violations
from tests.chaos.pgpair import PgPair, pg_pair
from tests.chaos.stack import (
    freeze,
    interval_schedules,
    manual_runs,
    probe_job,
    scheduler_env,
    seeded,
    worker_env,
)
from tests.chaos.test_outages import flowing
from tests.conftest import wait_for

DATABASE = "sundial"


async def migrated(pair: PgPair) -> str:
    """A migrated database on the pair; the URL of both hosts."""
    admin = await asyncpg.connect(pair.primary.url)
    try:
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    url = pair.url(DATABASE)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def port_of(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT inet_server_port()")


@pytest.mark.slow
@pytest.mark.parametrize("rounds", [pytest.param(1, id="long")])
async def test_postgresql_failover_under_load_loses_and_doubles_nothing(
        amqp_url, queue, processes, rounds):
    seed, rng = seeded()
    async with pg_pair() as pair:
        url = await migrated(pair)
        conn = await asyncpg.connect(url)
        job = await probe_job(conn, queue)
        await interval_schedules(conn, job, 20, every_s=1)
        schedulers = [processes(["scheduler"], scheduler_env(url, amqp_url)) for _ in range(2)]
        worker = processes(["worker"], worker_env(url, amqp_url, queue))
        await flowing(conn, await conn.fetchval("SELECT now()"), 30, "start")
        await asyncio.sleep(rng.uniform(1, 4))
        # A burst in flight when the primary goes: queued, being published, running.
        await manual_runs(conn, job, 100)
        await asyncio.sleep(rng.uniform(0, 0.5))
        await conn.close()
        await asyncio.to_thread(pair.primary.stop, "immediate")
        down_s = rng.uniform(2, 6)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(pair.promote)
        conn = await asyncpg.connect(url)
        try:
            assert await port_of(conn) == pair.standby.port, "the promoted standby took over"
            await flowing(conn, await conn.fetchval("SELECT now()"), 60, "the failover")
            await asyncio.sleep(3)  # steady dispatch on the new primary
            assert all(p.alive() for p in [*schedulers, worker]), "rode through, no restart"
            await freeze(conn)
            # Runs whose results could not be written while no primary was there are
            # rescued once it is: they execute again at a later attempt, by design.
            counts = await check(conn, amqp_url, seed=seed, reruns=True)
            again = await conn.fetchval("SELECT count(DISTINCT run_id) FROM probe_executions "
                                        "WHERE attempt > 1")
            print(f"seed={seed} down_s={down_s:.1f} runs executed again at a later "
                  f"attempt={again}")
            assert [p.stop() for p in [*schedulers, worker]] == [0, 0, 0], "SIGTERM: exit 0"
        finally:
            await conn.close()
    assert not violations(counts), f"seed={seed}: {violations(counts)}"


async def test_connections_to_an_old_primary_gone_read_only_move_to_the_new_one() -> None:
    async with pg_pair() as pair:
        url = await migrated(pair)
        pool = await create_pool(url, min_size=3, max_size=3, attempts=3)
        try:
            await pool.execute("CREATE TABLE marks (n int)")
            async with pool.acquire() as conn:
                assert await port_of(conn) == pair.primary.port
            old = await asyncpg.connect(pair.primary.url)
            try:
                await old.execute("ALTER SYSTEM SET default_transaction_read_only = on")
                await old.execute("SELECT pg_reload_conf()")
            finally:
                await old.close()
            await wait_for(lambda: pool.fetchval(
                "SELECT current_setting('default_transaction_read_only') = 'on'"),
                what="the old primary's sessions to turn read-only")
            await asyncio.to_thread(pair.promote)
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await pool.execute("INSERT INTO marks VALUES (0)")  # still the old primary
            await pool.execute("INSERT INTO marks VALUES (1)")  # the next connects afresh
            ports = set()
            held = [await pool.acquire() for _ in range(3)]
            for conn in held:
                ports.add(await port_of(conn))
            await asyncio.gather(*(pool.release(conn) for conn in held))
            assert ports == {pair.standby.port}, "every connection now on the new primary"
            assert await pool.fetchval("SELECT count(*) FROM marks") == 1
        finally:
            await pool.close()
