"""Runs with arguments, idempotency keys, backfill and priority through real `sundial
api`, `sundial scheduler` and `sundial worker` processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sundial.api.service import Service
from sundial.api.settings import ApiSettings
from tests.conftest import service_env, start_api, wait_for
from tests.e2e.test_api import Client


@pytest.fixture
async def stack(processes, pool, db_url: str, amqp_url: str, tmp_path) -> AsyncIterator[Client]:
    """api + scheduler, and an admin key named `e2e`; each test starts its worker."""
    _, key = await Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url)
                           ).create_key("test", "e2e", "admin")
    processes(["scheduler"], service_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=1,
                                         HEALTH_DIR=tmp_path))
    client = Client(await start_api(processes, db_url, amqp_url, HEALTH_DIR=tmp_path), key)
    yield client
    await client.http.aclose()


def start_worker(processes, db_url: str, amqp_url: str, queue: str, tmp_path, **extra: Any):
    return processes(["worker"], service_env(
        db_url, amqp_url, WORKER_QUEUES=queue, WORKER_IMPORTS="tests.e2e.test_worker_jobs",
        WORKER_HEARTBEAT_INTERVAL=0.5, HEALTH_DIR=tmp_path, **extra))


async def _finished(stack: Client, job: str, n: int) -> list[dict[str, Any]]:
    async def done() -> list[dict[str, Any]]:
        runs = await stack.runs(job=job, limit=100)
        return runs if len(runs) == n and all(r["finished_at"] for r in runs) else []

    return await wait_for(done, timeout=60, what=f"{n} runs of {job} to finish")


async def test_a_triggered_run_executes_its_payload_once_per_key(
        stack: Client, processes, db_url: str, amqp_url: str, queue: str, tmp_path) -> None:
    start_worker(processes, db_url, amqp_url, queue, tmp_path)
    await stack.call("POST", "/api/jobs", 201, json={
        "name": "whoami", "handler": "python", "queue": queue,
        "payload": {"kwargs": {"echo": {"day": "stored"}}}})
    body = {"payload": {"kwargs": {"echo": {"day": "2024-03-01"}}}, "idempotency_key": "k"}
    first = await stack.call("POST", "/api/jobs/whoami/trigger", 202, json=body)
    again = await stack.call("POST", "/api/jobs/whoami/trigger", 200, json=body)
    assert again["run_id"] == first["run_id"] and again["replayed"] is True
    plain = await stack.call("POST", "/api/jobs/whoami/trigger", 202)

    runs = {r["id"]: r for r in await _finished(stack, "whoami", 2)}
    assert {r["status"] for r in runs.values()} == {"succeeded"}
    assert (await stack.run(first["run_id"]))["result"]["echo"] == {"day": "2024-03-01"}
    assert (await stack.run(plain["run_id"]))["result"]["echo"] == {"day": "stored"}


async def test_a_backfill_of_ten_slots_makes_ten_runs_and_a_second_none(
        stack: Client, processes, db_url: str, amqp_url: str, queue: str, tmp_path) -> None:
    start_worker(processes, db_url, amqp_url, queue, tmp_path)
    job = await stack.call("POST", "/api/jobs", 201, json={
        "name": "hourly", "handler": "noop", "queue": queue,
        "schedules": [{"kind": "cron", "cron": "0 * * * *"}]})
    sid = job["schedules"][0]["id"]
    body = {"from": "2024-03-01T00:00:00Z", "to": "2024-03-01T09:30:00Z"}
    done = await stack.call("POST", f"/api/schedules/{sid}/backfill", 200, json=body)
    assert (done["slots"], done["created"]) == (10, 10)
    runs = await _finished(stack, "hourly", 10)
    assert {r["status"] for r in runs} == {"succeeded"}
    assert {r["trigger"] for r in runs} == {"backfill"}
    again = await stack.call("POST", f"/api/schedules/{sid}/backfill", 200, json=body)
    assert (again["created"], again["existing"]) == (0, 10)
    assert len(await stack.runs(job="hourly", limit=100)) == 10


async def test_a_high_priority_run_queued_behind_low_ones_runs_first(
        stack: Client, processes, db_url: str, amqp_url: str, queue: str, tmp_path) -> None:
    for name, priority in (("low", 0), ("high", 9)):
        await stack.call("POST", "/api/jobs", 201, json={
            "name": name, "handler": "noop", "queue": queue, "priority": priority})
    low = [(await stack.call("POST", "/api/jobs/low/trigger", 202))["run_id"]
           for _ in range(10)]
    high = (await stack.call("POST", "/api/jobs/high/trigger", 202))["run_id"]

    async def all_published() -> bool:
        runs = await stack.runs(limit=100)
        return len(runs) == 11 and all(r["published_at"] for r in runs)

    await wait_for(all_published, what="every run on the broker, high last")
    start_worker(processes, db_url, amqp_url, queue, tmp_path, WORKER_CONCURRENCY=1)
    await _finished(stack, "low", 10)
    await _finished(stack, "high", 1)
    started = {r["id"]: r["started_at"] for r in await stack.runs(limit=100)}
    assert started[high] < min(started[r] for r in low), started
    assert all(r["status"] == "succeeded" for r in await stack.runs(limit=100))
