"""The outbox relay: publish runs that are queued, unpublished and available — left by
a crashed instance, a broker outage, jitter, look-ahead or a retry's backoff."""

from __future__ import annotations

import asyncpg

from sundial.core.broker import Publisher
from sundial.core.outbox import PublishResult, publish_runs
from sundial.core.sql import q


async def relay(pool: asyncpg.Pool, publisher: Publisher, *, batch_size: int,
                lease_s: float, max_batches: int = 20) -> PublishResult:
    """Publish what is pending, batch by batch (bounded, so a tick is never starved)."""
    total = PublishResult()
    for _ in range(max_batches):
        async with pool.acquire() as conn:
            rows = await conn.fetch(q("claim_unpublished"), batch_size, lease_s)
        if not rows:
            break
        result = await publish_runs(pool, publisher, [dict(r) for r in rows])
        total.published += result.published
        total.failed.update(result.failed)
        if result.failed or len(rows) < batch_size:
            break
    return total
