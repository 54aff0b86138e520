"""The outbox relay: publish runs that are queued, unpublished and available — left by
a crashed instance, a broker outage, jitter, look-ahead or a retry's backoff.

The tick's fresh batches share the publisher (one channel: confirms come in order) and
go first. Before each batch the relay gives way to the fresh batches in flight, and while
fresh batches flow it claims SHARED_BATCH runs at a time: a slot that falls due while a
million-run outbox drains waits behind one short relay batch, and the outbox drains with
what the broker has left."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from sundial.core import faults
from sundial.core.broker import Publisher
from sundial.core.outbox import PublishResult, publish_runs
from sundial.core.sql import q

# Runs per relay batch while the tick's fresh batches flow: about a tenth of a second of
# a broker's confirms, which is what a fresh slot may wait behind.
SHARED_BATCH = 100


@dataclass
class RelayResult(PublishResult):
    more: bool = False   # stopped at `max_batches`, all published: more may be pending


async def relay(pool: asyncpg.Pool, publisher: Publisher, *, batch_size: int,
                lease_s: float, max_batches: int = 20,
                stopping: asyncio.Event | None = None,
                give_way: Callable[[], Awaitable[bool]] | None = None) -> RelayResult:
    """Publish what is pending, batch by batch: up to `max_batches`, and no batch more
    once `stopping` is set (each batch is bounded by the publisher's confirm deadline).
    `give_way`, awaited before each batch, returns once fresh publishing lets the relay
    go on: True while fresh batches flow (the batch is then SHARED_BATCH at most)."""
    faults.reached("relay")
    total = RelayResult()
    for _ in range(max_batches):
        size = batch_size
        if give_way is not None and await give_way():
            size = min(batch_size, SHARED_BATCH)
        if stopping is not None and stopping.is_set():   # perhaps while giving way
            return total
        async with pool.acquire() as conn:
            rows = await conn.fetch(q("claim_unpublished"), size, lease_s)
        if not rows:
            return total
        result = await publish_runs(pool, publisher, [dict(r) for r in rows])
        total.published += result.published
        total.failed.update(result.failed)
        if result.failed or len(rows) < size:
            return total
    total.more = True
    return total
