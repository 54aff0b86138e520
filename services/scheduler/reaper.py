"""Liveness and retention: rescue runs whose worker stopped heartbeating, give runs whose
message was lost a fresh one, mark silent workers offline, delete finished runs past the
retention period, and forget workers long offline."""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

from sundial.core import faults
from sundial.core.logging import get_logger
from sundial.core.outbox import wake_scheduler
from sundial.core.sql import q

log = get_logger("scheduler.reaper")

# Retention deletes this many runs per statement, for at most this long per round.
RETENTION_BATCH = 5000
RETENTION_BUDGET_S = 10.0


@dataclass
class ReapResult:
    requeued: int = 0
    failed: int = 0
    workers_offline: int = 0
    republished: int = 0
    expired: int = 0  # failed: no worker could take them
    forgotten: int = 0  # workers and scheduler instances


async def reap(pool: asyncpg.Pool, *, lease_s: float, offline_after_s: float,
               republish_after_s: float, forget_after_s: float = 86400.0,
               expire_without_worker_s: float = 0.0, batch_size: int = 500) -> ReapResult:
    """Runs first, in one transaction (its wake-up on commit); the bookkeeping of workers
    and instances after it, each its own statement, so trouble there never undoes a
    rescue; last, the runs-by-status counts' appended rows are folded (run_counts)."""
    faults.reached("reap")
    result = ReapResult()
    async with pool.acquire() as conn, conn.transaction():
        if expire_without_worker_s > 0:
            expired = await conn.fetch(q("expire_untakeable_runs"), republish_after_s,
                                       expire_without_worker_s, batch_size)
            for run in expired:
                log.error("run.no_worker", run_id=run["id"], attempt=run["attempt"],
                          queue=run["queue"], handler=run["handler"],
                          waited_s=expire_without_worker_s)
            result.expired = len(expired)
        unstarted = await conn.fetch(q("republish_unstarted_runs"), republish_after_s,
                                     batch_size)
        for run in unstarted:
            log.warning("run.republished", run_id=run["id"], attempt=run["attempt"],
                        times=run["republished"],
                        reason="published but not started; its message may be lost")
        result.republished = len(unstarted)
        rescued = await conn.fetch(q("rescue_stale_runs"), lease_s, batch_size)
        for run in rescued:
            if run["status"] == "queued":
                result.requeued += 1
            else:
                result.failed += 1
            log.warning("run.rescued", run_id=run["id"], worker_id=run["worker_id"],
                        status=run["status"], attempt=run["attempt"])
        if result.requeued or result.republished:
            await wake_scheduler(conn, "rescued")
    offline = await pool.fetch(q("mark_workers_offline"), offline_after_s)
    for worker in offline:
        log.warning("worker.offline", worker_id=worker["id"])
    result.workers_offline = len(offline)
    forgotten = await pool.fetch(q("forget_workers"), forget_after_s)
    forgotten += await pool.fetch(q("forget_scheduler_instances"), forget_after_s)
    if forgotten:
        log.info("instances.forgotten", ids=[row["id"] for row in forgotten])
    result.forgotten = len(forgotten)
    await pool.fetchval(q("compact_run_counts"))
    return result


async def delete_old_runs(pool: asyncpg.Pool, *, retention_days: float,
                          batch_size: int = RETENTION_BATCH,
                          budget_s: float = RETENTION_BUDGET_S) -> int:
    """Delete in batches (short transactions, one instance at a time) until fewer than a
    batch are left or `budget_s` has passed; returns how many runs went."""
    faults.reached("retention")
    deleted = 0
    started = time.monotonic()
    while True:
        status = await pool.execute(q("delete_old_runs"), retention_days, batch_size)
        n = int(status.split()[-1])
        deleted += n
        if n < batch_size or time.monotonic() - started >= budget_s:
            break
    if deleted:
        log.info("runs.retention_deleted", runs=deleted, retention_days=retention_days)
    return deleted
