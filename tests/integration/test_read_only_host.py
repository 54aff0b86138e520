"""A pooled connection that reaches a host that cannot write (SQLSTATE 25006, as after a
failover) takes its pool's connections out of service: the next acquire connects afresh.

The shared server stays writable; a session made read-only with
`SET SESSION default_transaction_read_only` (which the pool keeps: it never resets a
session) is what a connection to a read-only host looks like from the client.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from sundial.core.db import create_pool, is_transient


async def pids(pool: asyncpg.Pool, count: int) -> set[int]:
    """The backend pids of `count` connections held at once."""
    held = [await pool.acquire() for _ in range(count)]
    try:
        return {await conn.fetchval("SELECT pg_backend_pid()") for conn in held}
    finally:
        await asyncio.gather(*(pool.release(conn) for conn in held))


async def test_a_read_only_connection_and_its_siblings_are_replaced(db_url: str) -> None:
    pool = await create_pool(db_url, min_size=2, max_size=2, attempts=3)
    try:
        await pool.execute("CREATE TABLE marks (n int)")
        before = await pids(pool, 2)
        async with pool.acquire() as conn:
            await conn.execute("SET SESSION default_transaction_read_only = on")
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError) as caught:
                await conn.execute("INSERT INTO marks VALUES (1)")
        assert is_transient(caught.value), "waited out and tried again"
        after = await pids(pool, 2)
        assert not before & after, "both connections replaced, the read-only one and its sibling"
        assert await pool.execute("INSERT INTO marks VALUES (2)") == "INSERT 0 1"
    finally:
        await pool.close()


async def test_a_read_only_transaction_leaves_the_pool_at_the_failing_statement(
        db_url: str) -> None:
    pool = await create_pool(db_url, min_size=1, max_size=1, attempts=3)
    try:
        await pool.execute("CREATE TABLE marks (n int)")
        async with pool.acquire() as conn:
            await conn.execute("SET SESSION default_transaction_read_only = on")
            read_only_pid = await conn.fetchval("SELECT pg_backend_pid()")
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                async with conn.transaction():
                    await conn.fetchval("INSERT INTO marks VALUES (1) RETURNING n")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != read_only_pid
            async with conn.transaction():
                assert await conn.fetchval("INSERT INTO marks VALUES (2) RETURNING n") == 2
    finally:
        await pool.close()


async def test_the_scheduler_listens_again_once_its_pool_met_a_read_only_host(
        db_url: str, amqp_url: str) -> None:
    from sundial.scheduler.main import Scheduler
    from sundial.scheduler.settings import SchedulerSettings

    scheduler = Scheduler(SchedulerSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url),
                          name="read-only-listener")
    await scheduler.start()
    try:
        old = scheduler._listener
        assert old is not None
        await scheduler._ensure_listener()
        assert scheduler._listener is old, "kept while its host can write"

        async with scheduler._pool.acquire() as conn:
            await conn.execute("SET SESSION default_transaction_read_only = on")
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await conn.execute("UPDATE scheduler_instances SET ticks = ticks + 1")
        await scheduler._ensure_listener()
        assert old.is_closed(), "the listening connection to the old host is dropped"
        new = scheduler._listener
        assert new is not None and new is not old and not new.is_closed()
        await new.execute("NOTIFY sundial_wakeup_probe")  # it works
    finally:
        await scheduler.close()
