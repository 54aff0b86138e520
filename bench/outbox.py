"""6. The outbox at a million runs: what a scheduler pass costs, and how fast the relay
drains it.

Pass cost: one pass's planning statements, timed in process (median of PASSES): `tick`
(claim, plan, insert and advance, one transaction) of SCHEDULES due schedules plus the
sleep-time query, first against an empty outbox, then in the same database after
OUTBOX_RUNS queued, unpublished runs were inserted with SQL (vacuumed, analysed); the
figure is the ratio. Between passes (untimed) the schedules are made due again and the
pass's own runs marked published, so each pass does the same work.

Drain rate: one `sundial scheduler` process relays that outbox for DRAIN_S seconds;
runs confirmed by RabbitMQ and marked `published_at`, per second (first to last
`published_at`). The floor: RabbitMQ's own publish-with-confirms rate on the same
quorum queue, measured right after with the scheduler stopped and the queue purged,
FLOOR_MESSAGES messages of the same size: the faster of a bare aiormq publisher
(BARE_IN_FLIGHT unconfirmed at every moment) and Sundial's publisher without the
database (batches of RELAY_BATCH, like a relay batch).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime

import aiormq
import asyncpg

from bench import infra, seed
from sundial.core.broker import EXCHANGE, Outgoing, Publisher, queue_name
from sundial.core.db import create_pool
from sundial.core.messages import encode_run
from sundial.core.settings import Settings
from sundial.core.sql import q
from sundial.scheduler.tick import tick

SCHEDULES = 500          # one full tick batch (SCHEDULER_BATCH_SIZE's default)
PASSES = 30
WARM_UP = 5
RELAY_BATCH = 500
FLOOR_MESSAGES = 100_000
# The bare publisher keeps this many unconfirmed at every moment (a sliding window).
BARE_IN_FLIGHT = 1_000
DELIVERY_LIMIT = Settings.model_fields["delivery_limit"].default   # as the scheduler's

_OUTBOX = """
INSERT INTO runs (job_id, scheduled_for, trigger, status, attempt, max_attempts, available_at)
SELECT j.first_id + g % j.n, t.at, 'manual', 'queued', 1, 1, t.at
FROM generate_series(1, $1) AS g,
     LATERAL (SELECT now() - make_interval(secs => 3600 - g * 0.001) AS at) AS t,
     (SELECT min(id) AS first_id, count(*) AS n FROM jobs) AS j
