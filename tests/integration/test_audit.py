"""GET /api/audit: the audit log with filters and pages, for viewers as for admins."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.test_api import Api, noop_job, serving


@pytest.fixture
async def api(db_url: str, amqp_url: str) -> AsyncIterator[Api]:
    async with serving(db_url, amqp_url) as api:
        yield api


async def test_the_audit_log_is_filtered_and_paged_newest_first(api: Api) -> None:
    for name in ("a", "b", "c"):
        assert (await api.post("/api/jobs", json=noop_job(name))).status_code == 201
    assert (await api.call("PATCH", "/api/jobs/b", json={"priority": 3})).status_code == 200
    assert (await api.call("DELETE", "/api/jobs/c")).status_code == 200

    everything = (await api.get("/api/audit", "viewer")).json()
    actions = [e["action"] for e in everything["items"]]
    assert actions[:5] == ["job.delete", "job.update", "job.create", "job.create", "job.create"]
    assert everything["next_cursor"] is None
    assert "key.create" in actions  # the keys of the fixture, made through the service
    update = everything["items"][1]
    assert update["actor"] == "admin-key" and update["target_type"] == "job"
    assert update["details"]

    creates = (await api.get("/api/audit?action=job.create&limit=2", "viewer")).json()
    assert [e["action"] for e in creates["items"]] == ["job.create"] * 2
    older = (await api.get(f"/api/audit?action=job.create&limit=2"
                           f"&cursor={creates['next_cursor']}", "viewer")).json()
    assert len(older["items"]) == 1 and older["next_cursor"] is None
    ids = [e["id"] for e in creates["items"] + older["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 3

    jobs = (await api.get("/api/audit?action=job.", "viewer")).json()["items"]
    assert {e["action"] for e in jobs} == {"job.create", "job.update", "job.delete"}
    b_id = str((await api.get("/api/jobs/b")).json()["id"])
    of_b = (await api.get(f"/api/audit?target_type=job&target_id={b_id}")).json()["items"]
    assert [e["action"] for e in of_b] == ["job.update", "job.create"]
    assert (await api.get("/api/audit?actor=nobody")).json()["items"] == []
    future = (await api.get("/api/audit", params={"since": "2999-01-01T00:00:00Z"})).json()
    assert future["items"] == []
    # Any time is a bound, as for runs: before 1970 or after 9000 it selects what those years would.
    r = await api.get("/api/audit", params={"until": "0265-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json()["items"] == [], r.text
    r = await api.get("/api/audit", params={"since": "0054-01-28T21:15:03Z", "limit": 500})
    assert len(r.json()["items"]) == len((await api.get("/api/audit?limit=500")).json()["items"])
    # Text PostgreSQL cannot store is in no entry.
    assert (await api.get("/api/audit", params={"actor": "a\x00"})).json()["items"] == []


async def test_bad_filters_are_refused_naming_them(api: Api) -> None:
    r = await api.get("/api/audit?since=yesterday")
    assert r.status_code == 422 and "since" in r.text
    r = await api.get("/api/audit?until=-469698")  # not a number of seconds
    assert r.status_code == 422 and "until" in r.text
    r = await api.get("/api/audit?limit=0")
    assert r.status_code == 422 and "limit" in r.text
