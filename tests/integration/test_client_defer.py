"""sundial.client.defer against the real PostgreSQL: the run is written in the caller's
transaction, on asyncpg and on psycopg 3 (sync and async) connections of the caller's
own (no Sundial codec), with the API trigger's checks and semantics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import psycopg
import pytest
from cryptography.fernet import Fernet

from sundial.api.schemas import JobCreate
from sundial.api.service import Service
from sundial.api.settings import ApiSettings
from sundial.client import defer, defer_sync
from sundial.core.db import connect
from sundial.core.errors import InvalidInput, NotFound
from sundial.core.outbox import WAKEUP_CHANNEL
from sundial.core.secrets import decrypt_fields

# asyncpg-codec: a connection that decodes jsonb as Sundial's own pool does.
KINDS = ("asyncpg", "asyncpg-codec", "psycopg", "psycopg-async")


class Transaction:
    """A transaction open on a connection of the caller's own, of one kind."""

    def __init__(self, kind: str, conn: Any):
        self.kind, self.conn = kind, conn

    @classmethod
    async def open(cls, kind: str, db_url: str) -> Transaction:
        if kind.startswith("asyncpg"):
            conn = await (asyncpg.connect(db_url) if kind == "asyncpg" else connect(db_url))
            tx = cls(kind, conn)
            tx.tx = conn.transaction()
            await tx.tx.start()
            return tx
        if kind == "psycopg":
            return cls(kind, await asyncio.to_thread(psycopg.connect, db_url))
        return cls(kind, await psycopg.AsyncConnection.connect(db_url))

    async def defer(self, *args: Any, **kwargs: Any) -> Any:
        if self.kind == "psycopg":
            return await asyncio.to_thread(defer_sync, self.conn, *args, **kwargs)
        return await defer(self.conn, *args, **kwargs)

    async def setting(self, name: str) -> str:
        """A setting as the caller's transaction has it now."""
        sql = f"SELECT current_setting('{name}')"
        if self.kind.startswith("asyncpg"):
            return await self.conn.fetchval(sql)
        if self.kind == "psycopg":
            return await asyncio.to_thread(lambda: self.conn.execute(sql).fetchone()[0])
        return (await (await self.conn.execute(sql)).fetchone())[0]

    async def end(self, commit: bool) -> None:
        if self.kind.startswith("asyncpg"):
            await (self.tx.commit() if commit else self.tx.rollback())
            await self.conn.close()
        elif self.kind == "psycopg":
            await asyncio.to_thread(self.conn.commit if commit else self.conn.rollback)
            await asyncio.to_thread(self.conn.close)
        else:
            await (self.conn.commit() if commit else self.conn.rollback())
            await self.conn.close()


@pytest.fixture
async def job(pool: asyncpg.Pool, db_url: str, amqp_url: str) -> AsyncIterator[dict[str, Any]]:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    yield await svc.create_job("test", JobCreate(
        name="report", handler="python", payload={"kwargs": {"day": "stored", "lang": "en"}}))


async def _runs(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(
        "SELECT id, job_id, trigger, triggered_by, status, payload, priority, "
        "published_at FROM runs ORDER BY id")]


async def _audit(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(
        "SELECT actor, action, target_id, details FROM audit_log WHERE target_type = 'run'")]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_committed_defer_leaves_one_run_with_its_arguments_and_audit_row(
        kind: str, job: dict[str, Any], pool: asyncpg.Pool, db_url: str) -> None:
    tx = await Transaction.open(kind, db_url)
    run = await tx.defer("report", {"kwargs": {"day": "2024-03-01"}}, priority=7,
                         idempotency_key="order-1")
    assert run.status == "queued" and not run.replayed
    assert await _runs(pool) == [], "nothing is visible before the caller commits"
    await tx.end(commit=True)

    [row] = await _runs(pool)
    assert row["id"] == run.id and row["job_id"] == job["id"]
    assert (row["trigger"], row["triggered_by"], row["status"]) == ("manual", "client", "queued")
    assert row["payload"] == {"kwargs": {"day": "2024-03-01"}}, "merged over the job's top level"
    assert row["priority"] == 7 and row["published_at"] is None, "left for the relay"
    assert await _audit(pool) == [{"actor": "client", "action": "job.defer",
                                   "target_id": str(run.id),
                                   "details": {"idempotency_key": "order-1", "mode": "merge",
                                               "job": "report"}}]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_defer_without_arguments_finds_the_job_and_leaves_the_callers_durability(
        kind: str, job: dict[str, Any], pool: asyncpg.Pool, db_url: str) -> None:
    """Without arguments the insert finds the job itself (by name or id); it commits with
    the caller's transaction, as durably as the caller's settings say."""
    tx = await Transaction.open(kind, db_url)
    by_name = await tx.defer("report")
    by_id = await tx.defer(job["id"])
    assert await tx.setting("synchronous_commit") == "on"
    await tx.end(commit=True)
    assert [(r["id"], r["job_id"]) for r in await _runs(pool)] == [(by_name.id, job["id"]),
                                                                  (by_id.id, job["id"])]
    tx = await Transaction.open(kind, db_url)
    with pytest.raises(NotFound, match="no job 'nope'"):
        await tx.defer("nope")
    await tx.end(commit=False)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_rolled_back_defer_leaves_nothing(
        kind: str, job: dict[str, Any], pool: asyncpg.Pool, db_url: str) -> None:
    tx = await Transaction.open(kind, db_url)
    await tx.defer(job["id"], {"kwargs": {"day": "2024-03-01"}}, mode="replace")
    await tx.end(commit=False)
    assert await _runs(pool) == []
    assert await _audit(pool) == []