"""


async def measure(outbox_runs: int, drain_s: float) -> dict:
    async with infra.database("outbox") as db:
        with infra.vhost("outbox") as amqp:
            await seed.schedules(db, SCHEDULES, every_s=3600, first_in_s=-1)
            empty = await _pass_ms(db)
            started = time.monotonic()
            await fill_outbox(db, outbox_runs)
            filled_s = time.monotonic() - started
            full = await _pass_ms(db)
            drain = await _drain(db, amqp, drain_s)
            floor = await broker_floor(amqp, drain["message_bytes"])
    return {
        "outbox_runs": outbox_runs, "insert_s": filled_s, "schedules_per_pass": SCHEDULES,
        "pass_empty_ms": empty, "pass_full_ms": full,
        "pass_ratio": full["p50_ms"] / empty["p50_ms"],
        "drain": drain, "broker_floor": floor,
        "drain_vs_floor": drain["rate_per_s"] / floor["rate_per_s"],
        "command": "tick + seconds_until_next_work in process; sundial scheduler (defaults)",
    }


async def fill_outbox(db: str, runs: int) -> None:
    """`runs` queued, unpublished manual runs of the jobs present, available over the last
    hour, then vacuumed and analysed."""
    conn = await asyncpg.connect(db)
    try:
        await conn.execute(_OUTBOX, runs)
        await conn.execute("VACUUM ANALYZE runs")
    finally:
        await conn.close()


async def _pass_ms(db: str) -> dict:
    """Median and spread of PASSES passes' planning, after WARM_UP untimed ones."""
    pool = await create_pool(db, min_size=1, max_size=2)
    try:
        times: list[float] = []
        for i in range(WARM_UP + PASSES):
            await pool.execute("UPDATE schedules SET next_run_at = now() - interval '1 ms'")
            started = time.perf_counter()
            result = await tick(pool, batch_size=SCHEDULES, look_ahead_s=0.0, lease_s=30.0)
            await pool.fetchrow(q("seconds_until_next_work"))
            elapsed = time.perf_counter() - started
            assert result.created == SCHEDULES, result
            await pool.execute("UPDATE runs SET published_at = now(), publish_lease_until = NULL "
                               "WHERE id = ANY($1::bigint[])",
                               [r["run_id"] for r in result.to_publish])
            if i >= WARM_UP:
                times.append(elapsed * 1000)
    finally:
        await pool.close()
    return {"p50_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "passes": len(times)}


async def _drain(db: str, amqp: str, drain_s: float) -> dict:
    proc = infra.sundial("sundial-outbox-drain", ["scheduler"], infra.sundial_env(db, amqp))
    try:
        await asyncio.sleep(drain_s)
        cpu = proc.usage()
    finally:
        proc.stop()
    conn = await asyncpg.connect(db)
    try:
        row = await published_span(conn, "trigger = 'manual'")
        left = await conn.fetchval("SELECT count(*) FROM runs WHERE published_at IS NULL")
        size = await message_bytes(conn)
    finally:
        await conn.close()
    if not row["published"] or not row["seconds"]:
        raise RuntimeError(f"the relay published {row['published']} runs in {drain_s:.0f} s "
                           f"(see {proc.log_path})")
    return {"published": row["published"], "seconds": row["seconds"],
            "rate_per_s": row["published"] / row["seconds"], "left_in_outbox": left,
            "window_s": drain_s, "scheduler_cpu_s": cpu.cpu_s, "scheduler_rss_mb": cpu.rss_mb,
            "message_bytes": size}


async def published_span(conn: asyncpg.Connection, where: str = "true") -> asyncpg.Record:
    """The runs published (of those matching `where`) and the seconds from the first
    `published_at` to the last."""
    return await conn.fetchrow(
        "SELECT count(*) AS published,"
        " extract(epoch FROM max(published_at) - min(published_at))::float8 AS seconds"
        f" FROM runs WHERE published_at IS NOT NULL AND {where}")


async def message_bytes(conn: asyncpg.Connection) -> int:
    """The size of the message of a run of the outbox filled by `fill_outbox`."""
    sample = await conn.fetchrow(
        "SELECT r.id AS run_id, r.job_id, j.name AS job, j.handler, j.payload,"
        " r.schedule_id, r.scheduled_for, r.attempt, j.timeout_seconds"
        " FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.trigger = 'manual' LIMIT 1")
    return len(encode_run(dict(sample)))


async def broker_floor(amqp: str, message_bytes: int, messages: int = FLOOR_MESSAGES) -> dict:
    """RabbitMQ's publish-with-confirms rate on the queue the relay filled (emptied
    first), without a database: a bare aiormq publisher (one `basic_publish` per message),
    and Sundial's own publisher alone (the relay's framing, no claim, no mark)."""
    body = encode_run({"run_id": 1, "job_id": 1, "job": "bench-1", "handler": "noop",
                       "payload": {}, "schedule_id": None,
                       "scheduled_for": datetime.now(UTC), "attempt": 1,
                       "timeout_seconds": None})
    body += b" " * max(0, message_bytes - len(body))
    connection = await aiormq.connect(amqp)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.queue_purge(queue_name(seed.QUEUE))
        properties = aiormq.spec.Basic.Properties(content_type="application/json",
                                                  delivery_mode=2)
        started = time.perf_counter()
        await _publish_window(channel, body, properties, messages, BARE_IN_FLIGHT)
        bare_s = time.perf_counter() - started
        await channel.queue_purge(queue_name(seed.QUEUE))
    finally:
        await connection.close()
    publisher = Publisher(amqp, DELIVERY_LIMIT)
    try:
        batch = [Outgoing(i, seed.QUEUE, body) for i in range(RELAY_BATCH)]
        assert not any(await publisher.publish_many(batch))   # connected, queue declared
        started = time.perf_counter()
        for _ in range(messages // RELAY_BATCH):
            errors = await publisher.publish_many(batch)
            assert not any(errors), errors
        publisher_s = time.perf_counter() - started
    finally:
        await publisher.close()
    sent = messages // RELAY_BATCH * RELAY_BATCH
    return {"messages": messages, "in_flight": RELAY_BATCH, "bare_in_flight": BARE_IN_FLIGHT,
            "message_bytes": len(body),
            "bare_aiormq_per_s": messages / bare_s,
            "sundial_publisher_per_s": sent / publisher_s,
            "rate_per_s": max(messages / bare_s, sent / publisher_s)}


async def _publish_window(channel: aiormq.abc.AbstractChannel, body: bytes,
                          properties: aiormq.spec.Basic.Properties, messages: int,
                          in_flight: int) -> None:
    """`messages` aiormq `basic_publish` calls, each awaiting its confirm, `in_flight` of
    them outstanding at every moment (a new one starts as soon as one is confirmed, not
    once a whole batch is)."""
    window = asyncio.Semaphore(in_flight)
    failures: list[BaseException] = []

    async def one() -> None:
        try:
            await channel.basic_publish(body, exchange=EXCHANGE, routing_key=seed.QUEUE,
                                        properties=properties, mandatory=True)
        except Exception as exc:  # counted, raised below: the floor is of confirmed messages
            failures.append(exc)
        finally:
            window.release()

    tasks = []
    for _ in range(messages):
        await window.acquire()
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    if failures:
        raise RuntimeError(f"{len(failures)} of {messages} not confirmed: {failures[0]!r}")
