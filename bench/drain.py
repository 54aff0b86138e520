"""7. After an outage: a million unpublished runs drain while schedules keep falling due.

The outbox is filled with OUTBOX_RUNS queued, unpublished runs by SQL (what a broker
outage at production rates leaves behind; `bench.outbox.fill_outbox`), and FRESH interval
schedules of 1 s are set to fall due from LEAD_S after one `sundial scheduler` starts, their
phases spread over the second. The scheduler relays the backlog and ticks the fresh slots
for WINDOW_S seconds, then stops.

Reported: the backlog's drain rate (backlog runs published, first to last `published_at`
in the window) and the whole throughput (backlog + fresh), next to RabbitMQ's own
publish-with-confirms rate on the same queue measured right after (`bench.outbox.
broker_floor`); the time the whole backlog takes at that rate; and the fire lag
(`published_at - scheduled_for`) of the fresh slots due from WARM_UP_S after the first to
TAIL_S before the stop. A fresh slot with no run, or a run not yet published at the stop,
counts with the lag it had at the stop (a lower bound), so a starved slot shows.
Checked: the queue holds exactly one message per published run (nothing lost, nothing
published twice). First, as the peer: the same fresh schedules for up to CONTROL_S with
an empty outbox (the lag this machine gives them without a backlog).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench import infra, seed
from bench.outbox import broker_floor, fill_outbox, message_bytes, published_span
from bench.stats import summary_ms
from sundial.core.broker import queue_name

LEAD_S = 5.0        # first fresh slot this long after the process starts (it is up by then)
WARM_UP_S = 2.0     # fresh slots of the first seconds are not counted
TAIL_S = 2.0        # nor those of the last seconds (the stop cuts their publishing short)
FLOOR_MESSAGES = 30_000
# The same fresh schedules with an empty outbox, for this long, first: the lag the machine
# gives them without a backlog.
CONTROL_S = 60.0
BUCKET_S = 10.0

# The fresh schedules' first slots: LEAD_S from now, spread over one second, on their grid.
_FRESH = """
UPDATE schedules s
SET next_run_at = now() + make_interval(secs => $1 + (s.id - lo.id) / $2::float8),
    start_at = now() + make_interval(secs => $1 + (s.id - lo.id) / $2::float8)
FROM (SELECT min(id) AS id FROM schedules) AS lo
RETURNING extract(epoch FROM next_run_at)::float8 AS first
"""

# Every slot of the fresh schedules from $1 to $2 (epoch seconds), with its run if it has
# one: lag to `published_at`, or to the stop ($3) for a slot unpublished or not even ticked.
_FRESH_SLOTS = """
SELECT extract(epoch FROM coalesce(r.published_at, to_timestamp($3)) - slot.at)::float8 AS lag,
       extract(epoch FROM slot.at)::float8 AS at,
       extract(epoch FROM r.created_at - slot.at)::float8 AS to_tick,
       extract(epoch FROM r.published_at - r.created_at)::float8 AS to_publish,
       r.id IS NULL AS not_ticked,
       r.published_at IS NULL AS unpublished
FROM schedules s
CROSS JOIN LATERAL generate_series(
    s.start_at + make_interval(secs => ceil($1 - extract(epoch FROM s.start_at))),
    to_timestamp($2) - interval '1 microsecond',
    make_interval(secs => s.interval_seconds)) AS slot(at)
