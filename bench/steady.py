"""7. Steady load next to the broker's own ceiling.

Ceiling: RabbitMQ's own publish-with-confirms rate, in the vhost Sundial then uses: bare
aiormq `basic_publish` (persistent, `mandatory`, a message id, publisher confirms) to
the `sundial.runs` exchange and its durable quorum queue `sundial.bench` (declared as
Sundial declares it), messages the size of a run message, for CEILING_S seconds at each
window of WINDOWS messages in flight (that many publishers each awaiting its confirm
before the next); the best window is the ceiling.

Steady: `count` interval schedules every `period` seconds, phases spread evenly (so
count / period slots fall due each second), one `sundial scheduler` with default
settings for `seconds` seconds; the first WARM_UP_S are not counted. Fire lag =
`published_at - scheduled_for`; a slot of the window without a published run by the
end counts as infinitely late. Backlog: overdue schedules and unpublished runs sampled
every SAMPLE_S, and the lag of the first minute against the last.

Ladder: shorter steady windows at fractions of the ceiling, from LADDER_START up while
they hold, then bisecting; the highest rate whose p99 lag stays within GOAL_P99_MS
(slots not published by the end counted) is the rate Sundial holds.

During all of it one consumer process (`python -m bench.steady consume`, bare aiormq,
one ack per message) drains the queue, so the broker does the same work for the
ceiling and for Sundial.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import resource
import signal
import time
from datetime import UTC, datetime

import aio_pika
import aiormq
import asyncpg

from bench import infra, seed
from bench.stats import percentile, summary_ms
from sundial.core.broker import EXCHANGE, declare_topology, queue_name
from sundial.core.messages import CONTENT_TYPE, encode_run
from sundial.core.settings import Settings

# (messages in flight, channels they are spread over): the broker runs each channel in a
# process of its own, so several may reach further than one.
WINDOWS = ((100, 1), (2000, 1), (2000, 4), (2000, 8))
CEILING_S = 10.0
LEAD_S = 6.0            # first slots this long after seeding ends: the scheduler is up by then
WARM_UP_S = 10.0
SAMPLE_S = 5.0
BUCKET_S = 10.0
GOAL_P99_MS = 100.0
PREFETCH = 2000
DELIVERY_LIMIT = Settings.model_fields["delivery_limit"].default   # as the scheduler's
# Ladder: first this fraction of the ceiling, then up by LADDER_UP while it holds, and
# halfway between the highest that held (or 0) and the lowest that did not once one fails.
LADDER_START = 0.8
LADDER_UP = 0.2


def run_message_body() -> bytes:
    """A run message as the scheduler sends it for a seeded schedule."""
    return encode_run({"run_id": 1_234_567, "job_id": 1000, "job": "bench-1000",
                       "handler": "noop", "payload": {}, "schedule_id": 123_456,
                       "scheduled_for": datetime.now(UTC), "attempt": 1,
                       "timeout_seconds": None})


async def measure(sizes: dict) -> dict:
    body = run_message_body()
    with infra.vhost("steady") as amqp:
        await _declare(amqp)
        consumer = infra.python_module("steady-consumer", "bench.steady", ["consume", amqp])
        try:
            await _wait_consumer(amqp)
            ceiling = await broker_ceiling(amqp, body, sizes["steady_windows"],
                                           sizes["steady_ceiling_s"])
            main = await window(amqp, sizes["steady_schedules"], sizes["steady_period_s"],
                                sizes["steady_load_s"])
            ladder = await climb(amqp, ceiling["rate_per_s"], sizes["steady_ladder_period_s"],
                                 sizes["steady_ladder_s"], sizes["steady_ladder_steps"])
        finally:
            consumer.stop()
    held = [step for step in ladder if step["holds"]]
    best = max(held, key=lambda s: s["rate_per_s"]) if held else None
    return {"ceiling": ceiling, "steady": main, "ladder": ladder,
            "held_rate_per_s": best["rate_per_s"] if best else None,
            "held_vs_ceiling": best["rate_per_s"] / ceiling["rate_per_s"] if best else None,
            "steady_vs_ceiling": main["rate_per_s"] / ceiling["rate_per_s"],
            "goal_p99_ms": GOAL_P99_MS, "message_bytes": len(body),
            "command": "sundial scheduler (defaults); bare aiormq publisher and consumer"}


async def _declare(amqp: str) -> None:
    connection = await aio_pika.connect(amqp)
    try:
        await declare_topology(await connection.channel(), [seed.QUEUE], DELIVERY_LIMIT)
    finally:
        await connection.close()


async def _wait_consumer(amqp: str) -> None:
    async def consuming() -> bool:
        connection = await aiormq.connect(amqp)
        try:
            channel = await connection.channel()
            ok = await channel.queue_declare(queue_name(seed.QUEUE), passive=True)
            return ok.consumer_count > 0
        finally:
            await connection.close()
    await infra.wait_until(consuming, 30, "the consumer", every=0.2)


# --- the broker's ceiling --------------------------------------------------------------------

async def broker_ceiling(amqp: str, body: bytes, windows: tuple[tuple[int, int], ...],
                         seconds: float) -> dict:
    """Confirmed messages per second at each window; the best is the ceiling."""
    connection = await aiormq.connect(amqp)
    try:
        per_window = []
        for in_flight, channels in windows:
            opened = [await connection.channel(publisher_confirms=True) for _ in range(channels)]
            per_window.append(await _publish_for(opened, body, in_flight, seconds))
            for channel in opened:
                await channel.close()
    finally:
        await connection.close()
    best = max(per_window, key=lambda w: w["rate_per_s"])
    return {"windows": per_window, "best_in_flight": best["in_flight"],
            "best_channels": best["channels"], "rate_per_s": best["rate_per_s"],
            "message_bytes": len(body), "seconds": seconds}


async def _publish_for(channels: list[aiormq.Channel], body: bytes, in_flight: int,
                       seconds: float) -> dict:
    """`in_flight` publishers, each awaiting its confirm before the next, for `seconds`."""
    confirmed = 0
    counter = iter(range(1, 1 << 62))

    async def publisher(channel: aiormq.Channel, deadline: float) -> None:
        nonlocal confirmed
        while time.monotonic() < deadline:
            properties = aiormq.spec.Basic.Properties(
                content_type=CONTENT_TYPE, delivery_mode=2, message_id=str(next(counter)))
            await channel.basic_publish(body, exchange=EXCHANGE, routing_key=seed.QUEUE,
                                        properties=properties, mandatory=True)
            confirmed += 1

    cpu0 = _own_cpu()
    started = time.monotonic()
    await asyncio.gather(*(publisher(channels[i % len(channels)], started + seconds)
                           for i in range(in_flight)))
    elapsed = time.monotonic() - started
    rate = confirmed / elapsed
    # Little's law: with `in_flight` always waiting, each waits in_flight / rate.
    return {"in_flight": in_flight, "channels": len(channels), "confirmed": confirmed,
            "seconds": elapsed, "rate_per_s": rate, "mean_confirm_ms": in_flight / rate * 1000,
            "publisher_cpu_share": (_own_cpu() - cpu0) / elapsed}


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- Sundial under steady load ---------------------------------------------------------------

async def window(amqp: str, count: int, period_s: float, seconds: float) -> dict:
    """`count` schedules every `period_s` s for `seconds` s, one `sundial scheduler`."""
    rate = count / period_s
    async with infra.database("steady") as db:
        started = time.monotonic()
        # Seeded first with a generous lead, then moved so the first slots fall LEAD_S
        # after seeding ended, whatever seeding took.
        await seed.schedules(db, count, every_s=period_s, first_in_s=3600, spread_s=period_s)
        conn = await asyncpg.connect(db)
        try:
            await conn.execute(
                "UPDATE schedules SET next_run_at = next_run_at - d.shift,"
                " start_at = start_at - d.shift"
                " FROM (SELECT min(next_run_at) - now() - make_interval(secs => $1) AS shift"
                "       FROM schedules) AS d", LEAD_S)
            await conn.execute("VACUUM ANALYZE schedules")
            seeded_s = time.monotonic() - started
            first = await conn.fetchval(
                "SELECT extract(epoch FROM min(next_run_at))::float8 FROM schedules")
            proc = infra.sundial(f"sundial-steady-{round(rate)}", ["scheduler"],
                                 infra.sundial_env(db, amqp))
            try:
                samples = await _sample(conn, first + seconds + 1.0)
                cpu = proc.usage()
                db_cpu = await _backends_cpu(conn)
            finally:
                proc.stop()
            ran_s = time.time() - proc.started
            lo, hi = first + WARM_UP_S, first + seconds
            result = await _lags(conn, lo, hi, period_s)
            result["passes_per_s"] = await conn.fetchval(
                "SELECT coalesce(sum(ticks), 0)::float8 FROM scheduler_instances") / ran_s
        finally:
            await conn.close()
    return {**result, "schedules": count, "period_s": period_s, "rate_per_s": rate,
            "seconds": seconds, "warm_up_s": WARM_UP_S, "seed_s": seeded_s,
            "scheduler_cpu_share": cpu.cpu_s / ran_s, "scheduler_rss_mb": cpu.rss_mb,
            "database_cpu_share": db_cpu / ran_s,
            # Load-independent: CPU of the scheduler and of its database sessions per run.
            "cpu_ms_per_run": (cpu.cpu_s + db_cpu) * 1000 / max(1, result["created"]),
            "samples": samples, "holds": result["p99_ms"] is not None
            and result["p99_ms"] <= GOAL_P99_MS,
            "command": f"sundial scheduler; {count:,} interval schedules of {period_s:g} s, "
                       "phases spread"}


async def _backends_cpu(conn: asyncpg.Connection) -> float:
    """CPU seconds of the database's other sessions (the scheduler's) so far."""
    pids = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                            " AND pid <> pg_backend_pid()")
    total = 0.0
    for row in pids:
        with contextlib.suppress(OSError):
            total += infra.usage(row["pid"]).cpu_s
    return total


async def _sample(conn: asyncpg.Connection, until: float) -> list[dict]:
    """Overdue schedules (slot passed over 100 ms ago, not yet claimed) and runs created
    but not yet published, every SAMPLE_S until `until` (wall time)."""
    samples = []
    while (left := until - time.time()) > 0:
        await asyncio.sleep(min(SAMPLE_S, left))
        row = await conn.fetchrow(
            "SELECT extract(epoch FROM now())::float8 AS at,"
            " (SELECT count(*) FROM schedules WHERE is_active"
            "   AND next_run_at < now() - interval '100 ms') AS overdue,"
            " (SELECT count(*) FROM runs WHERE status = 'queued'"
            "   AND published_at IS NULL) AS unpublished")
        samples.append(dict(row))
    return samples


async def _lags(conn: asyncpg.Connection, lo: float, hi: float, period_s: float) -> dict:
    rows = await conn.fetch(
        "SELECT extract(epoch FROM scheduled_for)::float8 AS at,"
        " extract(epoch FROM published_at - scheduled_for)::float8 AS lag,"
        " extract(epoch FROM created_at - scheduled_for)::float8 AS claimed"
        " FROM runs WHERE scheduled_for >= to_timestamp($1) AND scheduled_for < to_timestamp($2)",
        lo, hi)
    # Every slot in [lo, hi) of every schedule: k >= 0 with lo <= start + k * period < hi.
    expected = await conn.fetchval(
        "SELECT coalesce(sum(greatest(0, ceil(($2 - s) / $3) - greatest(0, ceil(($1 - s) / $3)))),"
        " 0)::bigint FROM (SELECT extract(epoch FROM start_at)::float8 AS s FROM schedules) t",
        lo, hi, period_s)
    lags = [r["lag"] for r in rows if r["lag"] is not None]
    late = expected - len(lags)                   # no published run by the end
    counted = lags + [math.inf] * late
    buckets = []
    for start in _frange(lo, hi, BUCKET_S):
        in_bucket = [r for r in rows if start <= r["at"] < start + BUCKET_S]
        published = [r["lag"] for r in in_bucket if r["lag"] is not None]
        buckets.append({"from_s": start - lo, "runs": len(in_bucket),
                        "unpublished": len(in_bucket) - len(published),
                        "p50_ms": _ms(percentile(published, 50)),
                        "p99_ms": _ms(percentile(published, 99))})
    minute = min(60.0, (hi - lo) / 2)
    first = [r["lag"] for r in rows if r["at"] < lo + minute and r["lag"] is not None]
    last = [r["lag"] for r in rows if r["at"] >= hi - minute and r["lag"] is not None]
    created = await conn.fetchval("SELECT count(*) FROM runs")
    p99 = percentile(counted, 99)
    return {**summary_ms(lags), "created": created,
            # None: over 1 % of the window's slots had no published run by its end.
            "p99_ms": None if p99 is None or math.isinf(p99) else _ms(p99),
            "p99_published_only_ms": _ms(percentile(lags, 99)),
            "expected_slots": expected, "late_or_unpublished": late,
            "slot_to_tick": summary_ms([r["claimed"] for r in rows]),
            "trend": {"minute_s": minute, "first": summary_ms(first), "last": summary_ms(last)},
            "buckets": buckets}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _frange(lo: float, hi: float, step: float) -> list[float]:
    return [lo + i * step for i in range(math.ceil((hi - lo) / step))]


async def climb(amqp: str, ceiling: float, period_s: float, seconds: float,
                steps: int) -> list[dict]:
    """`steps` steady windows at fractions of the ceiling: from LADDER_START up while
    they hold, then bisecting between the highest that held and the lowest that did not."""
    tried: list[dict] = []
    held, failed = 0.0, None
    fraction = LADDER_START
    for _ in range(steps):
        count = max(1, round(ceiling * fraction * period_s))
        step = await window(amqp, count, period_s, seconds)
        step["fraction_of_ceiling"] = fraction
        step.pop("samples")
        tried.append(step)
        if step["holds"]:
            held = fraction
        else:
            failed = fraction if failed is None else min(failed, fraction)
        fraction = round(fraction + LADDER_UP if failed is None else (held + failed) / 2, 3)
    return tried


# --- the consumer process --------------------------------------------------------------------

async def consume(amqp: str) -> None:
    """Ack every message of the bench queue until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    connection = await aiormq.connect(amqp)
    acked = 0
    try:
        channel = await connection.channel()
        await channel.basic_qos(prefetch_count=PREFETCH)

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            nonlocal acked
            await message.channel.basic_ack(message.delivery.delivery_tag)
            acked += 1

        await channel.basic_consume(queue_name(seed.QUEUE), on_message, no_ack=False)
        await stop.wait()
    finally:
        print(f"consumer: acked {acked} messages", flush=True)
        with contextlib.suppress(Exception):
            await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.steady")
    parser.add_argument("role", choices=("consume",))
    parser.add_argument("amqp")
    args = parser.parse_args()
    asyncio.run(consume(args.amqp))


if __name__ == "__main__":
    main()
