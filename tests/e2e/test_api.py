"""The API as a user drives it, with real `sundial api`, `sundial scheduler` and
`sundial worker` processes: jobs scheduled through the API run and succeed; a trigger
starts a run at once; cancel and retry do what they say."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from sundial.api.service import Service
from sundial.api.settings import ApiSettings
from tests.conftest import service_env, start_api, wait_for


class Client:
    def __init__(self, base: str, key: str):
        self.http = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"},
                                      timeout=15)

    async def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, **kwargs)
        assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response.json()

    async def runs(self, **params: Any) -> list[dict[str, Any]]:
        return (await self.call("GET", "/api/runs", 200, params=params))["items"]

    async def run(self, run_id: int) -> dict[str, Any]:
        return await self.call("GET", f"/api/runs/{run_id}", 200)


@pytest.fixture
async def stack(processes, pool, db_url: str, amqp_url: str, queue: str, tmp_path
                ) -> Client:
    """api + scheduler + worker on this test's queue, and an admin key named `e2e`."""
    _, key = await Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url)
                           ).create_key("test", "e2e", "admin")
    common = {"HEALTH_DIR": tmp_path}
    processes(["scheduler"], service_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=1, **common))
    processes(["worker"], service_env(db_url, amqp_url, WORKER_QUEUES=queue,
                                      WORKER_HEARTBEAT_INTERVAL=0.5, **common))
    base = await start_api(processes, db_url, amqp_url, **common)
    client = Client(base, key)
    yield client
    await client.http.aclose()


async def test_a_job_scheduled_through_the_api_runs_and_succeeds(stack: Client, queue: str) -> None:
    job = await stack.call("POST", "/api/jobs", 201, json={
        "name": "heartbeat", "handler": "noop", "queue": queue,
        "schedules": [{"kind": "interval", "interval_seconds": 1}]})

    async def two_succeeded() -> list[dict[str, Any]]:
        runs = await stack.runs(job="heartbeat", status="succeeded")
        return runs if len(runs) >= 2 else []

    runs = await wait_for(two_succeeded, timeout=30, what="two scheduled runs to succeed")
    assert {r["trigger"] for r in runs} == {"schedule"}
    assert {r["schedule_id"] for r in runs} == {job["schedules"][0]["id"]}
    assert len({r["scheduled_for"] for r in runs}) == len(runs)

    status = await stack.call("GET", "/api/scheduler/status", 200)
    assert status["status"] == "running" and status["instances"]
    workers = await stack.call("GET", "/api/workers", 200)
    assert any(w["online"] and queue in w["queues"] for w in workers)
    stats = await stack.call("GET", "/api/stats", 200)
    assert stats["jobs"]["total"] == 1 and stats["executions"]["successful"] >= 2


async def test_trigger_starts_a_run_then_cancel_and_retry(stack: Client, queue: str) -> None:
    await stack.call("POST", "/api/jobs", 201, json={
        "name": "nap", "handler": "sleep", "queue": queue, "payload": {"seconds": 60}})
    queued = await stack.call("POST", "/api/jobs/nap/trigger", 202)
    assert queued["status"] == "queued"
    run_id = queued["run_id"]

    async def running() -> bool:
        return (await stack.run(run_id))["status"] == "running"

    await wait_for(running, timeout=20, what="the triggered run to start")
    run = await stack.run(run_id)
    assert run["trigger"] == "manual" and run["triggered_by"] == "e2e" and run["worker_id"]

    cancel = await stack.call("POST", f"/api/runs/{run_id}/cancel", 200)
    assert cancel["cancel_requested"] is True

    async def cancelled() -> bool:
        return (await stack.run(run_id))["status"] == "cancelled"

    await wait_for(cancelled, timeout=20, what="the running run to end cancelled")
    await stack.call("POST", f"/api/runs/{run_id}/cancel", 409)

    # A retry is a new run of the same job, attempt 1, that a worker starts too.
    retry = await stack.call("POST", f"/api/runs/{run_id}/retry", 202)
    assert retry["run_id"] != run_id

    async def retry_running() -> bool:
        return (await stack.run(retry["run_id"]))["status"] == "running"

    await wait_for(retry_running, timeout=20, what="the retry to start")
    again = await stack.run(retry["run_id"])
    assert again["trigger"] == "manual" and again["attempt"] == 1 and again["job"] == "nap"
    await stack.call("POST", f"/api/runs/{retry['run_id']}/retry", 409)  # still running
    await stack.call("POST", f"/api/runs/{retry['run_id']}/cancel", 200)



async def test_a_killed_scheduler_shows_stale_within_the_stale_time(
        processes, pool, db_url: str, amqp_url: str, tmp_path) -> None:
    _, key = await Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url)
                           ).create_key("test", "e2e", "viewer")
    common = {"HEALTH_DIR": tmp_path, "SCHEDULER_STALE_AFTER": 2, "SCHEDULER_POLL_INTERVAL": 0.5}
    survivor = processes(["scheduler"], service_env(db_url, amqp_url, **common))
    victim = processes(["scheduler"], service_env(db_url, amqp_url, **common))
    client = Client(await start_api(processes, db_url, amqp_url, **common), key)
    try:
        async def statuses() -> dict[int, str]:
            status = await client.call("GET", "/api/scheduler/status", 200)
            return {i["pid"]: i["status"] for i in status["instances"]}

        await wait_for(lambda: _is(statuses, {survivor.pid: "running", victim.pid: "running"}),
                       30, what="both schedulers running")
        victim.kill()
        killed_at = time.monotonic()
        await wait_for(lambda: _is(statuses, {survivor.pid: "running", victim.pid: "stale"}),
                       10, what="the killed scheduler shown stale")
        assert time.monotonic() - killed_at < 2 + 3, "within SCHEDULER_STALE_AFTER and a pass"
        status = await client.call("GET", "/api/scheduler/status", 200)
        assert status["status"] == "running"
        assert survivor.stop() == 0
        await wait_for(lambda: _is(statuses, {survivor.pid: "stopped", victim.pid: "stale"}),
                       10, what="the stopped scheduler shown stopped")
    finally:
        await client.http.aclose()


async def _is(statuses, expected: dict[int, str]) -> bool:
    return await statuses() == expected
