"""The invariant checker run at the end of every fault-injection scenario.

Once the queues drain, plain SQL (and one look at `sundial.dead`) counts what must be
zero: missing slots, duplicate slots, runs completed more than once, runs stuck in
queued/running, unpublished runs, double executions seen by the probe job, and
dead-lettered messages nobody expected. `check()` prints the counts (with the seed)
and returns them; a scenario asserts they are all zero.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from urllib.parse import unquote, urlsplit

import aio_pika
import asyncpg

from sundial.core.broker import DEAD_LETTER_QUEUE
from sundial.core.schedule import Spec, first_fire, next_fire

FINAL = ("succeeded", "failed", "timed_out", "cancelled", "skipped", "dead")


def vhost_of(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path[1:]) or "/"


async def drain(conn: asyncpg.Connection, timeout: float = 60) -> bool:
    """Wait until no run is queued or running (False if some still are after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not await conn.fetchval(
                "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')"):
            return True
        await asyncio.sleep(0.25)
    return False


def slots_before(row: Mapping, until: datetime) -> list[datetime]:
    """Every slot of the schedule from its first one up to (excluding) `until`."""
    spec = Spec.from_row(row)
    slot = first_fire(spec, spec.start_at or spec.created_at)
    out: list[datetime] = []
    while slot is not None and slot < until:
        out.append(slot)
        slot = next_fire(spec, slot)
    return out


async def expected_run_all_slots(conn: asyncpg.Connection) -> dict[int, list[datetime]]:
    """run_all schedules whose grace outlasts any outage of the scenario: every slot
    before their next_run_at must have its run."""
    rows = await conn.fetch("SELECT * FROM schedules WHERE misfire_policy = 'run_all' "
                            "AND next_run_at IS NOT NULL AND kind = 'interval'")
    return {r["id"]: slots_before(r, r["next_run_at"]) for r in rows}


async def dead_letter_ids(amqp_url: str) -> list[tuple[str, str]]:
    """(message id, routing key) of the messages on `sundial.dead` in this vhost, left in
    place (gets are never acked: closing the channel requeues them). Dead-lettered
    messages keep their routing key: the job's queue."""
    ids: list[tuple[str, str]] = []
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        try:
            queue = await channel.get_queue(DEAD_LETTER_QUEUE)
        except aio_pika.exceptions.ChannelClosed:
            return ids
        while (message := await queue.get(no_ack=False, fail=False, timeout=5)) is not None:
            ids.append((str(message.message_id), str(message.routing_key)))
    return ids


async def check(conn: asyncpg.Connection, amqp_url: str, *, seed: int | str,
                expected_slots: Mapping[int, Iterable[datetime]] | None = None,
                expected_dead: Iterable[str] = (), killed: Iterable[int] | None = None,
                reruns: bool = False, drain_timeout: float = 60) -> dict[str, int]:
    """Counts of every invariant violation, printed with the seed.

    `expected_slots`: schedule id -> the exact slots it must have run (default: every
    slot of run_all interval schedules). `expected_dead`: message ids meant to end on
    `sundial.dead`. `killed`: pids of the workers the scenario killed: a run they were
    executing may legitimately execute again (taken over at the same attempt, or
    rescued at a later one); any other second execution is a double execution.
    `reruns`: a run may execute again at a later attempt (never twice at one attempt),
    as after a database cut longer than the lease; implied by `killed`.
    """
    await drain(conn, drain_timeout)
    counts: dict[str, int] = {}

    if expected_slots is None:
        expected_slots = await expected_run_all_slots(conn)
    missing = extra = 0
    for sid, slots in expected_slots.items():
        want = set(slots)
        have = {r["scheduled_for"] for r in await conn.fetch(
            "SELECT scheduled_for FROM runs WHERE schedule_id = $1", sid)}
        missing += len(want - have)
        extra += len(have - want)
    counts["missing_slots"] = missing
    counts["unexpected_slots"] = extra
    counts["duplicate_slots"] = await conn.fetchval(
        "SELECT count(*) - count(DISTINCT (schedule_id, scheduled_for)) FROM runs "
        "WHERE schedule_id IS NOT NULL")
    counts["schedules_behind"] = await conn.fetchval(
        "SELECT count(*) FROM schedules WHERE is_active AND next_run_at <= now()")
    # A final status with no finish time, or a finish time on a run not final: a run
    # ended twice (or half-way) would show here.
    counts["inconsistent_final"] = await conn.fetchval(
        "SELECT count(*) FROM runs WHERE (status = ANY($1)) <> (finished_at IS NOT NULL)",
        list(FINAL))
    counts["stuck_runs"] = await conn.fetchval(
        "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")
    counts["unpublished_runs"] = await conn.fetchval(
        "SELECT count(*) FROM runs WHERE published_at IS NULL")

    probe = await conn.fetchval("SELECT to_regclass('probe_executions') IS NOT NULL")
    if probe:
        counts["double_executions"] = await conn.fetchval(
            """SELECT ((SELECT coalesce(sum(executions - 1), 0) FROM probe_executions)
                     + (SELECT coalesce(sum(n - 1), 0)
                        FROM (SELECT count(*) AS n FROM probe_executions
                              WHERE pid <> ALL($1::int[])
                              GROUP BY run_id, attempt) survivors
                        WHERE n > 1))::bigint""", list(killed or ()))
        # Succeeded without its final attempt having executed: a completion recorded
        # for work that did not happen.
        counts["succeeded_unexecuted"] = await conn.fetchval(
            """SELECT count(*) FROM runs r JOIN jobs j ON j.id = r.job_id
               WHERE r.status = 'succeeded' AND j.payload->>'function' = 'chaos.probe'
                 AND NOT EXISTS (SELECT 1 FROM probe_executions p
                                 WHERE p.run_id = r.id AND p.attempt = r.attempt)""")
        if killed is None and not reruns:
            counts["double_completions"] = await conn.fetchval(
                "SELECT count(*) FROM (SELECT run_id FROM probe_executions "
                "GROUP BY run_id HAVING count(*) > 1) d")

    run_ids = {str(r["id"]) for r in await conn.fetch("SELECT id FROM runs")}
    expected_dead = set(expected_dead)
    # The vhost is shared by a test session and run ids restart with every database:
    # only the dead letters of this scenario's queues are its own.
    queues = {r["queue"] for r in await conn.fetch("SELECT DISTINCT queue FROM jobs")}
    dead = await dead_letter_ids(amqp_url)
    ours = [m for m, queue in dead if queue in queues and (m in run_ids or m in expected_dead)]
    counts["unexpected_dead_letters"] = sum(1 for m in ours if m not in expected_dead)
    counts["expected_dead_letters_missing"] = len(expected_dead - set(ours))

    totals = await conn.fetchrow(
        "SELECT count(*) AS runs, count(*) FILTER (WHERE status = 'succeeded') AS succeeded "
        "FROM runs")
    print(f"chaos-check seed={seed} runs={totals['runs']} succeeded={totals['succeeded']} "
          + json.dumps(counts, sort_keys=True))
    return counts


def violations(counts: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}
