"""Notifications end to end: real `sundial api`, `scheduler` and `worker` processes, a
local webhook receiver and a local SMTP server."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
from cryptography.fernet import Fernet

from sundial.core import notifications as n
from sundial.core.secrets import encrypt_fields
from tests.conftest import ROOT, service_env, start_api, wait_for
from tests.e2e.test_worker import add_job, scheduler_env, trigger, worker_env

KEY = Fernet.generate_key().decode()


def admin_key(db_url: str, amqp_url: str) -> str:
    out = subprocess.run([sys.executable, "-m", "sundial", "keys", "create", "--name", "ops",
                          "--role", "admin", "--json"], env=service_env(db_url, amqp_url),
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)["key"]


async def test_a_failing_run_notifies_a_signed_webhook_and_email_once_each(
        pool, db_url, amqp_url, queue, processes, receiver, smtp_server) -> None:
    receiver.fail_next = 2   # the receiver fails twice, then accepts
    common = {"ENCRYPTION_KEY": KEY, "WORKER_HTTP_ALLOWED_NETWORKS": "127.0.0.1/32"}
    base = await start_api(processes, db_url, amqp_url, **common)
    headers = {"Authorization": f"Bearer {admin_key(db_url, amqp_url)}"}
    async with httpx.AsyncClient(base_url=base, headers=headers) as api:
        hook = (await api.post("/api/notifications/channels", json={
            "name": "hook", "kind": "webhook", "url": f"{receiver.url}/sundial"})).json()
        mail = (await api.post("/api/notifications/channels", json={
            "name": "mail", "kind": "email", "to": ["oncall@example.com"]})).json()
        for channel in (hook, mail):
            r = await api.post("/api/notifications/rules", json={
                "name": f"fails-{channel['name']}", "kind": "run_failed",
                "channel_id": channel["id"], "queue": queue})
            assert r.status_code == 201, r.text

    job = await add_job(pool, queue, "python", {"function": "always_fails"}, max_attempts=2,
                        retry_backoff_seconds=0.2)
    processes(["worker"], worker_env(db_url, amqp_url, queue, WORKER_IMPORTS="tests.e2e.test_worker_jobs"))
    processes(["scheduler"], scheduler_env(
        db_url, amqp_url, NOTIFY_RETRY_BACKOFF=0.3, SMTP_HOST=smtp_server.host,
        SMTP_PORT=smtp_server.port, SMTP_STARTTLS="false", SMTP_FROM="sundial@example.com",
        **common))
    [run_id] = await trigger(pool, amqp_url, job)

    await wait_for(lambda: receiver.accepted and smtp_server.messages, timeout=40,
                   what="the webhook and the email")
    [delivery] = receiver.accepted
    assert len(receiver.requests) == 3          # two refused attempts, then accepted
    assert n.verify(hook["signing_secret"], delivery.body,
                    delivery.headers["sundial-signature"], now=time.time())
    data = delivery.json()
    assert (data["event"], data["details"]["run_id"], data["details"]["status"]) == (
        "run_failed", run_id, "failed")
    assert data["details"]["attempt"] == 2 and "always fails" in data["details"]["error"]
    [message] = smtp_server.messages
    assert message["To"] == "oncall@example.com" and f"run {run_id} failed" in message["Subject"]

    async def delivered() -> bool:
        return await pool.fetchval("SELECT count(*) FILTER (WHERE status = 'delivered') = 2 "
                                   "AND count(*) = 2 FROM notifications")
    await wait_for(delivered, what="both notifications recorded as delivered")
    assert len(receiver.accepted) == 1 and len(smtp_server.messages) == 1


async def test_a_target_the_ssrf_policy_refuses_is_not_called(
        pool, db_url, amqp_url, queue, processes, receiver) -> None:
    channel_id = await pool.fetchval(
        "INSERT INTO notification_channels (name, kind, secret_config) VALUES ('hook', 'webhook', $1) "
        "RETURNING id", encrypt_fields(KEY, {"url": receiver.url, "signing_secret": "x" * 20}))
    await pool.execute("INSERT INTO notification_rules (name, kind, channel_id) "
                       "VALUES ('fails', 'run_failed', $1)", channel_id)
    job = await add_job(pool, queue, "python", {"function": "always_fails"}, max_attempts=1)
    processes(["worker"], worker_env(db_url, amqp_url, queue, WORKER_IMPORTS="tests.e2e.test_worker_jobs"))
    processes(["scheduler"], scheduler_env(db_url, amqp_url, ENCRYPTION_KEY=KEY))
    await trigger(pool, amqp_url, job)

    async def failed() -> str | None:
        return await pool.fetchval("SELECT last_error FROM notifications WHERE status = 'failed'")
    error = await wait_for(failed, timeout=30, what="the notification to be refused")
    assert "loopback" in error and "WORKER_HTTP_ALLOWED_NETWORKS" in error
    assert receiver.requests == []


async def test_the_dead_mans_switch_fires_for_a_schedule_that_only_fails(
        pool, db_url, amqp_url, queue, processes, receiver) -> None:
    """Two schedules every second, run by a real scheduler and worker, under one "no
    success within 5 s" rule made once both run: the one whose job always fails is
    reported once, signed; the one whose job succeeds never is."""
    failing = await add_job(pool, queue, "python", {"function": "always_fails"}, max_attempts=1)
    healthy = await add_job(pool, queue, "noop")
    for job_id in (failing, healthy):
        await pool.execute("INSERT INTO schedules (job_id, kind, interval_seconds) "
                           "VALUES ($1, 'interval', 1)", job_id)
    processes(["worker"], worker_env(db_url, amqp_url, queue,
                                     WORKER_IMPORTS="tests.e2e.test_worker_jobs"))
    processes(["scheduler"], scheduler_env(db_url, amqp_url, ENCRYPTION_KEY=KEY,
                                           NOTIFY_CHECK_INTERVAL=0.5,
                                           WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.1/32"))

    async def ended(job_id: int, status: str, at_least: int) -> bool:
        return await pool.fetchval("SELECT count(*) >= $3 FROM runs WHERE job_id = $1 "
                                   "AND status = $2", job_id, status, at_least)
    await wait_for(lambda: ended(healthy, "succeeded", 1), timeout=40, what="a first success")
    channel_id = await pool.fetchval(
        "INSERT INTO notification_channels (name, kind, secret_config) VALUES ('hook', 'webhook', $1) "
        "RETURNING id", encrypt_fields(KEY, {"url": f"{receiver.url}/dead-man",
                                             "signing_secret": "s" * 20}))
    await pool.execute("INSERT INTO notification_rules (name, kind, channel_id, within_seconds, queue) "
                       "VALUES ('silent', 'schedule_silent', $1, 5, $2)", channel_id, queue)

    await wait_for(lambda: receiver.accepted, timeout=40, what="the dead man's switch")
    delivery = receiver.accepted[0]
    assert n.verify("s" * 20, delivery.body, delivery.headers["sundial-signature"],
                    now=time.time())
    data = delivery.json()
    assert data["event"] == "schedule_silent" and data["details"]["job_id"] == failing, data

    # Both schedules keep firing; the healthy one succeeds, so nothing more is reported.
    seen = await pool.fetchval("SELECT count(*) FROM runs WHERE job_id = $1", healthy)
    await wait_for(lambda: ended(healthy, "succeeded", seen + 6), timeout=40,
                   what="six more successes")
    assert await ended(failing, "failed", 6)
    assert len(receiver.accepted) == 1, [d.json() for d in receiver.accepted]
