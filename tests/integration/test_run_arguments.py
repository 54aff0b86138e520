"""Runs with arguments, idempotency keys and backfill, through the HTTP API in-process
against real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sundial.api.service import MAX_BACKFILL_SLOTS
from sundial.core.secrets import decrypt_fields, merge_secrets
from tests.integration.test_api import ENCRYPTION_KEY, Api, serving


@pytest.fixture
async def api(db_url: str, amqp_url: str) -> AsyncIterator[Api]:
    async with serving(db_url, amqp_url) as api:
        yield api


async def _job(api: Api, name: str, handler: str = "noop", **fields: Any) -> dict[str, Any]:
    r = await api.post("/api/jobs", json={"name": name, "handler": handler, **fields})
    assert r.status_code == 201, r.text
    return r.json()


async def _run(api: Api, run_id: int) -> dict[str, Any]:
    r = await api.get(f"/api/runs/{run_id}")
    assert r.status_code == 200, r.text
    return r.json()


# --- arguments ------------------------------------------------------------------------------


async def test_a_trigger_payload_is_merged_into_the_jobs_or_replaces_it(api: Api) -> None:
    await _job(api, "report", payload={"day": "stored", "format": "pdf"})

    plain = await api.post("/api/jobs/report/trigger")
    assert plain.status_code == 202, plain.text
    assert (await _run(api, plain.json()["run_id"]))["payload"] is None, \
        "no arguments: the job's payload as it is when the run starts"

    merged = await api.post("/api/jobs/report/trigger",
                            json={"payload": {"day": "2024-03-01", "lang": "fr"}})
    assert merged.status_code == 202, merged.text
    assert (await _run(api, merged.json()["run_id"]))["payload"] == {
        "day": "2024-03-01", "format": "pdf", "lang": "fr"}

    replaced = await api.post("/api/jobs/report/trigger",
                              json={"payload": {"day": "2024-03-02"}, "mode": "replace"})
    assert replaced.status_code == 202, replaced.text
    assert (await _run(api, replaced.json()["run_id"]))["payload"] == {"day": "2024-03-02"}

    # What the worker's claim reads: the run's own payload, else the job's.
    rows = await api.pool.fetch(
        "SELECT r.id, coalesce(r.payload, j.payload) AS payload FROM runs r "
        "JOIN jobs j ON j.id = r.job_id ORDER BY r.id")
    assert [r["payload"]["day"] for r in rows] == ["stored", "2024-03-01", "2024-03-02"]

    # A retry runs the same arguments again.
    await api.pool.execute("UPDATE runs SET status = 'failed' WHERE id = $1",
                           merged.json()["run_id"])
    retry = await api.post(f"/api/runs/{merged.json()['run_id']}/retry")
    assert retry.status_code == 202, retry.text
    assert (await _run(api, retry.json()["run_id"]))["payload"]["day"] == "2024-03-01"


@pytest.mark.parametrize(("handler", "payload", "body", "field"), [
    ("sleep", {"seconds": 1}, {"payload": {"seconds": -1}}, "payload.seconds"),
    ("http", {"url": "https://1.1.1.1/"}, {"payload": {"method": "x"}, "mode": "replace"},
     "payload.url"),
    ("http", {"url": "https://1.1.1.1/"}, {"payload": {"url": "ftp://x"}}, "payload.url"),
    ("noop", {}, {"mode": "replace"}, "mode"),
    ("noop", {}, {"payload": {}, "mode": "swap"}, "mode"),
    ("noop", {}, {"idempotency_key": ""}, "idempotency_key"),
    ("noop", {}, {"priority": 10}, "priority"),
    ("noop", {}, {"payload": {}, "extra": 1}, "extra"),
])
async def test_a_trigger_payload_is_checked_like_a_jobs(api: Api, handler: str, payload: dict,
                                                        body: dict, field: str) -> None:
    await _job(api, "j", handler, payload=payload)
    r = await api.post("/api/jobs/j/trigger", json=body)
    assert r.status_code == 422, r.text
    assert field in r.text, r.text
    assert await api.count("runs") == 0, "nothing half-written"


async def test_secrets_in_a_trigger_payload_are_encrypted_and_masks_keep_the_jobs(
        api: Api) -> None:
    await _job(api, "hook", "http", payload={
        "url": "https://1.1.1.1/hook", "headers": {"Authorization": "Bearer stored"}})
    r = await api.post("/api/jobs/hook/trigger",
                       json={"payload": {"url": "https://1.1.1.1/other"}})
    assert r.status_code == 202, r.text
    kept = await api.pool.fetchrow("SELECT payload, secret_payload FROM runs WHERE id = $1",
                                   r.json()["run_id"])
    assert kept["payload"]["headers"] == {"Authorization": "***"}
    merged = merge_secrets(kept["payload"], decrypt_fields(ENCRYPTION_KEY, kept["secret_payload"]))
    assert merged == {"url": "https://1.1.1.1/other",
                      "headers": {"Authorization": "Bearer stored"}}

    r = await api.post("/api/jobs/hook/trigger", json={"payload": {
        "headers": {"Authorization": "Bearer n3w"}}})
    assert r.status_code == 202, r.text
    assert "n3w" not in (await api.get(f"/api/runs/{r.json()['run_id']}")).text
    row = await api.pool.fetchrow("SELECT payload, secret_payload FROM runs WHERE id = $1",
                                  r.json()["run_id"])
    assert "n3w" not in str(row["payload"])
    assert decrypt_fields(ENCRYPTION_KEY, row["secret_payload"])["headers"] == {
        "Authorization": "Bearer n3w"}
    assert not any("n3w" in a[0] for a in await api.pool.fetch(
        "SELECT details::text FROM audit_log"))


# --- idempotency ----------------------------------------------------------------------------


async def test_a_repeated_key_returns_the_first_run(api: Api) -> None:
    await _job(api, "once")
    await _job(api, "other")
    first = await api.post("/api/jobs/once/trigger", json={"idempotency_key": "k1"})
    assert first.status_code == 202, first.text
    again = await api.post("/api/jobs/once/trigger",
                           json={"idempotency_key": "k1", "payload": {"x": 1}})
    assert again.status_code == 200, again.text
    assert again.json() == {"run_id": first.json()["run_id"], "status": "queued",
                            "replayed": True}
    assert (await _run(api, first.json()["run_id"]))["payload"] is None, "the first run stays"
    elsewhere = await api.post("/api/jobs/other/trigger", json={"idempotency_key": "k1"})
    assert elsewhere.status_code == 202, "a key belongs to one job"
    assert await api.count("runs") == 2
    # The first run's status as it is now.
    await api.pool.execute("UPDATE runs SET status = 'succeeded' WHERE id = $1",
                           first.json()["run_id"])
    later = await api.post("/api/jobs/once/trigger", json={"idempotency_key": "k1"})
    assert later.status_code == 200 and later.json()["status"] == "succeeded"


async def test_concurrent_requests_with_one_key_make_one_run(api: Api) -> None:
    await _job(api, "busy")
    replies = await asyncio.gather(*(
        api.post("/api/jobs/busy/trigger", json={"idempotency_key": "same"})
        for _ in range(12)))
    assert sorted(r.status_code for r in replies) == [200] * 11 + [202], \
        [r.text for r in replies]
    assert len({r.json()["run_id"] for r in replies}) == 1
    assert await api.count("runs") == 1


async def test_a_key_older_than_the_window_makes_a_new_run(api: Api) -> None:
    await _job(api, "daily")
    first = (await api.post("/api/jobs/daily/trigger", json={"idempotency_key": "d"})).json()
    await api.pool.execute("UPDATE runs SET created_at = now() - interval '25 hours'")
    fresh = await api.post("/api/jobs/daily/trigger", json={"idempotency_key": "d"})
    assert fresh.status_code == 202, fresh.text
    assert fresh.json()["run_id"] != first["run_id"]
    assert (await _run(api, first["run_id"]))["idempotency_key"] is None
    assert (await _run(api, fresh.json()["run_id"]))["idempotency_key"] == "d"
    again = await api.post("/api/jobs/daily/trigger", json={"idempotency_key": "d"})
    assert again.status_code == 200 and again.json()["run_id"] == fresh.json()["run_id"]


# --- backfill -------------------------------------------------------------------------------


async def _interval_schedule(api: Api, every_s: float, start_at: datetime) -> dict[str, Any]:
    job = await _job(api, "etl", schedules=[{
        "kind": "interval", "interval_seconds": every_s, "start_at": start_at.isoformat()}])
    return job["schedules"][0]


async def test_a_backfill_makes_each_slot_once(api: Api) -> None:
    start = datetime(2024, 3, 1, tzinfo=UTC)
    schedule = await _interval_schedule(api, 3600, start)
    sid = schedule["id"]
    # The tick ran one slot already.
    await api.pool.execute(
        "INSERT INTO runs (job_id, schedule_id, scheduled_for, trigger) "
        "VALUES ($1, $2, $3, 'schedule')", schedule["job_id"], sid, start + timedelta(hours=3))
    body = {"from": start.isoformat(), "to": (start + timedelta(hours=9)).isoformat()}

    dry = await api.post(f"/api/schedules/{sid}/backfill", json={**body, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["slots"] == 10 and dry.json()["created"] == 9
    assert dry.json()["existing"] == 1 and dry.json()["run_ids"] == []
    assert await api.count("runs") == 1, "a dry run writes nothing"

    done = await api.post(f"/api/schedules/{sid}/backfill", json=body)
    assert done.status_code == 200, done.text
    assert (done.json()["slots"], done.json()["created"], done.json()["existing"]) == (10, 9, 1)
    rows = await api.pool.fetch("SELECT scheduled_for, trigger, status, triggered_by FROM runs "
                                "WHERE schedule_id = $1 ORDER BY scheduled_for", sid)
    assert [r["scheduled_for"] for r in rows] == [start + timedelta(hours=h) for h in range(10)]
    assert sum(r["trigger"] == "backfill" for r in rows) == 9
    assert {r["status"] for r in rows} == {"queued"}
    assert {r["triggered_by"] for r in rows if r["trigger"] == "backfill"} == {"admin-key"}

    second = await api.post(f"/api/schedules/{sid}/backfill", json=body)
    assert (second.json()["created"], second.json()["existing"]) == (0, 10)
    assert await api.count("runs") == 10
    audit = await api.pool.fetch("SELECT details FROM audit_log WHERE action = "
                                 "'schedule.backfill' ORDER BY id")
    assert [a["details"]["created"] for a in audit] == [9]


@pytest.mark.parametrize(("shift", "field", "words"), [
    ({"to": timedelta(days=-1)}, "to", "is before from"),
    ({"to": timedelta(days=3650)}, "to", "in the future"),
    ({"from": timedelta(seconds=-60 * (MAX_BACKFILL_SLOTS + 1))}, "from",
     f"{MAX_BACKFILL_SLOTS + 2} slots"),
])
async def test_a_backfill_that_cannot_be_done_names_why(api: Api, shift: dict, field: str,
                                                        words: str) -> None:
    now = await api.pool.fetchval("SELECT date_trunc('minute', now())")
    schedule = await _interval_schedule(api, 60, now - timedelta(days=30))
    body = {"from": now - timedelta(minutes=5), "to": now}
    body = {k: (v + shift.get(k, timedelta(0))).isoformat() for k, v in body.items()}
    if "from" in shift:
        body["from"] = (now + shift["from"]).isoformat()
    r = await api.post(f"/api/schedules/{schedule['id']}/backfill", json=body)
    assert r.status_code == 422, r.text
    assert field in r.text and words in r.text, r.text
    assert await api.count("runs") == 0
    missing = await api.post("/api/schedules/999/backfill",
                             json={"from": body["from"], "to": now.isoformat()})
    assert missing.status_code == 404
