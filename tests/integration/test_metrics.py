"""The API's /metrics against a real database: the values an operator alerts on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_api import Api, noop_job, serving


@pytest.fixture
async def api(db_url: str, amqp_url: str) -> AsyncIterator[Api]:
    async with serving(db_url, amqp_url, METRICS_MAX_JOBS=2) as api:
        yield api


async def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    r = await api.get("/metrics", None)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


async def add_runs(api: Api, job: str, status: str, n: int, **columns: object) -> None:
    sets = "".join(f", {c}" for c in columns)
    values = "".join(f", ${i + 4}" for i in range(len(columns)))
    await api.pool.execute(
        f"INSERT INTO runs (job_id, scheduled_for, trigger, status{sets})"
        f" SELECT (SELECT id FROM jobs WHERE name = $1), now(), 'manual', $2{values}"
        f" FROM generate_series(1, $3)", job, status, n, *columns.values())


async def test_queue_depth_has_a_value_for_every_queue_idle_ones_included(api: Api) -> None:
    for name, queue in (("a", "reports"), ("b", "idle")):
        assert (await api.post("/api/jobs", json=noop_job(name, queue=queue))).status_code == 201
    await add_runs(api, "a", "queued", 3)
    await add_runs(api, "a", "running", 2)
    await api.pool.execute("UPDATE runs SET published_at = now() WHERE id = 1")
    m = await scrape(api)
    assert m[("sundial_queue_depth", (("queue", "reports"),))] == 3
    assert m[("sundial_queue_depth", (("queue", "idle"),))] == 0
    assert m[("sundial_queue_workers", (("queue", "reports"),))] == 0
    assert m[("sundial_outbox_size", ())] == 2
    assert m[("sundial_runs", (("status", "queued"),))] == 3


async def test_runs_by_job_keep_the_busiest_jobs_and_sum_the_rest(api: Api) -> None:
    for name in ("a", "b", "c", "d"):
        assert (await api.post("/api/jobs", json=noop_job(name))).status_code == 201
    await add_runs(api, "a", "succeeded", 5)
    await add_runs(api, "d", "failed", 9, created_at=datetime.now(UTC) - timedelta(hours=2))
    await add_runs(api, "b", "failed", 4)
    await add_runs(api, "c", "failed", 2)
    await add_runs(api, "d", "failed", 1)
    m = await scrape(api)

    def runs(job: str, status: str) -> float | None:
        key = (("job_name", job), ("queue", "default"), ("status", status))
        return m.get(("sundial_job_runs_last_hour", key))

    assert runs("a", "succeeded") == 5 and runs("b", "failed") == 4
    assert runs("_other", "failed") == 3 and runs("c", "failed") is None
    assert m[("sundial_runs", (("status", "failed"),))] == 16  # every run kept, by status


async def test_a_job_named_other_is_not_mistaken_for_the_rest(api: Api) -> None:
    for name in ("other", "b", "c"):
        assert (await api.post("/api/jobs", json=noop_job(name))).status_code == 201
    await add_runs(api, "other", "failed", 5)
    await add_runs(api, "b", "failed", 4)
    await add_runs(api, "c", "failed", 1)
    m = await scrape(api)

    def runs(job: str) -> float | None:
        key = (("job_name", job), ("queue", "default"), ("status", "failed"))
        return m.get(("sundial_job_runs_last_hour", key))

    assert runs("other") == 5 and runs("b") == 4 and runs("_other") == 1


async def test_worker_slots_and_last_success_come_from_the_database(api: Api) -> None:
    await api.pool.execute(
        "INSERT INTO workers (id, host, pid, queues, concurrency) VALUES"
        " ('w1', 'h', 1, '{default,reports}', 4), ('w2', 'h', 2, '{default}', 2),"
        " ('gone', 'h', 3, '{default}', 8)")
    await api.pool.execute("UPDATE workers SET last_heartbeat = now() - interval '1 day'"
                           " WHERE id = 'gone'")
    job = noop_job("nightly", schedules=[{"kind": "interval", "interval_seconds": 3600}])
    assert (await api.post("/api/jobs", json=job)).status_code == 201, job
    await add_runs(api, "nightly", "running", 3, worker_id="w1")
    await add_runs(api, "nightly", "succeeded", 1, finished_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    m = await scrape(api)
    assert m[("sundial_worker_slots", (("state", "busy"),))] == 3
    assert m[("sundial_worker_slots", (("state", "free"),))] == 3
    assert m[("sundial_workers_online", ())] == 2
    assert m[("sundial_queue_workers", (("queue", "default"),))] == 2
    assert m[("sundial_queue_workers", (("queue", "reports"),))] == 1
    assert m[("sundial_job_last_success_timestamp_seconds", (("job_name", "nightly"),))] \
        == 1767323045.0


async def test_the_process_collectors_are_served(api: Api) -> None:
    m = await scrape(api)
    assert m[("process_resident_memory_bytes", ())] > 0
    assert any(name == "python_gc_collections_total" for name, _ in m)
