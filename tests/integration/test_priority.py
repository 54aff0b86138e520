"""Priority at the worker's claim, against a real PostgreSQL: a message starts the
highest-priority run waiting on its queue, and its own run goes back to the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from sundial.core.messages import RunRef
from sundial.worker.claim import Claim, Claimer, ClaimResult

QUEUE = "work"


async def _job(pool: asyncpg.Pool, name: str, priority: int, *, queue: str = QUEUE,
               policy: str = "allow") -> int:
    return await pool.fetchval(
        "INSERT INTO jobs (name, handler, queue, priority, concurrency_policy) "
        "VALUES ($1, 'noop', $2, $3, $4) RETURNING id", name, queue, priority, policy)


async def _runs(pool: asyncpg.Pool, job_id: int, n: int = 1, *, published: bool = True
                ) -> list[int]:
    """n queued runs of the job, with its priority, as the tick makes them."""
    rows = await pool.fetch(
        "INSERT INTO runs (job_id, scheduled_for, trigger, priority, published_at) "
        "SELECT j.id, now(), 'manual', j.priority, CASE WHEN $3 THEN now() END "
        "FROM jobs j, generate_series(1, $2) WHERE j.id = $1 RETURNING id",
        job_id, n, published)
    return [r["id"] for r in rows]


@pytest.fixture
async def claimer(pool: asyncpg.Pool) -> AsyncIterator[Claimer]:
    async def db(fn):
        async with pool.acquire() as conn:
            return await fn(conn)

    claimer = Claimer(db, "w1", ["noop"], [QUEUE])
    task = asyncio.create_task(claimer.run())
    yield claimer
    task.cancel()


async def _claim(claimer: Claimer, run_id: int) -> ClaimResult:
    return await claimer.claim(RunRef(version=1, run_id=run_id, attempt=1))


async def test_a_message_starts_the_highest_priority_run_waiting(pool, claimer) -> None:
    low = await _runs(pool, await _job(pool, "low", 0), 3)
    mid = await _runs(pool, await _job(pool, "mid", 5), 2)
    high = await _runs(pool, await _job(pool, "high", 9))

    taken = []
    for run_id in low:  # messages arrive in the order the runs were published
        result = await _claim(claimer, run_id)
        assert result.claim is Claim.CLAIMED
        taken.append(result.run["id"])
    assert taken == [*high, *mid], "by priority, then oldest first"

    rows = {r["id"]: r for r in await pool.fetch("SELECT id, status, published_at FROM runs")}
    for run_id in low:
        assert rows[run_id]["status"] == "queued" and rows[run_id]["published_at"] is None, \
            "its message started another run: back to the outbox for a fresh message"
    # The better runs' own messages find them taken.
    result = await _claim(claimer, high[0])
    assert result.claim is not Claim.CLAIMED
    result = await _claim(claimer, low[0])
    assert result.claim is Claim.CLAIMED and result.run["id"] == low[0]


async def test_only_a_better_run_this_worker_may_take_is_taken_instead(pool, claimer) -> None:
    low = await _runs(pool, await _job(pool, "low", 0), 1)
    await _runs(pool, await _job(pool, "elsewhere", 9, queue="other"))
    await _runs(pool, await _job(pool, "unpublished", 9), published=False)
    await _runs(pool, await _job(pool, "forbid", 9, policy="forbid"))
    other_handler = await _job(pool, "nohandler", 9)
    await pool.execute("UPDATE jobs SET handler = 'http' WHERE id = $1", other_handler)
    await _runs(pool, other_handler)
    result = await _claim(claimer, low[0])
    assert result.claim is Claim.CLAIMED and result.run["id"] == low[0]
    equal = await _runs(pool, await _job(pool, "equal", 0))
    later_low = await _runs(pool, await _job(pool, "low2", 0))
    result = await _claim(claimer, later_low[0])
    assert result.run["id"] == later_low[0], "an equal priority does not jump the queue"
    assert (await _claim(claimer, equal[0])).run["id"] == equal[0]


async def test_runs_take_their_jobs_priority(pool) -> None:
    from sundial.api.service import Service
    from sundial.api.settings import ApiSettings

    job_id = await _job(pool, "urgent", 7)
    svc = Service(pool, ApiSettings(DATABASE_URL="postgresql://x/y"))
    queued, _ = await svc.trigger_job("test", "urgent")
    assert await pool.fetchval("SELECT priority FROM runs WHERE id = $1", queued["run_id"]) == 7
    from sundial.api.schemas import TriggerBody
    queued, _ = await svc.trigger_job("test", job_id, TriggerBody(priority=2))
    assert await pool.fetchval("SELECT priority FROM runs WHERE id = $1", queued["run_id"]) == 2