LEFT JOIN runs r ON r.schedule_id = s.id AND r.scheduled_for = slot.at
"""


async def measure(outbox_runs: int, fresh: int, window_s: float) -> dict:
    control_s = min(window_s, CONTROL_S)
    async with infra.database("drain_control") as db:
        with infra.vhost("drain_control") as amqp:
            await seed.schedules(db, fresh, every_s=1, first_in_s=86_400, spread_s=1.0)
            control = await _drain(db, amqp, fresh, control_s)
    async with infra.database("drain") as db:
        with infra.vhost("drain") as amqp:
            # Far ahead while the outbox fills; made due just before the scheduler starts.
            await seed.schedules(db, fresh, every_s=1, first_in_s=86_400, spread_s=1.0)
            started = time.monotonic()
            await fill_outbox(db, outbox_runs)
            filled_s = time.monotonic() - started
            drain = await _drain(db, amqp, fresh, window_s)
            if not drain["backlog"]["published"] or not drain["backlog"]["seconds"]:
                raise RuntimeError(f"the relay published {drain['backlog']['published']} runs "
                                   "of the backlog (see bench/logs/sundial-drain.log)")
            floor = await broker_floor(amqp, drain["message_bytes"], FLOOR_MESSAGES)
    backlog_rate = drain["backlog"]["rate_per_s"]
    return {
        "outbox_runs": outbox_runs, "insert_s": filled_s, "fresh_schedules": fresh,
        "fresh_per_s": fresh, "window_s": window_s, **drain, "broker_floor": floor,
        "empty_outbox": {"window_s": control_s, "total_rate_per_s": control["total_rate_per_s"],
                         "fresh_lag": control["fresh_lag"]},
        "backlog_vs_floor": backlog_rate / floor["rate_per_s"],
        "total_vs_floor": drain["total_rate_per_s"] / floor["rate_per_s"],
        "whole_backlog_s": outbox_runs / backlog_rate,
        "command": f"sundial scheduler (defaults); {outbox_runs:,} runs in the outbox, "
                   f"{fresh:,} interval schedules of 1 s, phases spread",
    }


async def _drain(db: str, amqp: str, fresh: int, window_s: float) -> dict:
    conn = await asyncpg.connect(db)
    try:
        first = min(r["first"] for r in await conn.fetch(_FRESH, LEAD_S, fresh))
        proc = infra.sundial("sundial-drain", ["scheduler"], infra.sundial_env(db, amqp))
        try:
            await asyncio.sleep(max(0.0, first + window_s - time.time()))
            cpu = proc.usage()
        finally:
            stopped = time.time()
            proc.stop()
        backlog = await published_span(conn, "trigger = 'manual'")
        left = await conn.fetchval(
            "SELECT count(*) FROM runs WHERE trigger = 'manual' AND published_at IS NULL")
        window = await published_span(conn)
        runs = await conn.fetchval("SELECT count(*) FROM runs")
        lo, hi = first + WARM_UP_S, stopped - TAIL_S
        rows = await conn.fetch(_FRESH_SLOTS, lo, hi, stopped)
        size = await message_bytes(conn) if backlog["published"] else None
    finally:
        await conn.close()
    # A run confirmed but not yet marked when the stop cut its batch short is in the queue
    # and still unpublished in the outbox (the relay would publish it again: allowed).
    in_queue = await infra.queue_depth(amqp, queue_name(seed.QUEUE))
    if not window["published"] <= in_queue <= runs:
        raise RuntimeError(f"{window['published']} runs marked published of {runs}, {in_queue} "
                           f"messages in the queue (see {proc.log_path})")
    lags = [r["lag"] for r in rows]
    return {
        "backlog": {"published": backlog["published"], "seconds": backlog["seconds"],
                    "rate_per_s": backlog["published"] / (backlog["seconds"] or 1),
                    "left_in_outbox": left},
        "total_published": window["published"], "messages_in_queue": in_queue,
        "total_rate_per_s": window["published"] / window["seconds"],
        "fresh_lag": {**summary_ms(lags), "slots_from_s": WARM_UP_S,
                      # Where the lag goes: slot -> the tick's transaction -> confirm recorded.
                      "breakdown": {
                          "slot_to_tick": summary_ms([r["to_tick"] for r in rows
                                                      if r["to_tick"] is not None]),
                          "tick_to_published": summary_ms([r["to_publish"] for r in rows
                                                           if r["to_publish"] is not None])},
                      "slots_to_s": hi - first,
                      # The worst lag of the slots of each BUCKET_S of the window, in order:
                      # whether the tail is the drain's start or all along.
                      "max_ms_by_bucket": _worst_by_bucket(rows, lo),
                      "unpublished_at_stop": sum(1 for r in rows if r["unpublished"]),
                      "not_ticked_at_stop": sum(1 for r in rows if r["not_ticked"])},
        "scheduler_cpu_s": cpu.cpu_s, "scheduler_rss_mb": cpu.rss_mb,
        "message_bytes": size,
    }


def _worst_by_bucket(rows: list, lo: float) -> list[float]:
    worst: dict[int, float] = {}
    for r in rows:
        b = int((r["at"] - lo) // BUCKET_S)
        worst[b] = max(worst.get(b, 0.0), r["lag"] * 1000)
    return [round(worst[b], 1) for b in sorted(worst)]