@pytest.mark.parametrize("kind", KINDS)
async def test_a_repeated_idempotency_key_returns_the_first_run(
        kind: str, job: dict[str, Any], pool: asyncpg.Pool, db_url: str) -> None:
    first_tx = await Transaction.open(kind, db_url)
    first = await first_tx.defer("report", idempotency_key="k")
    await first_tx.end(commit=True)
    again_tx = await Transaction.open(kind, db_url)
    again = await again_tx.defer("report", {"kwargs": {}}, idempotency_key="k")
    await again_tx.end(commit=True)
    assert (again.id, again.replayed) == (first.id, True)
    assert len(await _runs(pool)) == 1


async def test_the_same_key_as_an_api_trigger_returns_the_apis_run(
        job: dict[str, Any], pool: asyncpg.Pool, db_url: str, amqp_url: str) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    from sundial.api.schemas import TriggerBody

    made, _ = await svc.trigger_job("test", "report", TriggerBody(idempotency_key="shared"))
    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction():
            run = await defer(conn, "report", idempotency_key="shared")
    finally:
        await conn.close()
    assert (run.id, run.replayed) == (made["run_id"], True)


@pytest.mark.parametrize("kind", KINDS)
async def test_bad_arguments_are_refused_naming_the_field(
        kind: str, pool: asyncpg.Pool, db_url: str, amqp_url: str) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    await svc.create_job("test", JobCreate(name="nap", handler="sleep", payload={"seconds": 1}))
    tx = await Transaction.open(kind, db_url)
    try:
        with pytest.raises(InvalidInput) as bad:
            await tx.defer("nap", {"seconds": -1})
        assert (bad.value.field, bad.value.value) == ("payload.seconds", -1)
        with pytest.raises(InvalidInput) as bad:
            await tx.defer("nap", priority=10)
        assert bad.value.field == "priority" and "9" in bad.value.reason
        with pytest.raises(InvalidInput) as bad:
            await tx.defer("nap", mode="replace")
        assert bad.value.field == "mode" and "payload" in bad.value.reason
        with pytest.raises(NotFound, match="no job 'nope'"):
            await tx.defer("nope")
    finally:
        await tx.end(commit=True)
    assert await _runs(pool) == []


@pytest.mark.parametrize("kind", KINDS)
async def test_secret_fields_need_an_encryption_key_and_are_stored_encrypted(
        kind: str, job: dict[str, Any], pool: asyncpg.Pool, db_url: str) -> None:
    tx = await Transaction.open(kind, db_url)
    try:
        with pytest.raises(InvalidInput, match="no encryption_key was given to defer"):
            await tx.defer("report", {"secrets": {"token": "s3cret"}})
    finally:
        await tx.end(commit=False)

    key = Fernet.generate_key().decode()
    tx = await Transaction.open(kind, db_url)
    await tx.defer("report", {"secrets": {"token": "s3cret"}}, encryption_key=key)
    await tx.end(commit=True)
    row = await pool.fetchrow("SELECT payload, secret_payload FROM runs")
    assert row["payload"]["secrets"] == {"token": "***"}
    assert decrypt_fields(key, row["secret_payload"]) == {"secrets": {"token": "s3cret"}}


@pytest.mark.parametrize("kind", KINDS)
async def test_the_commit_wakes_the_schedulers_and_a_rollback_does_not(
        kind: str, job: dict[str, Any], db_url: str) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(db_url)
    await listener.add_listener(WAKEUP_CHANNEL, lambda *args: heard.put_nowait(args[-1]))
    try:
        for commit in (False, True):
            tx = await Transaction.open(kind, db_url)
            await tx.defer("report")
            await tx.end(commit=commit)
        # Notifications arrive in commit order: the committed defer's is the first.
        assert await asyncio.wait_for(heard.get(), 30) == "manual"
        assert heard.empty()
    finally:
        await listener.close()
