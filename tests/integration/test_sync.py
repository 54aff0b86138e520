"""`sundial sync` against a real database: declared jobs and schedules are created,
updated by name and key, disabled (never deleted) once no longer declared, written once
however many syncs run at once; and the API refuses the edits the next sync would undo."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sundial.api.errors import Conflict
from sundial.api.service import Service
from sundial.api.settings import ApiSettings
from sundial.api.sync import sync
from sundial.core import schedule as sched
from sundial.core.declarations import Declaration, build
from sundial.core.errors import InvalidDeclaration
from tests.conftest import ROOT, service_env
from tests.integration.test_api import Api, serving


def decl(name: str = "reports.daily", handler: str = "noop", payload: dict | None = None,
         **options: Any) -> Declaration:
    return build(name, handler=handler, payload=payload, where="tests", **options)


@pytest.fixture
async def svc(pool: asyncpg.Pool, db_url: str, amqp_url: str) -> AsyncIterator[Service]:
    yield Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url,
                                    API_ALLOWED_QUEUES="default,reports"))


async def _job(pool: asyncpg.Pool, name: str) -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM jobs WHERE name = $1", name)


async def _schedules(pool: asyncpg.Pool, name: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT s.* FROM schedules s JOIN jobs j ON j.id = s.job_id "
                            "WHERE j.name = $1 ORDER BY s.id", name)


async def test_a_sync_creates_the_declared_jobs_and_a_second_changes_nothing(svc, pool) -> None:
    declared = [decl(cron="0 2 * * *", timezone="Europe/Paris", queue="reports",
                     timeout_seconds=600),
                decl("site.ping", handler="sleep", payload={"seconds": 1},
                     every=60)]
    first = await sync(svc, declared, actor="test")
    assert [str(c) for c in first.changes][:2] == [
        "create job 'reports.daily': noop job, queue reports",
        f"create schedule 0 of job 'reports.daily': cron '0 2 * * *' Europe/Paris, next run "
        f"{first.changes[1].detail.rsplit('next run ', 1)[1]}"]
    job = await _job(pool, "reports.daily")
    assert (job["managed_by"], job["queue"], job["timeout_seconds"], job["enabled"]) == (
        "code", "reports", 600, True)
    [schedule] = await _schedules(pool, "reports.daily")
    now = await pool.fetchval("SELECT now()")
    spec = sched.Spec(kind="cron", cron="0 2 * * *", timezone="Europe/Paris")
    assert schedule["managed_key"] == "0" and schedule["is_active"]
    assert schedule["next_run_at"] == sched.first_fire(spec, now)
    assert (await _job(pool, "site.ping"))["payload"] == {"seconds": 1}

    again = await sync(svc, declared, actor="test")
    assert again.unchanged and (again.jobs, again.schedules) == (2, 2)
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 2
    assert await pool.fetchval("SELECT count(*) FROM schedules") == 2
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'job.sync'") == 2


async def test_a_changed_cron_updates_the_same_schedule_from_now(svc, pool) -> None:
    await sync(svc, [decl(cron="*/5 * * * *", queue="reports")], actor="test")
    [before] = await _schedules(pool, "reports.daily")
    # The schedule ran a slot a minute ago; its next slot is pending.
    await pool.execute("UPDATE schedules SET last_run_at = now() - interval '1 minute', "
                       "next_run_at = now() + interval '4 minutes' WHERE id = $1", before["id"])

    result = await sync(svc, [decl(cron="7 * * * *", queue="default")], actor="test")
    assert [(c.action, c.schedule) for c in result.changes] == [("update", None), ("update", "0")]
    assert result.changes[0].detail == "queue"
    [after] = await _schedules(pool, "reports.daily")
    now = await pool.fetchval("SELECT now()")
    assert after["id"] == before["id"] and after["cron"] == "7 * * * *"
    # Recomputed from now, as an API edit: the first slot of the new cron after now.
    assert after["next_run_at"] == sched.first_fire(sched.Spec(kind="cron", cron="7 * * * *"), now)
    assert after["last_run_at"] is not None and after["run_count"] == before["run_count"]


async def test_what_operators_chose_is_kept(svc, pool) -> None:
    await sync(svc, [decl(cron="0 2 * * *")], actor="test")
    [schedule] = await _schedules(pool, "reports.daily")
    await svc.set_job_enabled("ops", "reports.daily", False)
    await svc.pause_schedule("ops", schedule["id"])

    assert (await sync(svc, [decl(cron="0 2 * * *")], actor="test")).unchanged
    changed = await sync(svc, [decl(cron="0 3 * * *")], actor="test")
    assert "paused" in str(changed.changes[0])
    [schedule] = await _schedules(pool, "reports.daily")
    assert (schedule["cron"], schedule["is_active"], schedule["next_run_at"]) == (
        "0 3 * * *", False, None)
    assert (await _job(pool, "reports.daily"))["enabled"] is False


async def test_what_code_no_longer_declares_is_disabled_never_deleted(svc, pool) -> None:
    await sync(svc, [decl(schedules=[{"key": "night", "cron": "0 2 * * *"},
                                     {"key": "noon", "cron": "0 12 * * *"}]),
                     decl("old.job", every=60)], actor="test")
    old = await _job(pool, "old.job")
    await pool.execute("INSERT INTO runs (job_id, scheduled_for, trigger, status) "
                       "VALUES ($1, now(), 'manual', 'succeeded')", old["id"])
    [_, noon] = await _schedules(pool, "reports.daily")

    result = await sync(svc, [decl(schedules=[{"key": "night", "cron": "0 2 * * *"}])],
                        actor="test")
    assert sorted(str(c) for c in result.changes) == [
        "disable job 'old.job': no longer declared in code; its schedules and runs stay",
        f"disable schedule {noon['id']} of job 'reports.daily': cron '0 12 * * *' UTC is not "
        "declared; its runs stay"]
    old = await _job(pool, "old.job")
    assert old["enabled"] is False and old["undeclared_at"] is not None
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE job_id = $1", old["id"]) == 1
    assert len(await _schedules(pool, "old.job")) == 1
    night_now, noon_now = await _schedules(pool, "reports.daily")
    assert night_now["is_active"] and night_now["managed_key"] == "night"
    assert (noon_now["is_active"], noon_now["managed_key"], noon_now["next_run_at"]) == (
        False, None, None)
    # Not managed while undeclared: open to deletion. Declared again: enabled again.
    assert (await svc.get_job("old.job"))["managed_by"] is None
    back = await sync(svc, [decl(schedules=[{"key": "night", "cron": "0 2 * * *"}]),
                            decl("old.job", every=60)], actor="test")
    assert [str(c) for c in back.changes] == ["enable job 'old.job': declared again"]
    assert (await _job(pool, "old.job"))["enabled"] is True
    assert (await svc.get_job("old.job"))["managed_by"] == "code"


async def test_declared_secrets_are_encrypted_and_a_second_sync_leaves_them(
        pool, db_url: str, amqp_url: str) -> None:
    from cryptography.fernet import Fernet

    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url,
                                    ENCRYPTION_KEY=Fernet.generate_key().decode()))
    declared = [decl(payload={"region": "eu", "secrets": {"token": "s3cret"}}, every=60)]
    await sync(svc, declared, actor="test")
    job = await _job(pool, "reports.daily")
    assert job["payload"] == {"region": "eu", "secrets": {"token": "***"}}
    assert job["secret_payload"] and "s3cret" not in job["secret_payload"]
    assert (await sync(svc, declared, actor="test")).unchanged
    rotated = await sync(svc, [decl(payload={"region": "eu", "secrets": {"token": "new"}},
                                    every=60)], actor="test")
    assert [str(c) for c in rotated.changes] == ["update job 'reports.daily': payload"]
    assert svc.stored_secrets(await _job(pool, "reports.daily")) == {"secrets": {"token": "new"}}


async def test_a_dry_run_prints_the_plan_and_writes_nothing(svc, pool) -> None:
    result = await sync(svc, [decl(cron="0 2 * * *")], actor="test", dry_run=True)
    assert result.dry_run and [c.action for c in result.changes] == ["create", "create"]
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_concurrent_syncs_write_once(svc, pool) -> None:
    declared = [decl(f"job.{i}", cron="*/5 * * * *") for i in range(5)]
    results = await asyncio.gather(*(sync(svc, declared, actor=f"sync-{i}") for i in range(4)))
    assert sorted(len(r.changes) for r in results) == [0, 0, 0, 10]
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE managed_by = 'code'") == 5
    assert await pool.fetchval("SELECT count(*) FROM schedules") == 5


async def test_a_pause_while_a_sync_writes_the_job_keeps_what_the_sync_wrote(svc, pool) -> None:
    await sync(svc, [decl(every=60, timeout_seconds=600)], actor="test")
    async with pool.acquire() as conn, conn.transaction():
        # What the next sync writes, not committed yet when the pause starts.
        await conn.execute("UPDATE jobs SET timeout_seconds = 900 WHERE name = 'reports.daily'")
        pause = asyncio.create_task(svc.set_job_enabled("ops", "reports.daily", False))
        await asyncio.sleep(0.5)
        assert not pause.done()   # it waits for the sync's transaction
    await pause
    job = await _job(pool, "reports.daily")
    assert (job["enabled"], job["timeout_seconds"]) == (False, 900)


async def test_a_job_made_through_the_api_is_taken_over_only_when_asked(svc, pool) -> None:
    from sundial.api.schemas import JobCreate

    await svc.create_job("ops", JobCreate.model_validate(
        {"name": "reports.daily", "handler": "noop",
         "schedules": [{"kind": "interval", "interval_seconds": 30}]}))
    with pytest.raises(Conflict, match=r"job 'reports.daily' exists and is not managed by code.*"
                                       r"sundial sync --adopt"):
        await sync(svc, [decl(cron="0 2 * * *")], actor="test")
    assert (await _job(pool, "reports.daily"))["managed_by"] is None

    result = await sync(svc, [decl(cron="0 2 * * *")], actor="test", adopt=True)
    assert [c.action for c in result.changes] == ["adopt", "create", "disable"]
    api_made, declared = await _schedules(pool, "reports.daily")
    assert not api_made["is_active"] and declared["is_active"]


@pytest.mark.parametrize(("declaration", "message"), [
    (decl(queue="nightly", every=60),
     "job 'reports.daily': queue 'nightly': is not one of the queues this API allows"),
    (decl("bad name!", every=60), "job 'bad name!': name 'bad name!': String should match"),
    (decl(handler="http", payload={"url": "ftp://example.com/"}, every=60),
     "job 'reports.daily': payload.url 'ftp://example.com/'"),
    (decl(priority=12, every=60), "job 'reports.daily': priority 12: Input should be less than"),
    (decl(schedules=[{"run_at": "2001-01-01T00:00:00+00:00"}]),
     "job 'reports.daily': schedules[0].run_at '2001-01-01T00:00:00+00:00': is in the past"),
])
async def test_a_declaration_the_api_would_refuse_is_refused_naming_the_job(
        svc, pool, declaration: Declaration, message: str) -> None:
    with pytest.raises(InvalidDeclaration) as raised:
        await sync(svc, [decl("fine", every=60), declaration], actor="test")
    assert message in str(raised.value)
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0, "nothing half-written"


# --- the API and the dashboard's view ----------------------------------------------------


@pytest.fixture
async def api(db_url: str, amqp_url: str) -> AsyncIterator[Api]:
    async with serving(db_url, amqp_url) as api:
        yield api


async def test_the_api_shows_code_managed_jobs_and_refuses_what_sync_would_undo(api: Api) -> None:
    await sync(api.app.state.service, [decl(cron="0 2 * * *"), decl("gone", every=60)],
               actor="test")
    job = (await api.get("/api/jobs/reports.daily")).json()
    assert job["managed_by"] == "code" and job["undeclared_at"] is None
    assert job["schedules"][0]["managed_key"] == "0"
    listed = {j["name"]: j for j in (await api.get("/api/jobs")).json()}
    assert listed["reports.daily"]["managed_by"] == "code"
    schedule_id = job["schedules"][0]["id"]

    refused = [
        await api.call("PATCH", "/api/jobs/reports.daily", json={"queue": "other"}),
        await api.call("DELETE", "/api/jobs/reports.daily"),
        await api.post("/api/schedules", json={"job_id": job["id"], "kind": "interval",
                                               "interval_seconds": 60}),
        await api.call("PATCH", f"/api/schedules/{schedule_id}", json={"cron": "0 3 * * *"}),
        await api.call("DELETE", f"/api/schedules/{schedule_id}"),
    ]
    for response in refused:
        assert response.status_code == 409, response.text
        detail = response.json()["detail"]
        assert "job 'reports.daily' is managed by code" in detail and "`sundial sync`" in detail
    assert "changing queue" in refused[0].json()["detail"]

    for method, path in (("POST", "/api/jobs/reports.daily/pause"),
                         ("POST", "/api/jobs/reports.daily/resume"),
                         ("POST", f"/api/schedules/{schedule_id}/pause"),
                         ("POST", f"/api/schedules/{schedule_id}/resume")):
        assert (await api.call(method, path)).status_code == 200, path
    assert (await api.post("/api/jobs/reports.daily/trigger")).status_code == 202
    assert (await api.call("PATCH", "/api/jobs/reports.daily",
                           json={"enabled": False})).status_code == 200

    # No longer declared: disabled, and open to edits and deletion again.
    await sync(api.app.state.service, [decl(cron="0 2 * * *")], actor="test")
    gone = (await api.get("/api/jobs/gone")).json()
    assert gone["managed_by"] is None and gone["undeclared_at"] and not gone["enabled"]
    assert (await api.call("DELETE", "/api/jobs/gone")).status_code == 200


# --- the command ---------------------------------------------------------------------------


MODULE = '''
from sundial import declare, job

@job("reports.daily", cron={cron!r}, timezone="Europe/Paris")
def daily(day=None):
    return {{"day": day}}

declare("site.ping", handler="noop", every=60)
'''


def test_the_sync_command(db_url: str, amqp_url: str, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    env = service_env(db_url, amqp_url, PYTHONPATH=str(app), WORKER_IMPORTS="myjobs")

    def sundial(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sundial", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    (app / "myjobs.py").write_text(MODULE.format(cron="0 2 * * *"))
    planned = sundial("sync", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    lines = planned.stdout.splitlines()
    assert lines[0] == "would create job 'reports.daily': python job, queue default"
    assert lines[-1] == "dry run: nothing written (2 declared job(s), 2 schedule(s))"
    assert json.loads(sundial("jobs", "list", "--json").stdout) == []

    done = sundial("sync")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "synced 2 declared job(s), 2 schedule(s): 4 change(s)"
    assert sundial("sync").stdout.strip() == "unchanged: 2 declared job(s), 2 schedule(s)"
    header, *rows, total = sundial("jobs", "list").stdout.splitlines()
    assert "MANAGED_BY" in header.split() and all(" code " in r for r in rows)
    assert len(rows) == 2 and total == "2 of 2 jobs", (rows, total)
    assert "managed_by:" in sundial("jobs", "show", "reports.daily").stdout

    (app / "myjobs.py").write_text(MODULE.format(cron="61 2 * * *"))
    bad = sundial("sync")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("sundial: job 'reports.daily': schedules[0].cron '61 2 * * *': "
                                  "minute '61' must be 0-59")
    missing = subprocess.run([sys.executable, "-m", "sundial", "sync"], capture_output=True,
                             text=True, timeout=60, cwd=ROOT,
                             env=service_env(db_url, amqp_url))
    assert missing.returncode == 2 and "--import" in missing.stderr

