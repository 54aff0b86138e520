"""The outbox's publishing step, shared by the scheduler (tick, relay) and the API
("run now"): publish committed runs with confirms, then record `published_at`.

A run is committed before it is published and marked only after the broker confirmed
it, so a crash anywhere leaves at worst an unpublished run (the relay publishes it) or
a message published twice (workers claim conditionally, so it executes once).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg

from sundial.core import faults
from sundial.core.messages import encode_run
from sundial.core.sql import q

if TYPE_CHECKING:
    from sundial.core.broker import Publisher

# Postgres NOTIFY channel the scheduler LISTENs on: schedules changed, a manual run,
# "trigger now", a retry set back to queued. The payload is a short reason.
WAKEUP_CHANNEL = "sundial_scheduler"


@dataclass
class PublishResult:
    published: list[int] = field(default_factory=list)
    failed: dict[int, BaseException] = field(default_factory=dict)
    held: list[int] = field(default_factory=list)  # of a paused queue: left in the outbox

    @property
    def first_error(self) -> BaseException | None:
        return next(iter(self.failed.values()), None)


async def publish_runs(pool: asyncpg.Pool, publisher: Publisher,
                       rows: Sequence[Mapping[str, Any]], *,
                       paused: Collection[str] | None = None) -> PublishResult:
    """Publish the runs (rows with the RunMessage fields, `job` = name, and `queue`; or
    with run_id, queue, attempt and the message's `body` already encoded).

    Never raises for broker trouble: failures are returned, their leases released. The
    runs of a paused queue are not published: their leases are released, and the relay
    leaves them alone until the queue is resumed. `paused`: the paused queues ('*': all),
    if the caller read them with its rows (one round trip fewer); None reads them here. The
    tick passes none: it leased its runs in a transaction that left those of paused queues
    out, and a pause committed since is the workers' to honour, as for a message sent just
    before a pause.
    """
    # Here, not at the top: what only enqueues (the admin commands) does not load aio-pika.
    from sundial.core.broker import BROKER_ERRORS, Outgoing

    result = PublishResult()
    if not rows:
        return result
    if paused is None:
        paused = {r["queue"] for r in await pool.fetch(q("paused_queues"))}
    if paused:
        result.held = [r["run_id"] for r in rows if "*" in paused or r["queue"] in paused]
        rows = [r for r in rows if not ("*" in paused or r["queue"] in paused)]
        await pool.execute(q("release_publish_lease"), result.held)
        if not rows:
            return result
    outgoing = [Outgoing(r["run_id"], r["queue"], r.get("body") or encode_run(r)) for r in rows]
    attempts = {r["run_id"]: r["attempt"] for r in rows}
    try:
        errors: Sequence[BaseException | None] = await publisher.publish_many(outgoing)
    except BROKER_ERRORS as exc:
        errors = [exc] * len(outgoing)
    for message, error in zip(outgoing, errors, strict=True):
        if error is None:
            result.published.append(message.run_id)
        else:
            result.failed[message.run_id] = error
    if result.published:
        faults.reached("before_mark_published")
    async with pool.acquire() as conn:
        if result.published:
            await conn.execute(q("mark_published"), result.published,
                               [attempts[run_id] for run_id in result.published])
        if result.failed:
            await conn.execute(q("release_publish_lease"), list(result.failed))
    return result


async def wake_scheduler(conn: asyncpg.Connection, reason: str) -> None:
    """Wake every scheduler now (on commit of the caller's transaction, if any)."""
    await conn.execute("SELECT pg_notify($1, $2)", WAKEUP_CHANNEL, reason)
