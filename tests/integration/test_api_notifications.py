"""/api/notifications: channels and rules managed by admins, read by viewers without
secrets, checked on write (422 naming the field), and "send a test" delivered by the
schedulers' notifier to a local receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sundial.core.secrets import decrypt_fields
from sundial.scheduler.notifier import Notifier
from sundial.scheduler.settings import SchedulerSettings
from tests.integration.test_api import ENCRYPTION_KEY, Api, serving

BASE = "/api/notifications"


@pytest.fixture
async def api(db_url: str, amqp_url: str) -> AsyncIterator[Api]:
    async with serving(db_url, amqp_url, WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.1/32") as api:
        yield api


def problem(response) -> dict:
    assert response.status_code == 422, response.text
    return response.json()["detail"][0]


async def test_channels_keep_their_secrets_encrypted_and_never_show_them(api: Api) -> None:
    r = await api.post(f"{BASE}/channels", json={
        "name": "hooks", "kind": "webhook", "url": "http://user:pw@127.0.0.1:9/hook"})
    assert r.status_code == 201, r.text
    created = r.json()
    generated = created["signing_secret"]
    assert len(generated) >= 32 and created["has_signing_secret"] is True
    assert created["config"] == {"url": "http://user:***@127.0.0.1:9/hook"}
    token = await api.pool.fetchval("SELECT secret_config FROM notification_channels")
    assert "pw" not in token and generated not in token
    assert decrypt_fields(ENCRYPTION_KEY, token) == {"url": "http://user:pw@127.0.0.1:9/hook",
                                                     "signing_secret": generated}

    r = await api.post(f"{BASE}/channels", json={
        "name": "slack", "kind": "slack", "url": "http://127.0.0.1:9/services/T0/B0/token"})
    assert r.status_code == 201 and r.json()["config"] == {"url": "http://127.0.0.1/***"}
    assert "signing_secret" not in r.json() or r.json()["signing_secret"] is None

    for role in ("viewer", "admin"):
        listed = (await api.get(f"{BASE}/channels", role)).json()
        assert [c["name"] for c in listed] == ["hooks", "slack"]
        text = (await api.get(f"{BASE}/channels/hooks", role)).text
        assert generated not in text and "pw" not in text and "token" not in text
    assert (await api.post(f"{BASE}/channels", "viewer", json={
        "name": "x", "kind": "email", "to": ["a@example.com"]})).status_code == 403

    # A change of the recipients of another field keeps the stored secrets.
    r = await api.call("PATCH", f"{BASE}/channels/hooks", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    r = await api.call("PATCH", f"{BASE}/channels/hooks", json={"url": "http://127.0.0.1:9/new"})
    assert r.status_code == 200
    token = await api.pool.fetchval("SELECT secret_config FROM notification_channels WHERE name = 'hooks'")
    assert decrypt_fields(ENCRYPTION_KEY, token)["signing_secret"] == generated

    assert (await api.call("DELETE", f"{BASE}/channels/hooks")).status_code == 200
    assert (await api.get(f"{BASE}/channels/hooks")).status_code == 404
    actions = [r["action"] for r in await api.pool.fetch("SELECT action FROM audit_log "
                                                         "WHERE action LIKE 'channel.%' ORDER BY id")]
    assert actions == ["channel.create", "channel.create", "channel.update", "channel.update",
                       "channel.delete"]


async def test_bad_channels_are_refused_naming_the_field(api: Api) -> None:
    bad = problem(await api.post(f"{BASE}/channels", json={
        "name": "meta", "kind": "webhook", "url": "http://169.254.169.254/latest"}))
    assert bad["field"] == "url" and "link-local" in bad["reason"]
    assert "WORKER_HTTP_ALLOWED_NETWORKS" in bad["reason"]
    bad = problem(await api.post(f"{BASE}/channels", json={"name": "mail", "kind": "email"}))
    assert bad["field"] == "to" and "recipients" in bad["reason"]
    bad = problem(await api.post(f"{BASE}/channels", json={
        "name": "mail", "kind": "email", "to": ["ops@example.com\nBcc: x@evil.test"]}))
    assert bad["field"] == "to[0]"
    bad = problem(await api.post(f"{BASE}/channels", json={"name": "hook", "kind": "webhook"}))
    assert bad["field"] == "url"
    bad = problem(await api.post(f"{BASE}/channels", json={
        "name": "s", "kind": "slack", "url": "http://127.0.0.1:9/x", "signing_secret": "x" * 20}))
    assert bad["field"] == "signing_secret"
    # Only the fields of the channel's kind, even null, as the schema has one object per kind.
    bad = problem(await api.post(f"{BASE}/channels", json={
        "name": "mail", "kind": "email", "to": ["ops@example.com"], "url": None}))
    assert bad["field"] == "url" and "webhook and slack" in bad["reason"]
    variants = (await api.get("/openapi.json", None)).json()["components"]["schemas"][
        "ChannelCreate"]["oneOf"]
    assert {v["properties"]["kind"]["const"]: v["required"] for v in variants} == {
        "webhook": ["name", "kind", "url"], "slack": ["name", "kind", "url"],
        "email": ["name", "kind", "to"]}


async def test_a_webhook_needs_the_encryption_key(db_url: str, amqp_url: str) -> None:
    async with serving(db_url, amqp_url, ENCRYPTION_KEY="",
                       WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.1/32") as api:
        bad = problem(await api.post(f"{BASE}/channels", json={
            "name": "hooks", "kind": "webhook", "url": "http://127.0.0.1:9/hook"}))
        assert bad["field"] == "url" and "ENCRYPTION_KEY" in bad["reason"]


async def test_rules_are_checked_for_their_kind(api: Api) -> None:
    channel = (await api.post(f"{BASE}/channels", json={
        "name": "mail", "kind": "email", "to": ["ops@example.com"]})).json()
    job = (await api.post("/api/jobs", json={"name": "nightly", "handler": "noop"})).json()

    r = await api.post(f"{BASE}/rules", json={"name": "fails", "kind": "run_failed",
                                              "channel_id": channel["id"], "job_id": job["id"]})
    assert r.status_code == 201, r.text
    rule = r.json()
    assert (rule["channel"], rule["job"], rule["statuses"]) == (
        "mail", "nightly", ["failed", "timed_out", "dead"])
    r = await api.post(f"{BASE}/rules", json={"name": "silent", "kind": "schedule_silent",
                                              "channel_id": channel["id"], "within_seconds": 86400})
    assert r.status_code == 201, r.text

    bad = problem(await api.post(f"{BASE}/rules", json={
        "name": "x", "kind": "schedule_silent", "channel_id": channel["id"]}))
    assert bad["field"] == "within_seconds" and "needs it" in bad["reason"]
    bad = problem(await api.post(f"{BASE}/rules", json={
        "name": "x", "kind": "outbox_backlog", "channel_id": channel["id"]}))
    assert bad["field"] == "threshold"
    bad = problem(await api.post(f"{BASE}/rules", json={
        "name": "x", "kind": "scheduler_stale", "channel_id": channel["id"], "within_seconds": 60,
        "job_id": job["id"]}))
    assert bad["field"] == "job_id" and "cannot be scoped" in bad["reason"]
    for field, what in (("channel_id", "notification channel"), ("job_id", "job"),
                        ("schedule_id", "schedule")):
        r = await api.post(f"{BASE}/rules", json={"name": "x", "kind": "run_failed",
                                                  "channel_id": channel["id"], field: 999})
        assert r.status_code == 404 and f"no {what} 999" in r.json()["detail"], r.text
    bad = problem(await api.post(f"{BASE}/rules", json={
        "name": "x", "kind": "run_failed", "channel_id": channel["id"], "threshold": None}))
    assert bad["field"] == "threshold" and "leave it out" in bad["reason"]
    bad = problem(await api.post(f"{BASE}/rules", json={
        "name": "x", "kind": "run_failed", "channel_id": channel["id"], "statuses": ["succeeded"]}))
    assert bad["field"].startswith("statuses")

    r = await api.call("PATCH", f"{BASE}/rules/fails", json={"job_id": None, "max_per_hour": 5})
    assert r.status_code == 200 and (r.json()["job"], r.json()["max_per_hour"]) == (None, 5)
    assert [r["name"] for r in (await api.get(f"{BASE}/rules", "viewer")).json()] == ["fails", "silent"]
    assert (await api.call("DELETE", f"{BASE}/rules/silent")).status_code == 200
    assert (await api.get(f"{BASE}/rules/silent")).status_code == 404


async def test_send_a_test_is_delivered_by_the_schedulers(api: Api, receiver) -> None:
    channel = (await api.post(f"{BASE}/channels", json={
        "name": "hooks", "kind": "webhook", "url": f"{receiver.url}/hook"})).json()
    r = await api.post(f"{BASE}/channels/hooks/test")
    assert r.status_code == 202
    notification_id = r.json()["notification_id"]
    assert (await api.get(f"{BASE}/{notification_id}", "viewer")).json()["status"] == "pending"

    settings = SchedulerSettings(ENCRYPTION_KEY=ENCRYPTION_KEY,
                                 WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.1/32")
    assert await Notifier(api.pool, settings).run_once() == 1

    shown = (await api.get(f"{BASE}/{notification_id}", "viewer")).json()
    assert (shown["status"], shown["state"], shown["channel"]) == ("delivered", "test", "hooks")
    assert "test notification" in shown["summary"]
    [delivery] = receiver.accepted
    assert delivery.json()["state"] == "test"
    assert delivery.json()["details"]["requested_by"] == "admin-key"

    rule = (await api.post(f"{BASE}/rules", json={"name": "fails", "kind": "run_failed",
                                                  "channel_id": channel["id"]})).json()
    r = await api.post(f"{BASE}/rules/{rule['id']}/test")
    assert r.status_code == 202
    await Notifier(api.pool, settings).run_once()
    assert receiver.accepted[-1].json()["rule"] == {"id": rule["id"], "name": "fails"}
    history = (await api.get(BASE, "viewer", params={"channel": "hooks"})).json()
    assert [h["status"] for h in history] == ["delivered", "delivered"]


async def test_a_change_made_meanwhile_is_kept_by_an_edit_that_waited_for_it(api: Api) -> None:
    import asyncio

    assert (await api.post(f"{BASE}/channels", json={
        "name": "mail", "kind": "email", "to": ["a@example.com"]})).status_code == 201
    channel_id = await api.pool.fetchval("SELECT id FROM notification_channels")
    assert (await api.post(f"{BASE}/rules", json={
        "name": "failures", "kind": "run_failed", "channel_id": channel_id})).status_code == 201
    async with api.pool.acquire() as conn, conn.transaction():
        # Another edit, not committed yet when these start.
        await conn.execute("UPDATE notification_channels SET config = '{\"to\": [\"b@example.com\"]}'")
        await conn.execute("UPDATE notification_rules SET max_per_hour = 5")
        edits = asyncio.gather(
            api.call("PATCH", f"{BASE}/channels/mail", json={"enabled": False}),
            api.call("PATCH", f"{BASE}/rules/failures", json={"enabled": False}))
        await asyncio.sleep(0.5)
    assert [r.status_code for r in await edits] == [200, 200]
    channel = (await api.get(f"{BASE}/channels/mail")).json()
    assert (channel["enabled"], channel["config"]) == (False, {"to": ["b@example.com"]})
    rule = (await api.get(f"{BASE}/rules/failures")).json()
    assert (rule["enabled"], rule["max_per_hour"]) == (False, 5)
