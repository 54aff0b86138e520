"""The batch claim's priority look-up costs nothing while no run above priority 0 waits:
a queue shared by a thousand jobs is not probed job by job for every message."""

from __future__ import annotations

import json

from sundial.core.sql import q


def _buffers(plan: dict) -> int:
    return plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)


async def test_a_claim_on_a_queue_of_a_thousand_jobs_reads_a_few_pages(pool, queue) -> None:
    await pool.execute(
        "INSERT INTO jobs (name, handler, queue) "
        "SELECT 'many-' || g, 'noop', $1 FROM generate_series(1, 1000) AS g", queue)
    await pool.execute(
        "INSERT INTO runs (job_id, scheduled_for, trigger, status, available_at, published_at) "
        "SELECT id, now(), 'manual', 'queued', now() - interval '1 s', now() FROM jobs "
        "WHERE queue = $1", queue)
    await pool.execute("ANALYZE jobs")
    await pool.execute("ANALYZE runs")
    run_id = await pool.fetchval("SELECT min(id) FROM runs")

    async def claim_buffers() -> tuple[int, list]:
        """The claim's plan and what it started, rolled back (the run stays queued)."""
        async with pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                raw = await conn.fetchval(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + q("claim_run"),
                    run_id, 1, "w1", ["noop"], [queue], True)
                claimed = await conn.fetch("SELECT id FROM runs WHERE status = 'running'")
            finally:
                await transaction.rollback()
        plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
        return _buffers(plan), claimed

    buffers, claimed = await claim_buffers()
    assert [r["id"] for r in claimed] == [run_id]
    assert buffers < 100, f"the claim read {buffers} pages: it probed every job of the queue"

    # A run above priority 0 waiting on the same queue: the look-up runs, and the better
    # run is the one started.
    better = await pool.fetchval(
        "UPDATE runs SET priority = 5 WHERE id = (SELECT max(id) FROM runs) RETURNING id")
    _, claimed = await claim_buffers()
    assert [r["id"] for r in claimed] == [better]
