"""The HTTP API against real PostgreSQL and RabbitMQ, through create_app in-process."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from cryptography.fernet import Fernet

from sundial.api.app import create_app, route_table
from sundial.api.auth import CHECK_EVERY_S, KEYS_CHANNEL, PING_TIMEOUT_S
from sundial.api.settings import ApiSettings
from tests.conftest import free_port, several_hosts, wait_for

ENCRYPTION_KEY = Fernet.generate_key().decode()


class Api:
    """An httpx client on the app, with one key per role."""

    def __init__(self, app: Any, client: httpx.AsyncClient, keys: dict[str, str]):
        self.app = app
        self.client = client
        self.keys = keys
        self.pool = app.state.pool

    def headers(self, role: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"} if role else {}

    async def call(self, method: str, path: str, role: str | None = "admin",
                   **kwargs: Any) -> httpx.Response:
        headers = {**self.headers(role), **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def get(self, path: str, role: str | None = "admin", **kwargs: Any) -> httpx.Response:
        return await self.call("GET", path, role, **kwargs)

    async def post(self, path: str, role: str | None = "admin", **kwargs: Any) -> httpx.Response:
        return await self.call("POST", path, role, **kwargs)

    async def count(self, table: str) -> int:
        return await self.pool.fetchval(f"SELECT count(*) FROM {table}")


def api_settings(db_url: str, amqp_url: str, **extra: Any) -> ApiSettings:
    values = {"DATABASE_URL": db_url, "RABBITMQ_URL": amqp_url, "ENCRYPTION_KEY": ENCRYPTION_KEY,
              "API_MAX_BODY_BYTES": 256 * 1024, "DATABASE_POOL_MAX": 4}
    values.update(extra)
    return ApiSettings(**values)


@contextlib.asynccontextmanager
async def serving(db_url: str, amqp_url: str, **extra: Any) -> AsyncIterator[Api]:
    app = create_app(api_settings(db_url, amqp_url, **extra))
    async with app.router.lifespan_context(app):
        svc = app.state.service
        keys = {role: (await svc.create_key("test", f"{role}-key", role))[1]
                for role in ("admin", "viewer")}
        transport = httpx.ASGITransport(app=app)
        if app.state.key_cache.ttl_s > 0:
            await wait_for(lambda: app.state.key_cache.listening, 10,
                           what="the API to listen for key changes")
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield Api(app, client, keys)


@pytest.fixture
async def api(db_url: str, amqp_url: str) -> AsyncIterator[Api]:
    async with serving(db_url, amqp_url) as api:
        yield api


def noop_job(name: str = "hb", **extra: Any) -> dict[str, Any]:
    return {"name": name, "handler": "noop", **extra}


# --- auth ---------------------------------------------------------------------------------


def _concrete(path: str) -> str:
    return (path.replace("{job}", "1").replace("{schedule_id}", "1").replace("{run_id}", "1")
            .replace("{queue}", "default"))


async def test_every_route_denies_by_default_and_checks_the_role(api: Api) -> None:
    """Walks every route x {no key, viewer, admin}: a route added without the role check
    fails here."""
    public = api.app.state.public_paths
    routes = route_table(api.app)
    assert len(routes) > 20
    for method, path in routes:
        url = _concrete(path)
        anonymous = await api.call(method, url, None)
        if path in public:
            assert anonymous.status_code not in (401, 403), (method, path)
            continue
        assert path.startswith("/api/"), f"{method} {path} is neither public nor under /api"
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.headers["www-authenticate"] == "Bearer"
        viewer = await api.call(method, url, "viewer", json={})
        admin = await api.call(method, url, "admin", json={})
        if method == "GET":
            assert viewer.status_code not in (401, 403), (method, path, viewer.text)
        else:
            assert viewer.status_code == 403, (method, path, viewer.text)
        assert admin.status_code not in (401, 403), (method, path, admin.text)
        assert admin.status_code < 500 and viewer.status_code < 500, (method, path)


async def test_bad_revoked_and_expired_keys_are_refused(api: Api) -> None:
    for key in ("nope", "sdl_000000000000_x", api.keys["admin"] + "x", ""):
        r = await api.client.get("/api/jobs", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 401, key
    r = await api.client.get("/api/jobs", headers={"Authorization": f"Basic {api.keys['admin']}"})
    assert r.status_code == 401

    svc = api.app.state.service
    row, key = await svc.create_key("test", "short-lived", "admin")
    assert (await api.client.get("/api/jobs", headers={"Authorization": f"Bearer {key}"})
            ).status_code == 200
    assert await api.pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", row["id"])
    await svc.revoke_key("test", row["prefix"])
    # The key was remembered by the first request; the database's announcement of the
    # change ends that within moments, long before the cache's own 10 s.
    r = await _refused(api, key)
    assert "revoked" in r.json()["detail"]

    row, key = await svc.create_key("test", "expired", "viewer", expires_in_days=1)
    await api.pool.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' "
                           "WHERE id = $1", row["id"])
    r = await api.client.get("/api/jobs", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    stored = await api.pool.fetchval("SELECT key_hash FROM api_keys WHERE id = $1", row["id"])
    assert key not in stored and row["prefix"] in key


async def _status_with(api: Api, key: str) -> int:
    return (await api.client.get("/api/jobs", headers={"Authorization": f"Bearer {key}"})
            ).status_code


async def _refused(api: Api, key: str, within_s: float = 2.0) -> httpx.Response:
    """The 401 a key gets once the API has heard of its change (within moments)."""
    async def refused() -> httpx.Response | None:
        r = await api.client.get("/api/jobs", headers={"Authorization": f"Bearer {key}"})
        return r if r.status_code == 401 else None
    return await wait_for(refused, within_s, interval=0.02, what="the key to be refused")


def _listening(api: Api) -> bool:
    return api.app.state.key_cache.listening


@contextlib.asynccontextmanager
async def remembered_then_revoked_unannounced(db_url: str, amqp_url: str
                                              ) -> AsyncIterator[tuple[Api, str]]:
    """An API that remembers keys for 5 minutes, and a key it has remembered that was
    then revoked with the announcing trigger off (on again afterwards)."""
    async with serving(db_url, amqp_url, API_KEY_CACHE_SECONDS=300) as api:
        row, key = await api.app.state.service.create_key("test", "cached", "admin")
        assert await _status_with(api, key) == 200
        await api.pool.execute("ALTER TABLE api_keys DISABLE TRIGGER api_keys_changed")
        try:
            await api.pool.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1",
                                   row["id"])
            yield api, key
        finally:
            await api.pool.execute("ALTER TABLE api_keys ENABLE TRIGGER api_keys_changed")


async def test_a_remembered_key_needs_no_lookup_until_a_change_is_announced(
        db_url: str, amqp_url: str) -> None:
    async with remembered_then_revoked_unannounced(db_url, amqp_url) as (api, key):
        # Unannounced, the revocation is not seen: the key is remembered.
        assert await _status_with(api, key) == 200
        await api.pool.execute("ALTER TABLE api_keys ENABLE TRIGGER api_keys_changed")
        # Any announced change empties the cache; the lookup then finds the revocation.
        await api.pool.execute("UPDATE api_keys SET name = 'renamed' WHERE name = 'cached'")
        assert "revoked" in (await _refused(api, key)).json()["detail"]


async def test_without_the_listening_connection_no_key_is_remembered(
        db_url: str, amqp_url: str) -> None:
    async with remembered_then_revoked_unannounced(db_url, amqp_url) as (api, key):
        terminated = await api.pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE $1",
            f"LISTEN %{KEYS_CHANNEL}%")
        assert terminated == 1
        await wait_for(lambda: not _listening(api), 5, interval=0.01,
                       what="the API to notice the loss")
        # Nothing is remembered now: the revocation is seen without its announcement.
        r = await api.client.get("/api/jobs", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
        await wait_for(lambda: _listening(api), 10, what="the API to listen again")


async def test_a_key_is_remembered_no_longer_than_it_is_valid(db_url: str,
                                                               amqp_url: str) -> None:
    async with serving(db_url, amqp_url, API_KEY_CACHE_SECONDS=300) as api:
        row, key = await api.app.state.service.create_key("test", "brief", "viewer")
        await api.pool.execute("UPDATE api_keys SET expires_at = now() + interval '1 second'"
                               " WHERE id = $1", row["id"])

        async def accepted() -> bool:
            return await _status_with(api, key) == 200
        await wait_for(accepted, 2, interval=0.02, what="the key to be accepted (and remembered)")
        r = await _refused(api, key, within_s=3)
        assert "expired" in r.json()["detail"]


async def test_a_role_change_or_deletion_of_a_remembered_key_is_seen_at_once(
        db_url: str, amqp_url: str) -> None:
    async with serving(db_url, amqp_url, API_KEY_CACHE_SECONDS=300) as api:
        row, key = await api.app.state.service.create_key("test", "demoted", "admin")
        headers = {"Authorization": f"Bearer {key}"}
        assert (await api.client.post("/api/jobs", json=noop_job("by-admin"), headers=headers)
                ).status_code == 201
        await api.pool.execute("UPDATE api_keys SET role = 'viewer' WHERE id = $1", row["id"])

        async def forbidden() -> bool:
            r = await api.client.post("/api/jobs", json=noop_job("by-viewer"), headers=headers)
            return r.status_code == 403
        await wait_for(forbidden, 2, interval=0.02, what="the role change to be seen")
        await api.pool.execute("DELETE FROM api_keys WHERE id = $1", row["id"])
        assert "invalid" in (await _refused(api, key)).json()["detail"]


async def test_every_column_that_grants_access_is_announced(api: Api) -> None:
    """A column added to api_keys later must be added to the trigger (or listed here)."""
    announced = {r["c"] for r in await api.pool.fetch(
        "SELECT event_object_column AS c FROM information_schema.triggered_update_columns"
        " WHERE trigger_name = 'api_keys_changed'")}
    columns = {r["c"] for r in await api.pool.fetch(
        "SELECT column_name AS c FROM information_schema.columns WHERE table_name = 'api_keys'")}
    assert announced == columns - {"id", "created_at", "last_used_at"}


async def test_a_listening_connection_that_stops_hearing_is_noticed(
        db_url: str, amqp_url: str) -> None:
    """Its socket open but its server process stopped: the ping does not come back, so
    the API stops remembering keys, and listens again once the server is back."""
    async with serving(db_url, amqp_url, API_KEY_CACHE_SECONDS=300) as api:
        pid = await api.pool.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE $1", f"LISTEN %{KEYS_CHANNEL}%")
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            await wait_for(lambda: not _listening(api), CHECK_EVERY_S + PING_TIMEOUT_S + 3,
                           interval=0.05, what="the API to notice the silent connection")
        finally:
            os.kill(pid, signal.SIGCONT)
        await wait_for(lambda: _listening(api), 15, what="the API to listen again")


async def test_probes_need_no_key(api: Api) -> None:
    health = await api.get("/health", None)
    assert health.status_code == 200
    assert health.json()["status"] == "healthy" and health.json()["service"] == "api"
    ready = await api.get("/ready", None)
    assert ready.status_code == 200, ready.text
    metrics = await api.get("/metrics", None)
    assert metrics.status_code == 200
    assert "sundial_runs" in metrics.text and "sundial_workers_online" in metrics.text


# --- jobs ---------------------------------------------------------------------------------------


async def test_create_get_update_delete_a_job_by_id_or_name(api: Api) -> None:
    r = await api.post("/api/jobs", json=noop_job(payload={"a": 1}))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["max_attempts"] == api.app.state.settings.max_retry_attempts
    assert (await api.get(f"/api/jobs/{job['id']}")).json()["name"] == "hb"
    assert (await api.get("/api/jobs/hb")).json()["id"] == job["id"]
    r = await api.call("PATCH", "/api/jobs/hb", json={"priority": 5, "description": "beat"})
    assert r.status_code == 200 and r.json()["priority"] == 5
    listed = (await api.get("/api/jobs", "viewer")).json()
    assert [j["name"] for j in listed] == ["hb"]

    dup = await api.post("/api/jobs", json=noop_job())
    assert dup.status_code == 409 and "hb" in dup.json()["detail"]

    assert (await api.call("DELETE", "/api/jobs/hb")).status_code == 200
    assert (await api.get("/api/jobs/hb")).status_code == 404
    actions = [r["action"] for r in await api.pool.fetch(
        "SELECT action FROM audit_log ORDER BY id")]
    assert actions[-3:] == ["job.create", "job.update", "job.delete"]


async def test_a_job_and_its_schedules_are_created_together(api: Api) -> None:
    body = noop_job(schedules=[{"kind": "interval", "interval_seconds": 10},
                               {"kind": "cron", "cron": "*/5 * * * *",
                                "timezone": "Europe/Paris"}])
    r = await api.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    schedules = r.json()["schedules"]
    assert [s["kind"] for s in schedules] == ["interval", "cron"]
    assert all(s["next_run_at"] for s in schedules)

    bad = noop_job("other", schedules=[{"kind": "interval", "interval_seconds": 10},
                                       {"kind": "cron", "cron": "61 * * * *"}])
    r = await api.post("/api/jobs", json=bad)
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "schedules[1].cron"
    assert await api.count("jobs") == 1 and await api.count("schedules") == 2


async def test_secret_fields_are_encrypted_and_never_returned(api: Api) -> None:
    body = {"name": "hook", "handler": "http",
            "payload": {"url": "https://1.1.1.1/hook", "method": "POST",
                        "headers": {"Authorization": "Bearer s3cret", "X-Api": "k3y",
                                    "Accept": "text/plain"},
                        "secret_headers": ["X-Api"], "secrets": {"token": "t0ken"}}}
    r = await api.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    for text in (r.text, (await api.get("/api/jobs/hook")).text,
                 (await api.get("/api/jobs")).text):
        assert "s3cret" not in text and "k3y" not in text and "t0ken" not in text
    payload = r.json()["payload"]
    assert payload["headers"] == {"Authorization": "***", "X-Api": "***", "Accept": "text/plain"}
    row = await api.pool.fetchrow("SELECT payload, secret_payload FROM jobs")
    assert "s3cret" not in str(row["payload"]) and "s3cret" not in row["secret_payload"]
    from sundial.core.secrets import decrypt_fields, merge_secrets
    merged = merge_secrets(row["payload"], decrypt_fields(ENCRYPTION_KEY, row["secret_payload"]))
    assert merged["headers"]["Authorization"] == "Bearer s3cret"
    assert merged["secrets"] == {"token": "t0ken"}

    # Sending the masked payload back keeps the stored secrets.
    payload["headers"]["Accept"] = "application/json"
    r = await api.call("PATCH", "/api/jobs/hook", json={"payload": payload})
    assert r.status_code == 200, r.text
    row = await api.pool.fetchrow("SELECT payload, secret_payload FROM jobs")
    merged = merge_secrets(row["payload"], decrypt_fields(ENCRYPTION_KEY, row["secret_payload"]))
    assert merged["headers"]["Authorization"] == "Bearer s3cret"
    assert merged["headers"]["Accept"] == "application/json"
    audit = await api.pool.fetch("SELECT details::text FROM audit_log")
    assert not any("s3cret" in a[0] for a in audit)


async def test_secrets_without_an_encryption_key_are_refused(db_url: str, amqp_url: str) -> None:
    app = create_app(api_settings(db_url, amqp_url, ENCRYPTION_KEY=""))
    async with app.router.lifespan_context(app):
        _, key = await app.state.service.create_key("test", "admin", "admin")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://api") as client:
            r = await client.post("/api/jobs", headers={"Authorization": f"Bearer {key}"},
                                  json=noop_job(payload={"secrets": {"x": "y"}}))
        assert r.status_code == 422
        assert "ENCRYPTION_KEY" in r.json()["detail"][0]["reason"]
        assert await app.state.pool.fetchval("SELECT count(*) FROM jobs") == 0


# --- validation --------------------------------------------------------------------------------

IN_THE_PAST = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

INVALID_JOBS = [
    ("unknown handler", {"name": "x", "handler": "teleport"}, "handler", "teleport"),
    ("unknown field", {"name": "x", "handler": "noop", "colour": "red"}, "colour", "red"),
    ("bad name", {"name": "no spaces", "handler": "noop"}, "name", "no spaces"),
    ("bad cron", noop_job(schedules=[{"kind": "cron", "cron": "61 * * * *"}]),
     "schedules[0].cron", "61 * * * *"),
    ("unknown time zone", noop_job(schedules=[{"kind": "cron", "cron": "* * * * *",
                                              "timezone": "Mars/Olympus"}]),
     "schedules[0].timezone", "Mars/Olympus"),
    ("interval <= 0", noop_job(schedules=[{"kind": "interval", "interval_seconds": 0}]),
     "schedules[0].interval_seconds", 0),
    ("once in the past", noop_job(schedules=[{"kind": "once", "run_at": IN_THE_PAST}]),
     "schedules[0].run_at", IN_THE_PAST),
    ("payload too large", noop_job(payload={"blob": "x" * 70_000}), "payload", None),
    ("http without url", {"name": "x", "handler": "http", "payload": {}}, "payload.url", None),
    ("http to a private address", {"name": "x", "handler": "http",
                                   "payload": {"url": "http://169.254.169.254/latest"}},
     "payload.url", "http://169.254.169.254/latest"),
    ("http with another scheme", {"name": "x", "handler": "http",
                                  "payload": {"url": "file:///etc/passwd"}},
     "payload.url", "file:///etc/passwd"),
    ("command as a string", {"name": "x", "handler": "command", "payload": {"argv": "ls -l"}},
     "payload.argv", "ls -l"),
    ("command setting PATH", {"name": "x", "handler": "command",
                              "payload": {"argv": ["echo"], "env": {"PATH": "/tmp/bin"}}},
     "payload.env", "PATH"),
    ("command preloading a library", {"name": "x", "handler": "command",
                                      "payload": {"argv": ["echo"],
                                                  "env": {"TZ": "UTC", "LD_PRELOAD": "/tmp/x.so"}}},
     "payload.env", "LD_PRELOAD"),
    ("command by a relative path", {"name": "x", "handler": "command",
                                    "payload": {"argv": ["./backup.sh"]}},
     "payload.argv[0]", "./backup.sh"),
    ("backoff max below backoff", noop_job(retry_backoff_seconds=60,
                                           retry_backoff_max_seconds=5),
     "retry_backoff_max_seconds", 5),
]


@pytest.mark.parametrize(("case", "body", "field", "value"), INVALID_JOBS,
                         ids=[c[0] for c in INVALID_JOBS])
async def test_each_validation_error_names_field_value_and_reason(
        api: Api, case: str, body: dict, field: str, value: Any) -> None:
    r = await api.post("/api/jobs", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()["detail"][0]
    assert problem["field"] == field, problem
    if value is not None:
        assert problem["value"] == value, problem
    assert problem["reason"]
    assert await api.count("jobs") == 0 and await api.count("schedules") == 0
    assert await api.pool.fetchval("SELECT count(*) FROM audit_log WHERE target_type <> 'api_key'") == 0


async def test_malformed_requests_get_4xx_not_500(api: Api) -> None:
    cases = [
        ("POST", "/api/jobs", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("POST", "/api/jobs", {"content": b"[" * 50_000, "headers": {"content-type": "application/json"}}),
        ("POST", "/api/jobs", {"json": ["a", "list"]}),
        ("POST", "/api/jobs", {"json": noop_job("nul", description="a\x00b")}),
        ("POST", "/api/jobs", {"json": noop_job("nul", payload={"k": "a\x00b"})}),
        ("GET", "/api/runs/99999999999999999999999", {}),
        ("GET", "/api/runs?since=yesterday", {}),
        ("GET", "/api/runs?status=lost", {}),
        ("GET", "/api/jobs/%00", {}),
        ("GET", "/api/schedules/1/preview?count=100000", {}),
    ]
    for method, url, kwargs in cases:
        r = await api.call(method, url, **kwargs)
        assert 400 <= r.status_code < 500, (url, r.status_code, r.text)
    big = await api.post("/api/jobs", content=b"x" * 300_000,
                         headers={"content-type": "application/json"})
    assert big.status_code == 413



# --- schedules --------------------------------------------------------------------------------


async def test_schedule_create_pause_resume_preview_update_delete(api: Api) -> None:
    job = (await api.post("/api/jobs", json=noop_job())).json()
    r = await api.post("/api/schedules", json={"job_id": job["id"], "kind": "cron",
                                               "cron": "0 9 * * *", "timezone": "Europe/Paris"})
    assert r.status_code == 201, r.text
    schedule = r.json()
    sid = schedule["id"]
    assert schedule["job"] == "hb" and schedule["next_run_at"]

    preview = (await api.get(f"/api/schedules/{sid}/preview?count=3", "viewer")).json()
    times = [datetime.fromisoformat(t) for t in preview["times"]]
    assert len(times) == 3 and times == sorted(times)
    assert {t.astimezone(ZoneInfo("Europe/Paris")).hour for t in times} == {9}

    paused = (await api.post(f"/api/schedules/{sid}/pause")).json()
    assert paused["is_active"] is False
    resumed = (await api.post(f"/api/schedules/{sid}/resume")).json()
    assert resumed["is_active"] is True and resumed["next_run_at"]

    r = await api.call("PATCH", f"/api/schedules/{sid}", json={"kind": "interval",
                                                                "interval_seconds": 30})
    assert r.status_code == 200, r.text
    assert r.json()["cron"] is None and r.json()["interval_seconds"] == 30
    r = await api.call("PATCH", f"/api/schedules/{sid}", json={"timezone": "Nowhere/Land"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "timezone"
    assert (await api.get(f"/api/schedules/{sid}")).json()["timezone"] == "Europe/Paris"

    assert (await api.call("DELETE", f"/api/schedules/{sid}")).status_code == 200
    assert (await api.get(f"/api/schedules/{sid}")).status_code == 404
    r = await api.post("/api/schedules", json={"job_id": 999, "kind": "interval",
                                               "interval_seconds": 5})
    assert r.status_code == 404


# The scheduler's own validation (sundial.core.schedule.validate), as the API reports it.
SCHEDULER_REFUSES = [
    pytest.param({"kind": "interval", "interval_seconds": 1e-6}, "interval_seconds", 1e-6,
                 "from 1 to 316224000 (ten years); for work more often than once a second, "
                 "loop inside one run", id="interval-below-the-minimum"),
    pytest.param({"kind": "cron", "cron": "* * * * *", "timezone": "Europe"}, "timezone",
                 "Europe", "unknown time zone; use an IANA name", id="zone-a-folder-of-zones"),
    pytest.param({"kind": "cron", "cron": "0 0 30 2 *"}, "cron", "0 0 30 2 *",
                 "a day that exists", id="cron-on-a-day-that-never-exists"),
    pytest.param({"kind": "cron", "cron": "0 0 1 1 *", "start_at": "2030-02-01T00:00:00Z",
                  "end_at": "2030-03-01T00:00:00Z"}, "end_at", "2030-03-01T00:00:00+00:00",
                 "the schedule would never fire", id="cron-with-no-slot-within-its-bounds"),
]


@pytest.mark.parametrize(("fields", "field", "value", "reason"), SCHEDULER_REFUSES)
async def test_a_schedule_the_scheduler_could_not_plan_is_refused_with_the_fix(
        api: Api, fields: dict, field: str, value: Any, reason: str) -> None:
    job = (await api.post("/api/jobs", json=noop_job())).json()
    r = await api.post("/api/schedules", json={"job_id": job["id"], **fields})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert (problem["field"], problem["value"]) == (field, value), problem
    assert reason in problem["reason"], problem
    assert await api.count("schedules") == 0


async def test_a_schedule_set_aside_by_the_scheduler_shows_why_and_a_fix_puts_it_back(
        api: Api) -> None:
    from sundial.scheduler.tick import tick

    job = (await api.post("/api/jobs", json=noop_job())).json()
    sid = await api.pool.fetchval(
        "INSERT INTO schedules (job_id, kind, cron, next_run_at) "
        "VALUES ($1, 'cron', '61 * * * *', now() - interval '1 s') RETURNING id", job["id"])
    assert (await tick(api.pool, batch_size=10, look_ahead_s=0, lease_s=30)).set_aside == 1

    shown = (await api.get(f"/api/schedules/{sid}", "viewer")).json()
    assert shown["set_aside_at"] and shown["is_active"] is False
    assert shown["last_error"].startswith(
        f"schedule {sid}: cron '61 * * * *': minute '61' must be 0-59")
    listed = (await api.get(f"/api/jobs/{job['id']}", "viewer")).json()["schedules"]
    assert [s["set_aside_at"] for s in listed] == [shown["set_aside_at"]]
    preview = await api.get(f"/api/schedules/{sid}/preview?count=3", "viewer")
    assert preview.status_code == 422 and preview.json()["detail"][0]["field"] == "cron"
    resumed = await api.post(f"/api/schedules/{sid}/resume")
    assert resumed.status_code == 422, "resuming without a fix says what is wrong"

    fixed = await api.call("PATCH", f"/api/schedules/{sid}", json={"cron": "1 * * * *"})
    assert fixed.status_code == 200, fixed.text
    back = fixed.json()
    assert (back["is_active"], back["set_aside_at"], back["last_error"]) == (True, None, None)
    assert back["next_run_at"]


async def test_me_and_the_preview_of_an_unsaved_schedule(api: Api) -> None:
    assert (await api.get("/api/me", "viewer")).json()["role"] == "viewer"
    assert (await api.get("/api/me")).json()["role"] == "admin"

    spec = {"kind": "cron", "cron": "0 9 * * 1", "timezone": "Europe/Paris"}
    r = await api.post("/api/schedules/preview?count=4", json=spec)
    assert r.status_code == 200, r.text
    times = [datetime.fromisoformat(t) for t in r.json()["times"]]
    paris = [t.astimezone(ZoneInfo("Europe/Paris")) for t in times]
    assert len(times) == 4 and {(t.weekday(), t.hour, t.minute) for t in paris} == {(0, 9, 0)}

    bad = await api.post("/api/schedules/preview", json={**spec, "cron": "61 9 * * 1"})
    assert bad.status_code == 422 and "cron" in bad.text and "61" in bad.text
    assert (await api.post("/api/schedules/preview", "viewer", json=spec)).status_code == 403
    assert (await api.get("/api/schedules")).json() == [], "a preview writes nothing"


async def test_schedule_writes_wake_the_scheduler(api: Api, db_url: str) -> None:
    import asyncpg

    listener = await asyncpg.connect(db_url)
    woken: list[str] = []
    await listener.add_listener("sundial_scheduler", lambda *args: woken.append(args[-1]))
    try:
        job = (await api.post("/api/jobs", json=noop_job())).json()
        await api.post("/api/schedules", json={"job_id": job["id"], "kind": "interval",
                                               "interval_seconds": 5})
        await wait_for(lambda: woken, timeout=5, what="a NOTIFY on sundial_scheduler")
        assert (await api.post("/api/scheduler/trigger")).status_code == 202
        flag = await api.pool.fetchval(
            "SELECT value FROM system_settings WHERE key = 'scheduler_trigger_requested'")
        assert flag == "true"
    finally:
        await listener.close()


# --- runs, scheduler status, stats -----------------------------------------------------------


async def test_runs_filter_and_paginate_by_cursor(api: Api) -> None:
    await api.post("/api/jobs", json=noop_job("a", queue="nobody-listens"))
    await api.post("/api/jobs", json=noop_job("b", queue="nobody-listens"))
    ids = [(await api.post(f"/api/jobs/{name}/trigger")).json()["run_id"]
           for name in ("a", "b", "a", "a", "b")]
    pages, cursor = [], None
    while True:
        params = {"job": "a", "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.get("/api/runs", "viewer", params=params)).json()
        pages.append([r["id"] for r in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [[ids[3], ids[2]], [ids[0]]]
    assert all(r["triggered_by"] == "admin-key"
               for r in (await api.get("/api/runs")).json()["items"])
    queued = (await api.get("/api/runs", params={"status": ["queued", "running"]})).json()
    assert len(queued["items"]) == 5
    assert (await api.get("/api/runs", params={"status": "succeeded"})).json()["items"] == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await api.get("/api/runs", params={"since": future})).json()["items"] == []
    assert (await api.get("/api/runs", params={"job": "zzz"})).status_code == 404


async def test_cancel_a_queued_run_at_once_and_refuse_final_ones(api: Api) -> None:
    await api.post("/api/jobs", json=noop_job("idle", queue="nobody-listens"))
    run_id = (await api.post("/api/jobs/idle/trigger")).json()["run_id"]
    run = (await api.get(f"/api/runs/{run_id}")).json()
    assert run["published_at"], "the trigger publishes the run itself"
    r = await api.post(f"/api/runs/{run_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (await api.get(f"/api/runs/{run_id}")).json()["finished_at"]
    again = await api.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    assert (await api.post("/api/runs/424242/cancel")).status_code == 404
    retry = await api.post(f"/api/runs/{run_id}/retry")
    assert retry.status_code == 202
    new = (await api.get(f"/api/runs/{retry.json()['run_id']}")).json()
    assert new["status"] == "queued" and new["trigger"] == "manual"
    assert (await api.post(f"/api/runs/{new['id']}/retry")).status_code == 409


async def test_only_a_run_that_did_not_succeed_can_be_retried(api: Api) -> None:
    await api.post("/api/jobs", json=noop_job("idle", queue="nobody-listens"))
    job_id = (await api.get("/api/jobs/idle")).json()["id"]
    ended = {status: await insert_runs(api, job_id, status) for status in
             ("succeeded", "skipped", "failed", "dead", "timed_out", "cancelled")}
    for status in ("succeeded", "skipped"):
        [run_id] = ended[status]
        refused = await api.post(f"/api/runs/{run_id}/retry")
        assert refused.status_code == 409, refused.text
        assert refused.json()["detail"] == (
            f"run {run_id} {status}; only a failed, dead, timed_out or cancelled run can be "
            "retried (to run job 'idle' again, trigger it)")
    for status in ("failed", "dead", "timed_out", "cancelled"):
        [run_id] = ended[status]
        assert (await api.post(f"/api/runs/{run_id}/retry")).status_code == 202, status
    assert await api.count("runs") == 6 + 4


async def test_a_run_has_one_live_retry_however_often_it_is_retried(api: Api) -> None:
    await api.post("/api/jobs", json=noop_job("idle", queue="nobody-listens"))
    job_id = (await api.get("/api/jobs/idle")).json()["id"]
    failed = await insert_runs(api, job_id, "failed", 2)

    first = (await api.post("/api/runs/retry", json={"job": "idle"})).json()
    assert first["matched"] == 2 and len(first["queued"]) == 2
    again = (await api.post("/api/runs/retry", json={"job": "idle"})).json()
    assert again["matched"] == 2 and again["queued"] == []
    refused = await api.post(f"/api/runs/{failed[0]}/retry")
    assert refused.status_code == 409, refused.text
    live = await api.pool.fetchval("SELECT id FROM runs WHERE retry_of = $1", failed[0])
    assert refused.json()["detail"] == (f"run {failed[0]} has a retry queued already: run "
                                        f"{live}; retry that one if it fails")

    # The retries end: a succeeded one settles its run; a failed one may be retried, once,
    # from the original or from itself (one chain).
    await api.pool.execute("UPDATE runs SET status = CASE WHEN retry_of = $1 THEN 'succeeded' "
                           "ELSE 'failed' END, finished_at = now() WHERE retry_of IS NOT NULL",
                           failed[0])
    assert (await api.post(f"/api/runs/{failed[0]}/retry")).status_code == 409
    third = (await api.post("/api/runs/retry", json={"job": "idle", "status": ["failed"]})).json()
    assert third["matched"] == 3 and len(third["queued"]) == 1
    assert await api.pool.fetchval("SELECT retry_of FROM runs WHERE id = $1",
                                   third["queued"][0]) == failed[1]
    assert await api.count("runs") == 2 + 2 + 1


async def insert_runs(api: Api, job_id: int, status: str, count: int = 1) -> list[int]:
    """`count` runs of the job in `status`, written as a worker would have left them."""
    rows = await api.pool.fetch(
        "INSERT INTO runs (job_id, scheduled_for, trigger, status, finished_at) "
        "SELECT $1, now(), 'manual', $2, CASE WHEN $2 NOT IN ('queued', 'running') "
        "THEN now() END FROM generate_series(1, $3) RETURNING id", job_id, status, count)
    return [r["id"] for r in rows]


async def test_runs_are_cancelled_and_retried_in_bulk_by_the_list_filters(api: Api) -> None:
    for name, queue in (("a", "reports"), ("b", "reports"), ("c", "mail")):
        await api.post("/api/jobs", json=noop_job(name, queue=queue))
    jobs = {j["name"]: j["id"] for j in (await api.get("/api/jobs")).json()}
    queued_a = await insert_runs(api, jobs["a"], "queued", 3)
    running_b = await insert_runs(api, jobs["b"], "running", 2)
    queued_c = await insert_runs(api, jobs["c"], "queued", 2)
    failed_a = await insert_runs(api, jobs["a"], "failed", 2)
    await insert_runs(api, jobs["a"], "succeeded", 4)

    # The list filters by queue and counts what the filters select, on every page.
    page = (await api.get("/api/runs", "viewer", params={"queue": "reports", "limit": 2})).json()
    assert page["total"] == 11 and len(page["items"]) == 2 and page["next_cursor"]
    older = (await api.get("/api/runs", params={"queue": "reports", "limit": 2,
                                                "cursor": page["next_cursor"]})).json()
    assert older["total"] == 11
    assert (await api.get("/api/runs", params={"queue": "mail"})).json()["total"] == 2

    # A dry run counts, changes nothing; a viewer may not even count.
    dry = await api.post("/api/runs/cancel", json={"queue": "reports", "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json() == {"dry_run": True, "matched": 5, "run_ids": sorted(
        queued_a + running_b, reverse=True), "cancelled": 0, "stopping": 0}
    assert await api.pool.fetchval("SELECT count(*) FROM runs WHERE cancel_requested") == 0
    assert (await api.post("/api/runs/cancel", "viewer", json={"dry_run": True})).status_code == 403

    # Cancel: queued runs end at once, running ones are asked to stop; other queues wait.
    done = (await api.post("/api/runs/cancel", json={"queue": "reports"})).json()
    assert (done["matched"], done["cancelled"], done["stopping"]) == (5, 3, 2)
    states = dict(await api.pool.fetch("SELECT id, status FROM runs WHERE id = ANY($1)",
                                       queued_a + running_b + queued_c))
    assert [states[i] for i in queued_a] == ["cancelled"] * 3
    assert [states[i] for i in running_b + queued_c] == ["running"] * 2 + ["queued"] * 2
    audit = await api.pool.fetchrow("SELECT actor, details FROM audit_log "
                                    "WHERE action = 'runs.cancel'")
    assert audit["actor"] == "admin-key" and audit["details"]["filters"] == {"queue": "reports"}

    # Retry: a new run for each failed run of job a (the cancelled ones too unless
    # `status` says otherwise); a succeeded run is never retried.
    retried = (await api.post("/api/runs/retry", json={"job": "a", "status": ["failed"]})).json()
    assert retried["matched"] == 2 and sorted(retried["run_ids"]) == failed_a
    new = await api.pool.fetch("SELECT status, trigger, triggered_by, published_at "
                               "FROM runs WHERE id = ANY($1)", retried["queued"])
    assert len(new) == 2 and all(r["status"] == "queued" and r["trigger"] == "manual"
                                 and r["triggered_by"] == "admin-key" and r["published_at"]
                                 for r in new)
    everything = (await api.post("/api/runs/retry", json={"job": "a", "dry_run": True})).json()
    assert everything["matched"] == 5  # 2 failed + 3 cancelled

    # Statuses that cannot be cancelled or retried are refused by name.
    for path, status in (("/api/runs/cancel", "failed"), ("/api/runs/retry", "succeeded")):
        bad = await api.post(path, json={"status": [status]})
        assert bad.status_code == 422, bad.text
        [problem] = bad.json()["detail"]
        assert problem["field"] == "status[0]" and problem["value"] == status


async def test_a_bulk_action_beyond_the_cap_changes_nothing_and_says_how_many(api: Api) -> None:
    await api.post("/api/jobs", json=noop_job("flood", queue="nobody-listens"))
    job_id = (await api.get("/api/jobs/flood")).json()["id"]
    await insert_runs(api, job_id, "queued", 1003)
    r = await api.post("/api/runs/cancel", json={"job": "flood"})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["field"] == "filters" and problem["value"] == 1003
    assert problem["reason"].startswith("select 1003 runs, 3 more than the 1000 one request "
                                        "may change; narrow them")
    assert await api.pool.fetchval("SELECT count(*) FROM runs WHERE status = 'queued'") == 1003
    assert (await api.get("/api/runs", params={"limit": 1})).json()["total"] == 1003
    # Narrowed to the cap, it goes through.
    await api.pool.execute("UPDATE runs SET status = 'running' WHERE id IN "
                           "(SELECT id FROM runs ORDER BY id LIMIT 3)")
    done = (await api.post("/api/runs/cancel", json={"job": "flood", "status": ["queued"]})).json()
    assert done["matched"] == done["cancelled"] == 1000


async def test_scheduler_status_reports_the_zone_rules_in_use(api: Api) -> None:
    import tzdata

    from sundial.core.sql import q

    await api.pool.execute(q("register_instance"), "old-image", "h", 1, "2020a")
    status = (await api.get("/api/scheduler/status", "viewer")).json()
    assert status["tzdata"] == tzdata.IANA_VERSION
    assert [i["tzdata"] for i in status["instances"]] == ["2020a"]
    schemas = (await api.get("/openapi.json", None)).json()["components"]["schemas"]
    assert "tzdata" in schemas["SchedulerStatus"]["required"]
    assert "tzdata" in schemas["SchedulerInstance"]["properties"]


async def test_a_blocked_broker_shows_in_the_status_and_the_metrics(api: Api) -> None:
    """A scheduler that RabbitMQ blocks (a memory or disk alarm) says so in its status row:
    /api/scheduler/status and /metrics report it while the instance runs, not after. The
    API's /metrics serves its own figures only, even in a process that has also loaded the
    scheduler (whose gauge of the same name would make Prometheus refuse the scrape)."""
    import sundial.scheduler.main  # noqa: F401  (registers the scheduler's own gauge)
    from sundial.core.sql import q

    def gauge(text: str) -> str:
        [line] = [line for line in text.splitlines()
                  if line.startswith("sundial_scheduler_broker_blocked ")]
        return line

    since = datetime.now(UTC) - timedelta(seconds=3)
    for name, blocked in (("calm", None), ("alarmed", since)):
        await api.pool.execute(q("record_status"), name, 1.0, 1, 0, 0, "h", 1, "2026a",
                               blocked, "low on memory" if blocked else None)
    status = (await api.get("/api/scheduler/status", "viewer")).json()
    assert status["broker_blocked"] is True
    by_id = {i["id"]: i for i in status["instances"]}
    assert by_id["alarmed"]["broker_blocked_reason"] == "low on memory"
    assert datetime.fromisoformat(by_id["alarmed"]["broker_blocked_since"]) == since
    assert by_id["calm"]["broker_blocked_since"] is None
    assert gauge((await api.get("/metrics", None)).text).endswith(" 1.0")

    # Unblocked: the next status row clears it.
    await api.pool.execute(q("record_status"), "alarmed", 1.0, 2, 0, 0, "h", 1, "2026a",
                           None, None)
    assert (await api.get("/api/scheduler/status")).json()["broker_blocked"] is False
    assert gauge((await api.get("/metrics", None)).text).endswith(" 0.0")

    # An instance that stopped passing long ago no longer counts as blocked.
    await api.pool.execute(q("record_status"), "alarmed", 1.0, 3, 0, 0, "h", 1, "2026a",
                           since, "low on memory")
    await api.pool.execute("UPDATE scheduler_instances SET last_tick_at = now() - interval '1 day'")
    assert (await api.get("/api/scheduler/status")).json()["broker_blocked"] is False
    assert gauge((await api.get("/metrics", None)).text).endswith(" 0.0")


async def test_scheduler_status_and_stats(api: Api) -> None:
    status = (await api.get("/api/scheduler/status", "viewer")).json()
    assert status["status"] == "unknown" and status["last_run"] is None
    await api.pool.execute(
        "INSERT INTO system_settings (key, value) VALUES ('scheduler_last_run', $1)",
        (datetime.now(UTC) - timedelta(seconds=5)).isoformat())
    assert (await api.get("/api/scheduler/status")).json()["status"] == "running"
    await api.pool.execute("UPDATE system_settings SET value = $1 WHERE key = 'scheduler_last_run'",
                           (datetime.now(UTC) - timedelta(hours=1)).isoformat())
    assert (await api.get("/api/scheduler/status")).json()["status"] == "stale"

    await api.post("/api/jobs", json=noop_job("on", queue="nobody-listens"))
    await api.post("/api/jobs", json=noop_job("off", enabled=False))
    run_id = (await api.post("/api/jobs/on/trigger")).json()["run_id"]
    await api.pool.execute("UPDATE runs SET status = 'succeeded' WHERE id = $1", run_id)
    stats = (await api.get("/api/stats", "viewer")).json()
    assert stats["jobs"] == {"total": 2, "enabled": 1, "disabled": 1}
    assert stats["executions"]["total"] == 1 and stats["executions"]["success_rate"] == 1.0


async def test_a_secret_that_changes_shape_is_replaced_or_refused_by_name(api: Api) -> None:
    from sundial.core.secrets import decrypt_fields

    body = noop_job("shape", payload={"secrets": {"token": "abc"}})
    assert (await api.post("/api/jobs", json=body)).status_code == 201

    # "***" keeps a stored value only where one exists: the stored token is a string.
    for masked in ({"a": "***"}, {"b": "***"}, {"a": {"b": "***"}}):
        r = await api.call("PATCH", "/api/jobs/shape",
                           json={"payload": {"secrets": {"token": masked}}})
        assert r.status_code == 422, (masked, r.text)
        assert "payload.secrets.token." in r.text and "no stored secret" in r.text
        assert "abc" not in r.text

    r = await api.call("PATCH", "/api/jobs/shape",
                       json={"payload": {"secrets": {"token": {"a": {"b": 1}}}}})
    assert r.status_code == 200, r.text
    assert "abc" not in r.text and r.json()["payload"]["secrets"] == {"token": "***"}
    stored = await api.pool.fetchval("SELECT secret_payload FROM jobs WHERE name = 'shape'")
    assert decrypt_fields(ENCRYPTION_KEY, stored) == {"secrets": {"token": {"a": {"b": 1}}}}


async def test_every_request_is_logged_with_its_key_name_never_the_key(api: Api) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as events:
        assert (await api.get("/api/jobs", "viewer")).status_code == 200
        assert (await api.get("/api/jobs?limit=1", None)).status_code == 401
        assert (await api.post("/api/jobs", json={"name": "x", "handler": "nope"})).status_code == 422
        assert (await api.get("/health", None)).status_code == 200
    requests = [e for e in events if e["event"] == "http.request"]
    assert [(e["method"], e["path"], e["status"], e["key"], e["log_level"]) for e in requests] == [
        ("GET", "/api/jobs", 200, "viewer-key", "info"),
        ("GET", "/api/jobs", 401, None, "info"),
        ("POST", "/api/jobs", 422, "admin-key", "info"),
        ("GET", "/health", 200, None, "debug"),
    ]
    assert all(e["duration_ms"] >= 0 for e in requests)
    assert not any(key in repr(events) for key in api.keys.values())


async def test_job_and_schedule_lists_give_their_total_in_a_header(api: Api) -> None:
    for i in range(3):
        await api.post("/api/jobs", json=noop_job(f"j{i}", enabled=i != 2, schedules=[
            {"kind": "interval", "interval_seconds": 60 + i}]))
    jobs = await api.get("/api/jobs", "viewer", params={"limit": 1, "offset": 1})
    assert jobs.headers["x-total-count"] == "3" and len(jobs.json()) == 1
    assert (await api.get("/api/jobs", params={"enabled": "false"})).headers["x-total-count"] == "1"
    schedules = await api.get("/api/schedules", params={"job": "j1", "limit": 1})
    assert schedules.headers["x-total-count"] == "1" and len(schedules.json()) == 1
    assert (await api.get("/api/schedules", params={"offset": 10})).headers["x-total-count"] == "3"
    spec = (await api.get("/openapi.json", None)).json()
    assert "X-Total-Count" in spec["paths"]["/api/jobs"]["get"]["responses"]["200"]["headers"]

async def test_a_write_that_reaches_a_read_only_host_is_503_and_the_next_one_succeeds(
        db_url: str, amqp_url: str) -> None:
    """After a failover a connection may still reach the old primary, read-only: the
    request gets 503 with Retry-After (not a 500), and the retry a fresh connection."""
    async with serving(db_url, amqp_url, DATABASE_POOL_MIN=1, DATABASE_POOL_MAX=1) as api:
        async with api.pool.acquire() as conn:
            await conn.execute("SET SESSION default_transaction_read_only = on")
        refused = await api.post("/api/jobs", json=noop_job("after-failover"))
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "5"
        assert refused.json() == {"detail": "the database is unavailable; try again"}
        created = await api.post("/api/jobs", json=noop_job("after-failover"))
        assert created.status_code == 201, created.text


async def test_the_api_serves_with_several_hosts_in_database_url(db_url: str,
                                                                amqp_url: str) -> None:
    async with serving(several_hosts(db_url, free_port()), amqp_url) as api:
        created = await api.post("/api/jobs", json=noop_job("ha"))
        assert created.status_code == 201, created.text
        assert (await api.get("/ready")).status_code == 200
