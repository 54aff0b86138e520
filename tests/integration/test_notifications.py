"""Notifications against the real PostgreSQL, a local HTTP receiver and a local SMTP
server: written with a run's failure, delivered by the scheduler's notifier (signed,
retried, once across schedulers, rate-limited, SSRF-guarded), and the rules on
conditions evaluated by its alerts loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from cryptography.fernet import Fernet

from sundial.core import notifications as n
from sundial.core.db import create_pool
from sundial.core.secrets import encrypt_fields
from sundial.core.sql import q
from sundial.scheduler.alerts import evaluate
from sundial.scheduler.notifier import Notifier
from sundial.scheduler.settings import SchedulerSettings

KEY = Fernet.generate_key().decode()
SIGNING = "s3cret-signing-key"


def settings(**extra: Any) -> SchedulerSettings:
    values = dict(ENCRYPTION_KEY=KEY, NOTIFY_RETRY_BACKOFF=0.01, NOTIFY_TIMEOUT=5,
                  WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.1/32")
    values.update(extra)
    return SchedulerSettings(**values)


async def channel(pool: asyncpg.Pool, kind: str, *, url: str | None = None,
                  to: list[str] | None = None, name: str | None = None) -> int:
    secret = None
    config: dict[str, Any] = {}
    if kind == "webhook":
        secret = encrypt_fields(KEY, {"url": url, "signing_secret": SIGNING})
        config = {"url": url}
    elif kind == "slack":
        secret = encrypt_fields(KEY, {"url": url})
    else:
        config = {"to": to}
    return await pool.fetchval(
        "INSERT INTO notification_channels (name, kind, config, secret_config) "
        "VALUES ($1, $2, $3, $4) RETURNING id", name or f"{kind}-channel", kind, config, secret)


async def rule(pool: asyncpg.Pool, kind: str, channel_id: int, **fields: Any) -> int:
    fields = {"name": f"{kind}-{time.monotonic_ns()}", **fields, "kind": kind,
              "channel_id": channel_id}
    marks = ", ".join(f"${i}" for i in range(1, len(fields) + 1))
    return await pool.fetchval(f"INSERT INTO notification_rules ({', '.join(fields)}) "
                               f"VALUES ({marks}) RETURNING id", *fields.values())


async def job(pool: asyncpg.Pool, name: str = "nightly", queue: str = "default") -> int:
    return await pool.fetchval("INSERT INTO jobs (name, handler, queue) VALUES ($1, 'noop', $2) "
                               "RETURNING id", name, queue)


async def failed_run(pool: asyncpg.Pool, job_id: int, status: str = "failed") -> int:
    run_id = await pool.fetchval(
        "INSERT INTO runs (job_id, scheduled_for, trigger, status, max_attempts) "
        "VALUES ($1, now(), 'manual', 'running', 3) RETURNING id", job_id)
    await pool.execute("UPDATE runs SET status = $2, attempt = 3, error = 'boom', "
                       "finished_at = now() WHERE id = $1", run_id, status)
    return run_id


async def deliver_all(notifier: Notifier, pool: asyncpg.Pool, rounds: int = 200) -> None:
    """Rounds until nothing waits (retries included)."""
    for _ in range(rounds):
        await notifier.run_once()
        if not await pool.fetchval("SELECT count(*) FROM notifications WHERE status = 'pending'"):
            return
        await asyncio.sleep(0.02)
    pytest.fail("notifications still pending")


async def statuses(pool: asyncpg.Pool) -> list[str]:
    return [r["status"] for r in await pool.fetch("SELECT status FROM notifications ORDER BY id")]


async def test_runs_the_scheduler_or_the_delivery_limit_end_notify_too(pool) -> None:
    channel_id = await channel(pool, "webhook", url="http://127.0.0.1:9/")
    await rule(pool, "run_failed", channel_id)
    job_id = await job(pool)
    lost = await pool.fetchval(  # its worker stopped heartbeating on its last attempt
        "INSERT INTO runs (job_id, scheduled_for, trigger, status, attempt, max_attempts, "
        "worker_id, heartbeat_at) VALUES ($1, now(), 'manual', 'running', 3, 3, 'w', "
        "now() - interval '1 hour') RETURNING id", job_id)
    untakeable = await pool.fetchval(  # no worker has ever had its queue
        "INSERT INTO runs (job_id, scheduled_for, trigger, status, published_at, created_at) "
        "VALUES ($1, now(), 'manual', 'queued', now() - interval '1 day', "
        "now() - interval '1 day') RETURNING id", job_id)
    abandoned = await pool.fetchval(  # executing at every delivery, up to the limit
        "INSERT INTO runs (job_id, scheduled_for, trigger, status, attempt, takeovers, "
        "heartbeat_at) VALUES ($1, now(), 'manual', 'running', 1, 5, "
        "now() - interval '1 hour') RETURNING id", job_id)

    assert await pool.fetchval(q("end_abandoned_run"), abandoned, 1, "delivery limit", 60.0, 5)
    assert [r["id"] for r in await pool.fetch(q("rescue_stale_runs"), 60.0, 100)] == [lost]
    assert [r["id"] for r in await pool.fetch(q("expire_untakeable_runs"), 60.0, 3600.0, 100)] \
        == [untakeable]
    written = await pool.fetch("SELECT details FROM notifications ORDER BY id")
    assert [(d["details"]["run_id"], d["details"]["status"]) for d in written] == [
        (abandoned, "dead"), (lost, "failed"), (untakeable, "failed")]


async def test_a_failed_run_is_delivered_once_as_a_signed_webhook(pool, receiver) -> None:
    channel_id = await channel(pool, "webhook", url=f"{receiver.url}/hook")
    await rule(pool, "run_failed", channel_id)
    job_id = await job(pool)
    run_id = await failed_run(pool, job_id)
    await pool.execute("UPDATE runs SET status = 'succeeded' WHERE id = $1", run_id)  # no event

    await deliver_all(Notifier(pool, settings()), pool)

    [delivery] = receiver.accepted
    assert delivery.path == "/hook"
    assert n.verify(SIGNING, delivery.body, delivery.headers["sundial-signature"], now=time.time())
    assert not n.verify("another secret", delivery.body, delivery.headers["sundial-signature"],
                        now=time.time())
    data = delivery.json()
    assert data["event"] == "run_failed" and data["state"] == "firing"
    assert data["details"]["run_id"] == run_id and data["details"]["job"] == "nightly"
    assert data["details"]["error"] == "boom"
    assert "nightly" in data["summary"] and "failed" in data["summary"]
    assert delivery.headers["sundial-delivery"] == str(data["id"])
    assert await statuses(pool) == ["delivered"]


async def test_the_failure_is_written_with_the_run_and_only_for_rules_in_scope(pool) -> None:
    channel_id = await channel(pool, "webhook", url="http://127.0.0.1:9/")
    nightly, other = await job(pool, "nightly"), await job(pool, "other", queue="reports")
    await rule(pool, "run_failed", channel_id, name="by-job", job_id=nightly)
    await rule(pool, "run_failed", channel_id, name="by-queue", queue="reports")
    await rule(pool, "run_failed", channel_id, name="dead-only", statuses=["dead"])
    await rule(pool, "run_failed", channel_id, name="off", enabled=False)

    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        run_id = await conn.fetchval(
            "INSERT INTO runs (job_id, scheduled_for, trigger, status) "
            "VALUES ($1, now(), 'manual', 'running') RETURNING id", nightly)
        await conn.execute("UPDATE runs SET status = 'timed_out' WHERE id = $1", run_id)
        await tx.rollback()  # the notification goes with the failure it tells of
    assert await pool.fetchval("SELECT count(*) FROM notifications") == 0

    await failed_run(pool, nightly, "timed_out")
    await failed_run(pool, other, "failed")
    await failed_run(pool, other, "dead")
    rows = await pool.fetch("SELECT r.name, x.details->>'status' AS status FROM notifications x "
                            "JOIN notification_rules r ON r.id = x.rule_id ORDER BY x.id")
    assert [(r["name"], r["status"]) for r in rows] == [
        ("by-job", "timed_out"), ("by-queue", "failed"), ("by-queue", "dead"), ("dead-only", "dead")]


async def test_a_run_that_fails_twice_in_the_same_attempt_notifies_once(pool) -> None:
    channel_id = await channel(pool, "webhook", url="http://127.0.0.1:9/")
    await rule(pool, "run_failed", channel_id)
    run_id = await failed_run(pool, await job(pool))
    await pool.execute("UPDATE runs SET status = 'running' WHERE id = $1", run_id)
    await pool.execute("UPDATE runs SET status = 'failed' WHERE id = $1", run_id)
    assert await pool.fetchval("SELECT count(*) FROM notifications") == 1


async def test_a_receiver_that_fails_twice_gets_it_once_accepted(pool, receiver) -> None:
    receiver.fail_next = 2
    channel_id = await channel(pool, "webhook", url=receiver.url)
    await rule(pool, "run_failed", channel_id)
    await failed_run(pool, await job(pool))

    await deliver_all(Notifier(pool, settings()), pool)

    assert len(receiver.requests) == 3 and len(receiver.accepted) == 1
    row = await pool.fetchrow("SELECT status, attempts, last_error FROM notifications")
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 3, None)


async def test_attempts_stop_at_the_limit(pool, receiver) -> None:
    receiver.fail_next = 100
    channel_id = await channel(pool, "webhook", url=receiver.url)
    await rule(pool, "run_failed", channel_id)
    await failed_run(pool, await job(pool))

    await deliver_all(Notifier(pool, settings(NOTIFY_MAX_ATTEMPTS=3)), pool)

    assert len(receiver.requests) == 3 and receiver.accepted == []
    row = await pool.fetchrow("SELECT status, last_error FROM notifications")
    assert row["status"] == "failed" and "answered 503" in row["last_error"]


async def test_a_target_the_ssrf_policy_refuses_is_never_called(pool, receiver) -> None:
    channel_id = await channel(pool, "webhook", url=receiver.url)
    await rule(pool, "run_failed", channel_id)
    await failed_run(pool, await job(pool))

    await deliver_all(Notifier(pool, settings(WORKER_HTTP_ALLOWED_NETWORKS="")), pool)

    assert receiver.requests == []
    row = await pool.fetchrow("SELECT status, attempts, last_error FROM notifications")
    assert row["status"] == "failed" and row["attempts"] == 1
    assert "loopback" in row["last_error"] and "WORKER_HTTP_ALLOWED_NETWORKS" in row["last_error"]

    # The same setting as http jobs allows it.
    await failed_run(pool, await job(pool, "second"))
    await deliver_all(Notifier(pool, settings(WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.0/8")), pool)
    assert len(receiver.accepted) == 1


async def test_two_schedulers_deliver_each_notification_once(pool, db_url, receiver) -> None:
    channel_id = await channel(pool, "webhook", url=receiver.url)
    await rule(pool, "run_failed", channel_id, max_per_hour=1000)
    job_id = await job(pool)
    for _ in range(60):
        await failed_run(pool, job_id)
    other_pool = await create_pool(db_url, min_size=1, max_size=3, attempts=3)
    try:
        await asyncio.gather(deliver_all(Notifier(pool, settings()), pool),
                             deliver_all(Notifier(other_pool, settings()), other_pool))
    finally:
        await other_pool.close()
    ids = [d.json()["id"] for d in receiver.accepted]
    assert len(ids) == 60 and len(set(ids)) == 60
    assert await statuses(pool) == ["delivered"] * 60


async def test_a_rule_sends_at_most_max_per_hour(pool, receiver) -> None:
    channel_id = await channel(pool, "webhook", url=receiver.url)
    await rule(pool, "run_failed", channel_id, max_per_hour=2)
    job_id = await job(pool)
    notifier = Notifier(pool, settings())
    for _ in range(3):
        await failed_run(pool, job_id)
    await deliver_all(notifier, pool)
    await failed_run(pool, job_id)   # a later round counts the earlier deliveries
    await deliver_all(notifier, pool)

    assert len(receiver.accepted) == 2
    assert await statuses(pool) == ["delivered", "delivered", "suppressed", "suppressed"]


async def test_the_hourly_limit_counts_what_another_scheduler_is_sending(pool, receiver) -> None:
    channel_id = await channel(pool, "webhook", url=receiver.url)
    await rule(pool, "run_failed", channel_id, max_per_hour=2)
    job_id = await job(pool)
    for _ in range(4):
        await failed_run(pool, job_id)
    # another scheduler has claimed two and is sending them (leased, not yet recorded)
    in_flight = await pool.fetch(q("claim_notifications"), 2, 60.0)
    assert len(in_flight) == 2

    assert await Notifier(pool, settings()).run_once() == 2
    assert receiver.accepted == []
    assert await pool.fetchval("SELECT count(*) FROM notifications "
                               "WHERE status = 'suppressed'") == 2


async def test_schedulers_delivering_at_once_keep_the_hourly_limit(pool, db_url, receiver,
                                                                   monkeypatch) -> None:
    from sundial.scheduler import notifier

    monkeypatch.setattr(notifier, "BATCH", 1)
    channel_id = await channel(pool, "webhook", url=receiver.url)
    await rule(pool, "run_failed", channel_id, max_per_hour=3)
    job_id = await job(pool)
    for _ in range(12):
        await failed_run(pool, job_id)
    pools = [pool] + [await create_pool(db_url, min_size=1, max_size=2, attempts=3)
                      for _ in range(3)]
    try:
        await asyncio.gather(*(deliver_all(Notifier(p, settings()), p) for p in pools))
    finally:
        for other in pools[1:]:
            await other.close()
    assert len(receiver.accepted) == 3
    assert sorted(await statuses(pool)) == ["delivered"] * 3 + ["suppressed"] * 9


async def test_slack_gets_its_text(pool, receiver) -> None:
    channel_id = await channel(pool, "slack", url=f"{receiver.url}/services/T0/B0/x")
    await rule(pool, "run_failed", channel_id)
    run_id = await failed_run(pool, await job(pool))

    await deliver_all(Notifier(pool, settings()), pool)

    [delivery] = receiver.accepted
    assert delivery.path == "/services/T0/B0/x"
    text = delivery.json()["text"]
    assert "nightly" in text and f"`{run_id}`" in text
    assert "sundial-signature" not in delivery.headers


async def test_email_goes_through_the_smtp_server(pool, smtp_server) -> None:
    channel_id = await channel(pool, "email", to=["ops@example.com", "oncall@example.com"])
    await rule(pool, "run_failed", channel_id)
    run_id = await failed_run(pool, await job(pool))

    await deliver_all(Notifier(pool, settings(SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port,
                                              SMTP_STARTTLS=False, SMTP_FROM="sundial@example.com")),
                      pool)

    [message] = smtp_server.messages
    assert message["To"] == "ops@example.com, oncall@example.com"
    assert message["From"] == "sundial@example.com"
    assert "nightly" in message["Subject"] and "failed" in message["Subject"]
    assert f"run_id: {run_id}" in message.get_payload()
    assert await statuses(pool) == ["delivered"]


async def test_email_without_an_smtp_server_is_retried_saying_what_is_missing(pool) -> None:
    channel_id = await channel(pool, "email", to=["ops@example.com"])
    await rule(pool, "run_failed", channel_id)
    await failed_run(pool, await job(pool))
    await Notifier(pool, settings()).run_once()
    row = await pool.fetchrow("SELECT status, last_error FROM notifications")
    assert row["status"] == "pending" and "SMTP_HOST is not set" in row["last_error"]


# --- rules on conditions -----------------------------------------------------------------------


async def schedule(pool: asyncpg.Pool, job_id: int, *, age_s: float = 3600,
                   next_in_s: float = 60) -> int:
    return await pool.fetchval(
        "INSERT INTO schedules (job_id, kind, interval_seconds, next_run_at, created_at) "
        "VALUES ($1, 'interval', 60, now() + make_interval(secs => $3), "
        "now() - make_interval(secs => $2)) RETURNING id", job_id, age_s, next_in_s)


async def events(pool: asyncpg.Pool) -> list[tuple[str, str, dict]]:
    rows = await pool.fetch("SELECT event, state, details FROM notifications ORDER BY id")
    return [(r["event"], r["state"], r["details"]) for r in rows]


async def backdate_rules(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE notification_rules SET updated_at = now() - interval '2 hours'")


async def test_dead_mans_switch_fires_while_a_schedule_only_fails_and_not_when_it_succeeds(
        pool) -> None:
    channel_id = await channel(pool, "webhook", url="http://127.0.0.1:9/")
    failing, healthy = await job(pool, "failing"), await job(pool, "healthy")
    failing_schedule = await schedule(pool, failing)
    healthy_schedule = await schedule(pool, healthy)
    await rule(pool, "schedule_silent", channel_id, within_seconds=600)
    await backdate_rules(pool)
    for schedule_id, job_id, status in ((failing_schedule, failing, "failed"),
                                        (healthy_schedule, healthy, "succeeded")):
        await pool.execute(
            "INSERT INTO runs (job_id, schedule_id, scheduled_for, trigger, status, finished_at) "
            "VALUES ($1, $2, now() - interval '1 minute', 'schedule', $3, now())",
            job_id, schedule_id, status)

    assert (await evaluate(pool)).opened == 1
    assert (await evaluate(pool)).opened == 0   # one notification per episode
    [(event, state, details)] = await events(pool)
    assert (event, state, details["schedule_id"], details["job"]) == (
        "schedule_silent", "firing", failing_schedule, "failing")
    assert details["last_success_at"] is None

    await pool.execute(
        "INSERT INTO runs (job_id, schedule_id, scheduled_for, trigger, status, finished_at) "
        "VALUES ($1, $2, now(), 'schedule', 'succeeded', now())", failing, failing_schedule)
    assert (await evaluate(pool)).closed == 1
    assert [(e, s) for e, s, _ in await events(pool)] == [("schedule_silent", "firing"),
                                                          ("schedule_silent", "resolved")]


async def test_a_new_schedule_or_rule_gets_its_full_window(pool) -> None:
    channel_id = await channel(pool, "webhook", url="http://127.0.0.1:9/")
    await schedule(pool, await job(pool), age_s=5)
    await rule(pool, "schedule_silent", channel_id, within_seconds=600)
    await backdate_rules(pool)
    await schedule(pool, await job(pool, "old"), age_s=3600)
    await rule(pool, "schedule_silent", channel_id, name="fresh-rule", within_seconds=600)
    # Only the old schedule, under the backdated rule.
    assert (await evaluate(pool)).opened == 1


async def test_missed_slot_stale_scheduler_unattended_queue_and_backlog(pool) -> None:
    channel_id = await channel(pool, "webhook", url="http://127.0.0.1:9/")
    job_id = await job(pool, "late", queue="reports")
    await schedule(pool, job_id, next_in_s=-300)
    await schedule(pool, await job(pool, "on-time"), next_in_s=30)
    await rule(pool, "missed_slot", channel_id, within_seconds=120)
    await rule(pool, "scheduler_stale", channel_id, within_seconds=60)
    await rule(pool, "queue_unattended", channel_id, within_seconds=60, queue="reports")
    await rule(pool, "outbox_backlog", channel_id, threshold=2)
    await pool.execute("INSERT INTO scheduler_instances (id, host, pid, status, last_tick_at) VALUES "
                       "('frozen', 'h', 1, 'running', now() - interval '5 minutes'), "
                       "('fine', 'h', 2, 'running', now())")
    for _ in range(3):
        await pool.execute("INSERT INTO runs (job_id, scheduled_for, trigger) "
                           "VALUES ($1, now(), 'manual')", job_id)

    assert (await evaluate(pool)).opened == 4
    found = {e: d for e, _, d in await events(pool)}
    assert found["missed_slot"]["job"] == "late"
    assert found["scheduler_stale"]["instance"] == "frozen"
    assert found["queue_unattended"]["queue"] == "reports"
    assert found["queue_unattended"]["queued"] == 3
    assert found["outbox_backlog"]["unpublished"] == 3

    # A worker for the queue, a scheduler that passes again, the outbox drained.
    await pool.execute("INSERT INTO workers (id, host, pid, queues) VALUES ('w', 'h', 3, '{reports}')")
    await pool.execute("UPDATE scheduler_instances SET last_tick_at = now()")
    await pool.execute("UPDATE runs SET published_at = now()")
    assert (await evaluate(pool)).closed == 3
    resolved = [e for e, s, _ in await events(pool) if s == "resolved"]
    assert sorted(resolved) == ["outbox_backlog", "queue_unattended", "scheduler_stale"]


async def test_a_stale_scheduler_the_reaper_forgets_is_not_resolved(pool) -> None:
    channel_id = await channel(pool, "webhook", url="http://127.0.0.1:9/")
    await rule(pool, "scheduler_stale", channel_id, within_seconds=60)
    await pool.execute("INSERT INTO scheduler_instances (id, host, pid, status, last_tick_at) "
                       "VALUES ('dead', 'h', 1, 'running', now() - interval '2 hours')")
    assert (await evaluate(pool)).opened == 1

    assert len(await pool.fetch(q("forget_scheduler_instances"), 3600.0)) == 1
    assert (await evaluate(pool)).closed == 1
    assert [s for _, s, _ in await events(pool)] == ["firing"]


async def test_one_scheduler_evaluates_at_a_time(pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchval("SELECT pg_advisory_xact_lock(hashtextextended("
                            "'sundial.notification_rules', 0))")
        assert (await evaluate(pool)).evaluated is False
    assert (await evaluate(pool)).evaluated is True


async def test_a_failed_slack_delivery_does_not_show_the_url_s_secret_path(pool, receiver) -> None:
    receiver.fail_next = 100
    secret_path = "/services/T0/B0/xoxb-secret-token"
    refused = await channel(pool, "slack", url=f"http://10.0.0.1{secret_path}", name="refused")
    failing = await channel(pool, "slack", url=f"{receiver.url}{secret_path}", name="failing")
    await rule(pool, "run_failed", refused)
    await rule(pool, "run_failed", failing)
    await failed_run(pool, await job(pool))

    await deliver_all(Notifier(pool, settings(NOTIFY_MAX_ATTEMPTS=1)), pool)

    errors = [r["last_error"] for r in await pool.fetch(
        "SELECT last_error FROM notifications ORDER BY channel_id")]
    assert len(errors) == 2 and all(errors)
    assert "refused" in errors[0] and "answered 503" in errors[1]
    for error in errors:
        assert "xoxb-secret-token" not in error and "/***" in error


async def test_a_schedule_that_only_fails_is_judged_without_reading_its_failures(pool) -> None:
    channel_id = await channel(pool, "webhook", url="http://127.0.0.1:9/")
    job_id = await job(pool, "failing")
    schedule_id = await schedule(pool, job_id)
    await rule(pool, "schedule_silent", channel_id, within_seconds=600)
    await backdate_rules(pool)
    healthy = await job(pool, "healthy")
    healthy_schedule = await schedule(pool, healthy)
    # A month of a slot every 2 minutes: each one failed, and each of another job succeeded.
    for job_id_, schedule_id_, status in ((job_id, schedule_id, "failed"),
                                          (healthy, healthy_schedule, "succeeded")):
        await pool.execute(
            "INSERT INTO runs (job_id, schedule_id, scheduled_for, trigger, status, finished_at) "
            "SELECT $1, $2, now() - make_interval(secs => g * 120), 'schedule', $3, "
            "now() - make_interval(secs => g * 120 - 1) FROM generate_series(1, 21600) g",
            job_id_, schedule_id_, status)
    await pool.execute("ANALYZE runs")

    plan = await pool.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                               f"{q('firing_schedule_silent')}")
    top = plan[0]["Plan"]   # json, decoded by the pool
    assert top["Actual Rows"] == 1
    # A probe of an index and a few pages, not a walk through the 21600 failures.
    assert top["Shared Hit Blocks"] + top["Shared Read Blocks"] < 100, top
