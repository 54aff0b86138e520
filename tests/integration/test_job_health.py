"""GET /api/jobs/{id}/health: a job's success and error rates and durations over a window."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from tests.integration.test_api import Api, noop_job, serving


@pytest.fixture
async def api(db_url: str, amqp_url: str) -> AsyncIterator[Api]:
    async with serving(db_url, amqp_url) as api:
        yield api


async def finished(api: Api, job_id: int, status: str, n: int, duration_s: float,
                   ago_s: float) -> None:
    """n runs of the job that ended in `status` ago_s seconds ago after running duration_s."""
    await api.pool.execute(
        """INSERT INTO runs (job_id, scheduled_for, trigger, status, started_at, finished_at)
           SELECT $1, now(), 'manual', $2,
                  now() - make_interval(secs => $4::float8 + $3::float8),
                  now() - make_interval(secs => $4::float8)
           FROM generate_series(1, $5)""", job_id, status, duration_s, ago_s, n)


async def test_health_counts_the_runs_that_finished_in_the_window(api: Api) -> None:
    job = (await api.post("/api/jobs", json=noop_job("nightly"))).json()
    await finished(api, job["id"], "succeeded", 18, 10.0, 60)
    await finished(api, job["id"], "succeeded", 1, 100.0, 120)
    await finished(api, job["id"], "failed", 1, 1.0, 60)
    await finished(api, job["id"], "timed_out", 1, 50.0, 60)
    await finished(api, job["id"], "skipped", 2, 0.0, 60)
    await finished(api, job["id"], "failed", 50, 1.0, 3 * 86400)   # outside 24h
    other = (await api.post("/api/jobs", json=noop_job("other"))).json()
    await finished(api, other["id"], "failed", 5, 1.0, 60)

    h = (await api.get("/api/jobs/nightly/health", "viewer")).json()
    assert h["window"] == "24h" and h["window_s"] == 86400
    assert (h["finished"], h["succeeded"], h["failed"], h["skipped"]) == (23, 19, 2, 2)
    assert h["success_rate"] == pytest.approx(19 / 21, abs=1e-4)
    assert h["error_rate"] == pytest.approx(2 / 21, abs=1e-4)
    assert h["avg_duration_s"] == pytest.approx((18 * 10 + 100 + 1 + 50) / 21, rel=1e-3)
    assert h["p95_duration_s"] == pytest.approx(50.0, rel=1e-3)
    assert h["last_success_at"] is not None

    week = (await api.get(f"/api/jobs/{job['id']}/health?window=7d")).json()
    assert week["failed"] == 52


async def test_a_job_without_finished_runs_has_no_rates(api: Api) -> None:
    await api.post("/api/jobs", json=noop_job("new"))
    h = (await api.get("/api/jobs/new/health?window=30m")).json()
    assert h["finished"] == 0 and h["success_rate"] is None and h["p95_duration_s"] is None


@pytest.mark.parametrize("window", ["24", "1w", "-1h", "30s", "367d", "h", "", " 1h"])
async def test_a_bad_window_is_refused_naming_it(api: Api, window: str) -> None:
    await api.post("/api/jobs", json=noop_job("j"))
    r = await api.get("/api/jobs/j/health", params={"window": window})
    assert r.status_code == 422, r.text
    assert "window" in r.text and window in r.text and "24h" in r.text


async def test_health_of_an_unknown_job_is_404(api: Api) -> None:
    assert (await api.get("/api/jobs/nope/health")).status_code == 404


async def test_the_schema_gives_the_form_of_a_window(api: Api) -> None:
    operation = (await api.get("/openapi.json", None)).json()["paths"][
        "/api/jobs/{job}/health"]["get"]
    window = next(p for p in operation["parameters"] if p["name"] == "window")
    pattern = re.compile(window["schema"]["pattern"])
    assert [w for w in ("30m", "24h", "7d", "1.5h", "", "24", " 1h", "1w") if pattern.search(w)] == [
        "30m", "24h", "7d", "1.5h"]
