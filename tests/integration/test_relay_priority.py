"""A slot that falls due while a large outbox drains (after a broker outage) does not wait
behind it: the tick's fresh batches go first, the relay gives way between its batches and
takes short ones while fresh batches flow. Real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio

from sundial.core.broker import Publisher
from sundial.scheduler.main import Scheduler
from sundial.scheduler.publishing import Counters, Publishing
from sundial.scheduler.relay import SHARED_BATCH, relay
from sundial.scheduler.settings import SchedulerSettings
from sundial.scheduler.tick import tick
from tests.conftest import wait_for
from tests.integration.test_tick import LEASE_S, make_interval_schedule, make_job

# Queued, unpublished runs of `job` ($1), $2 of them, available over the last hour: what a
# broker outage leaves in the outbox.
_BACKLOG = """
INSERT INTO runs (job_id, scheduled_for, trigger, status, attempt, max_attempts, available_at)
SELECT $1, at, 'manual', 'queued', 1, 1, at
FROM generate_series(1, $2) AS g,
     LATERAL (SELECT now() - make_interval(secs => 3600 - g * 0.001) AS at) AS t
"""


async def test_the_relay_gives_way_to_fresh_batches_and_takes_short_ones(pool, amqp_url, queue):
    job = await make_job(pool, queue)
    await pool.execute(_BACKLOG, job, 5_000)
    await make_interval_schedule(pool, job, 3600, behind_s=0.5)
    fresh = await tick(pool, batch_size=100, look_ahead_s=0, lease_s=LEASE_S)
    [fresh_run] = fresh.to_publish
    publisher = Publisher(amqp_url, 5)
    publishing = Publishing(pool, publisher, Counters(), on_failure=lambda: None)
    try:
        await publishing.hand_over(fresh.to_publish, fresh.run_schedules)
        relayed = await relay(pool, publisher, batch_size=500, lease_s=LEASE_S, max_batches=1,
                              give_way=publishing.give_way)
    finally:
        await publishing.drain()
        await publisher.close()

    assert len(relayed.published) == SHARED_BATCH, "a short batch while fresh ones flow"
    fresh_at = await pool.fetchval("SELECT published_at FROM runs WHERE id = $1",
                                   fresh_run["run_id"])
    first_relayed = await pool.fetchval("SELECT min(published_at) FROM runs WHERE id = ANY($1)",
                                        relayed.published)
    assert fresh_at is not None and fresh_at <= first_relayed, "the fresh batch went first"


async def test_without_fresh_batches_the_relay_takes_full_ones(pool, amqp_url, queue):
    job = await make_job(pool, queue)
    await pool.execute(_BACKLOG, job, 1_000)
    publisher = Publisher(amqp_url, 5)
    publishing = Publishing(pool, publisher, Counters(), on_failure=lambda: None)
    try:
        relayed = await relay(pool, publisher, batch_size=500, lease_s=LEASE_S, max_batches=1,
                              give_way=publishing.give_way)
    finally:
        await publisher.close()
    assert len(relayed.published) == 500


BACKLOG = 50_000
FRESH_SLOTS = 3
BOUND_S = 2.0   # the lag a fresh slot may have; the backlog alone takes far longer


async def test_a_slot_due_during_a_drain_is_published_long_before_the_backlog(
        pool, db_url, amqp_url, queue, tmp_path):
    job = await make_job(pool, queue)
    await pool.execute(_BACKLOG, job, BACKLOG)
    await pool.execute("ANALYZE runs")
    schedule = await make_interval_schedule(pool, job, 1, behind_s=-1)   # due in 1 s, then every s
    scheduler = Scheduler(SchedulerSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url,
                                            HEALTH_DIR=str(tmp_path)))
    running = asyncio.create_task(scheduler.run())
    try:
        await wait_for(lambda: pool.fetchval(
            "SELECT count(published_at) >= $2 FROM runs WHERE schedule_id = $1",
            schedule, FRESH_SLOTS), timeout=60, what="the fresh slots published")
    finally:
        scheduler.stop()
        await running

    fresh = await pool.fetch(
        "SELECT extract(epoch FROM published_at - scheduled_for)::float8 AS lag, published_at"
        " FROM runs WHERE schedule_id = $1 AND published_at IS NOT NULL"
        " ORDER BY scheduled_for LIMIT $2", schedule, FRESH_SLOTS)
    assert [r["lag"] for r in fresh if r["lag"] > BOUND_S] == []
    relayed_by_then = await pool.fetchval(
        "SELECT count(*) FROM runs WHERE trigger = 'manual' AND published_at <= $1",
        fresh[-1]["published_at"])
    assert 0 < relayed_by_then < BACKLOG / 2, "the backlog drained meanwhile, and was far from done"
