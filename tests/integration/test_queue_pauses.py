"""Pausing a queue, or every queue: its runs stay queued and unpublished, whoever would
publish them (the API, the relay) or has a message for them (a worker), until resumed."""

from __future__ import annotations

import re

from sundial.api.service import Service
from sundial.api.settings import ApiSettings
from sundial.core.messages import RunRef
from sundial.core.sql import q
from sundial.scheduler.relay import relay
from sundial.worker.claim import Claim, claim
from tests.integration.test_api import noop_job, serving
from tests.integration.test_tick import consume_ids

LEASE_S = 30.0


async def published(pool, run_id: int) -> bool:
    return await pool.fetchval("SELECT published_at IS NOT NULL FROM runs WHERE id = $1", run_id)


async def test_a_paused_queue_holds_its_runs_until_resumed(db_url, amqp_url, queue) -> None:
    other = queue + "-other"
    async with serving(db_url, amqp_url) as api:
        publisher = api.app.state.publisher
        await api.post("/api/jobs", json=noop_job("a", queue=queue))
        await api.post("/api/jobs", json=noop_job("b", queue=other))

        paused = await api.post(f"/api/queues/{queue}/pause")
        assert paused.status_code == 200, paused.text
        assert paused.json() | {"paused_at": None} == {
            "queue": queue, "paused": True, "paused_at": None, "paused_by": "admin-key",
            "all_paused": False}
        assert (await api.post(f"/api/queues/{queue}/pause", "viewer")).status_code == 403

        # "Run now" of a paused queue's job queues a run that is not published; the other
        # queue is not held. The relay leaves the held run alone, and is not woken for it.
        held = (await api.post("/api/jobs/a/trigger")).json()["run_id"]
        free = (await api.post("/api/jobs/b/trigger")).json()["run_id"]
        assert not await published(api.pool, held) and await published(api.pool, free)
        assert (await relay(api.pool, publisher, batch_size=10, lease_s=LEASE_S)).published == []
        assert (await api.pool.fetchrow(q("seconds_until_next_work")))["outbox"] is None
        metrics = (await api.get("/metrics", None)).text
        assert re.search(r"^sundial_dispatch_lag_seconds 0\.0$", metrics, re.MULTILINE), \
            "a held run is no dispatch lag"

        # Everything paused: no queue publishes; a queue's own resume does not lift it.
        assert (await api.post("/api/queues/pause")).json()["all_paused"] is True
        also_held = (await api.post("/api/jobs/b/trigger")).json()["run_id"]
        assert not await published(api.pool, also_held)
        listed = (await api.get("/api/queues", "viewer")).json()
        assert listed["all_paused"] and listed["all_paused_by"] == "admin-key"
        assert [(x["queue"], x["paused"], x["jobs"], x["queued"]) for x in listed["queues"]] == [
            (queue, True, 1, 1), (other, False, 1, 2)]
        resumed = (await api.post(f"/api/queues/{queue}/resume")).json()
        assert resumed["paused"] is False and resumed["all_paused"] is True
        assert (await relay(api.pool, publisher, batch_size=10, lease_s=LEASE_S)).published == []

        # Resumed: the relay publishes what waited, nothing lost.
        assert (await api.post("/api/queues/resume")).json()["all_paused"] is False
        relayed = await relay(api.pool, publisher, batch_size=10, lease_s=LEASE_S)
        assert sorted(relayed.published) == [held, also_held]
        assert await consume_ids(amqp_url, queue, 1) == [held]
        assert sorted(await consume_ids(amqp_url, other, 2)) == [free, also_held]

        actions = [r["action"] for r in await api.pool.fetch(
            "SELECT action FROM audit_log WHERE target_type = 'queue' ORDER BY id")]
        assert actions == ["queue.pause", "queue.pause", "queue.resume", "queue.resume"]

        # A queue no job runs on is most likely a typo: refused, naming the queues in use.
        typo = await api.post("/api/queues/reprots/pause")
        assert typo.status_code == 404
        assert typo.json()["detail"] == (f"no job runs on queue 'reprots'; the queues in use "
                                         f"are: {queue}, {other}")
        assert (await api.post("/api/queues/bad name!/pause")).status_code == 422


async def test_a_worker_hands_back_a_run_whose_queue_was_paused_after_its_message(
        pool, db_url, amqp_url, queue) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    await svc.create_job("test", _job(queue))
    run_id = (await svc.trigger_job("test", "paused-later"))[0]["run_id"]
    await pool.execute("UPDATE runs SET published_at = now() WHERE id = $1", run_id)  # sent
    await svc.pause_queue("test", queue)
    message = RunRef(version=1, run_id=run_id, attempt=1)

    batch = await pool.fetch(q("claim_run"), run_id, 1, "w1", ["noop"], [queue], True)
    assert batch == [], "the batch claim passes over a paused queue's run"
    async with pool.acquire() as conn:
        result = await claim(conn, message, "w1", ["noop"], [queue])
    assert result.claim is Claim.PAUSED
    run = await pool.fetchrow("SELECT status, published_at FROM runs WHERE id = $1", run_id)
    assert run["status"] == "queued" and run["published_at"] is None, "back in the outbox"

    await svc.resume_queue("test", queue)
    async with pool.acquire() as conn:
        await pool.execute("UPDATE runs SET published_at = now() WHERE id = $1", run_id)
        assert (await claim(conn, message, "w1", ["noop"], [queue])).claim is Claim.CLAIMED


def _job(queue: str):
    from sundial.api.schemas import JobCreate

    return JobCreate(name="paused-later", handler="noop", queue=queue)
