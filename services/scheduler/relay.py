"""The outbox relay: publish runs that are queued, unpublished and available — left by
a crashed instance, a broker outage, jitter, look-ahead or a retry's backoff."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from sundial.core import faults
from sundial.core.broker import Publisher
from sundial.core.outbox import PublishResult, publish_runs
from sundial.core.sql import q


@dataclass
class RelayResult(PublishResult):
    more: bool = False   # stopped at `max_batches`, all published: more may be pending


async def relay(pool: asyncpg.Pool, publisher: Publisher, *, batch_size: int,
                lease_s: float, max_batches: int = 20,
                stopping: asyncio.Event | None = None) -> RelayResult:
    """Publish what is pending, batch by batch: up to `max_batches`, and no batch more
    once `stopping` is set (each batch is bounded by the publisher's confirm deadline)."""
    faults.reached("relay")
    total = RelayResult()
    for _ in range(max_batches):
        if stopping is not None and stopping.is_set():
            return total
        async with pool.acquire() as conn:
            rows = await conn.fetch(q("claim_unpublished"), batch_size, lease_s)
        if not rows:
            return total
        result = await publish_runs(pool, publisher, [dict(r) for r in rows])
        total.published += result.published
        total.failed.update(result.failed)
        if result.failed or len(rows) < batch_size:
            return total
    total.more = True
    return total
