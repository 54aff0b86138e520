"""Real `sundial worker` processes against the real PostgreSQL and RabbitMQ.

Runs are inserted with SQL and published with core.outbox.publish_runs, as the
scheduler's outbox does; one test drives them from a schedule with `sundial scheduler`.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import aio_pika
import asyncpg
import pytest

from core.broker import DEAD_LETTER_QUEUE, Publisher, declare_topology, queue_name
from core.outbox import publish_runs
from tests.conftest import service_env, wait_for

FINAL = ("succeeded", "failed", "timed_out", "cancelled", "skipped", "dead")


def worker_env(db_url: str, amqp_url: str, queue: str, **extra: object) -> dict[str, str]:
    return service_env(db_url, amqp_url, WORKER_QUEUES=queue, WORKER_HEARTBEAT_INTERVAL=0.5,
                       HEALTHCHECK_INTERVAL=1, WORKER_CONCURRENCY=4, **extra)


async def add_job(conn: asyncpg.Connection, queue: str, handler: str, payload: dict | None = None,
                  **columns: Any) -> int:
    names = ["name", "handler", "queue", "payload", *columns]
    values = [f"{handler}-{queue}-{len(columns)}-{id(payload)}", handler, queue, payload or {},
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
    found = []
    for line in process.output().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == name:
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
