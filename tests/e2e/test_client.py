"""sundial.client through real processes: `defer` in the caller's transaction, relayed by a
real `sundial scheduler` and run by a real `sundial worker`; Client and AsyncClient against
a real `sundial api`; examples/client_defer.py run as docs/client.md says."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import psycopg
import pytest

from sundial.api.schemas import JobCreate
from sundial.api.service import Service
from sundial.api.settings import ApiSettings
from sundial.client import ApiError, AsyncClient, Client, defer, defer_sync
from sundial.core.broker import queue_name
from tests.conftest import ROOT, service_env, start_api, wait_for
from tests.e2e.test_run_arguments import start_worker

ECHO = {"function": "whoami", "kwargs": {"echo": {"day": "stored"}}}


@pytest.fixture
async def api(processes, pool, db_url: str, amqp_url: str, tmp_path
              ) -> AsyncIterator[tuple[str, str]]:
    """A real `sundial api` and scheduler; (base URL, admin key)."""
    _, key = await Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url)
                           ).create_key("test", "e2e", "admin")
    processes(["scheduler"], service_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=1,
                                         HEALTH_DIR=tmp_path))
    yield await start_api(processes, db_url, amqp_url, HEALTH_DIR=tmp_path), key


async def test_the_http_clients_trigger_wait_and_carry_the_apis_refusals(
        api: tuple[str, str], processes, db_url: str, amqp_url: str, queue: str,
        tmp_path) -> None:
    base, key = api
    start_worker(processes, db_url, amqp_url, queue, tmp_path)
    async with AsyncClient(base, key) as sundial:
        await sundial.http.post("/api/jobs", json={
            "name": "whoami", "handler": "python", "queue": queue, "payload": ECHO})
        run = await sundial.trigger("whoami", {"kwargs": {"echo": {"day": "async"}}},
                                    idempotency_key="k", priority=5)
        again = await sundial.trigger("whoami", {"kwargs": {}}, idempotency_key="k")
        assert (again.id, again.replayed, run.replayed) == (run.id, True, False)
        done = await sundial.wait(run.id, timeout=60)
        assert done.status == "succeeded" and done["result"]["echo"] == {"day": "async"}

        with pytest.raises(ApiError) as bad:
            await sundial.trigger("whoami", priority=10)
        assert (bad.value.status, bad.value.field, bad.value.value) == (422, "priority", 10)
        assert "priority 10:" in str(bad.value)
        with pytest.raises(ApiError, match="404: no job 'nope'"):
            await sundial.trigger("nope")

    def sync_client() -> Any:
        with Client(base, key) as sundial:
            run = sundial.trigger("whoami", {"kwargs": {"echo": {"day": "sync"}}},
                                  mode="replace")
            with pytest.raises(ApiError) as bad:
                sundial.trigger("whoami", {"seconds": 1}, mode="sideways")
            assert bad.value.field == "mode"
            return sundial.wait(run.id, timeout=60)

    done = await asyncio.to_thread(sync_client)
    assert done.status == "succeeded" and done["result"]["echo"] == {"day": "sync"}
    assert done["payload"] == {"kwargs": {"echo": {"day": "sync"}}}


async def _queued_messages(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue_name(queue), passive=True)
        return declared.declaration_result.message_count


@pytest.mark.parametrize("kind", ["asyncpg", "psycopg"])
async def test_a_deferred_run_is_relayed_after_commit_and_a_rolled_back_one_never(
        kind: str, processes, pool, db_url: str, amqp_url: str, queue: str, tmp_path) -> None:
    await Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url)).create_job(
        "test", JobCreate(name="whoami", handler="python", queue=queue, payload=ECHO))
    processes(["scheduler"], service_env(db_url, amqp_url, HEALTH_DIR=tmp_path))

    async def in_transaction(payload: dict[str, Any], commit: bool) -> Any:
        if kind == "asyncpg":
            conn = await asyncpg.connect(db_url)
            try:
                tx = conn.transaction()
                await tx.start()
                run = await defer(conn, "whoami", payload, idempotency_key="order-1")
                await (tx.commit() if commit else tx.rollback())
                return run
            finally:
                await conn.close()

        def sync() -> Any:
            with psycopg.connect(db_url) as conn:
                run = defer_sync(conn, "whoami", payload, idempotency_key="order-1")
                conn.commit() if commit else conn.rollback()
                return run
        return await asyncio.to_thread(sync)

    await in_transaction({"kwargs": {"echo": {"day": "rolled back"}}}, commit=False)
    run = await in_transaction({"kwargs": {"echo": {"day": "committed"}}}, commit=True)
    again = await in_transaction({"kwargs": {"echo": {"day": "again"}}}, commit=True)
    assert (again.id, again.replayed) == (run.id, True)

    await wait_for(lambda: pool.fetchval("SELECT published_at FROM runs WHERE id = $1", run.id),
                   30, what="the relay to publish the committed run")
    assert await _queued_messages(amqp_url, queue) == 1, "one message: the rolled-back run has none"
    start_worker(processes, db_url, amqp_url, queue, tmp_path)
    row = await wait_for(lambda: pool.fetchrow(
        "SELECT * FROM runs WHERE id = $1 AND finished_at IS NOT NULL", run.id), 60,
        what="the worker to run it")
    assert row["status"] == "succeeded" and row["result"]["echo"] == {"day": "committed"}
    assert await pool.fetchval("SELECT count(*) FROM runs") == 1


async def test_the_documented_example_runs(api: tuple[str, str], processes, pool,
                                           db_url: str, amqp_url: str, tmp_path) -> None:
    base, key = api
    env = service_env(db_url, amqp_url, WORKER_IMPORTS="reports", PYTHONPATH=ROOT / "examples",
                      SUNDIAL_API_URL=base, SUNDIAL_API_KEY=key, HEALTH_DIR=tmp_path)
    synced = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "sundial", "sync"], cwd=ROOT, env=env,
        timeout=60, capture_output=True, text=True)
    assert synced.returncode == 0, synced.stderr
    processes(["worker"], dict(env, WORKER_QUEUES="default"))
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "examples/client_defer.py"], cwd=ROOT, env=env,
        timeout=120, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rolled back: no order, no run" in done.stdout
    assert "succeeded" in done.stdout and "order 1 summary" in done.stdout, done.stdout
    runs = await pool.fetch("SELECT triggered_by, payload FROM runs WHERE trigger = 'manual'")
    assert [(r["triggered_by"], r["payload"]["kwargs"]) for r in runs] == [
        ("client", {"scope": "order 1"})]
