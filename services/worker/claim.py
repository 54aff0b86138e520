"""Claiming a run before executing it: one conditional UPDATE decides who runs what.

The claim names the attempt, so a stale duplicate of an earlier attempt can never
start a retry early; a run that is taken, finished or cancelled is not claimed again.
The job's concurrency policy is applied in the same transaction, serialised per job.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import asyncpg

from core.messages import RunMessage
from core.sql import q


class Claim(enum.Enum):
    CLAIMED = "claimed"        # ours to execute
    SKIPPED = "skipped"        # forbid: the job already has a running run
    CANCELLED = "cancelled"    # cancel requested before it started
    DUPLICATE = "duplicate"    # already taken, finished, or another attempt
    UNKNOWN = "unknown"        # no such run


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    run: asyncpg.Record | None = None
    detail: str | None = None


async def claim(conn: asyncpg.Connection, message: RunMessage, worker_id: str) -> ClaimResult:
    async with conn.transaction():
        policy = await conn.fetchval(q("job_concurrency_policy"), message.job_id)
        if policy in ("forbid", "replace"):
            await conn.execute(q("lock_job_runs"), message.job_id)
        if policy == "forbid":
            skipped = await conn.fetchrow(q("skip_run_if_job_busy"), message.run_id, message.attempt)
            if skipped is not None:
                return ClaimResult(Claim.SKIPPED, detail=f"run {skipped['running_id']} is running")
        run = await conn.fetchrow(q("claim_run"), message.run_id, message.attempt, worker_id)
        if run is not None:
            if policy == "replace":
                replaced = await conn.fetch(q("cancel_other_runs_of_job"), run["job_id"], run["id"])
                detail = f"replacing runs {[r['id'] for r in replaced]}" if replaced else None
                return ClaimResult(Claim.CLAIMED, run, detail)
            return ClaimResult(Claim.CLAIMED, run)
        cancelled = await conn.fetchval(q("end_queued_run"), message.run_id, message.attempt,
                                        "cancelled", "cancelled before it started")
        if cancelled is not None:
            return ClaimResult(Claim.CANCELLED)
        state = await conn.fetchrow(q("run_state"), message.run_id)
        if state is None:
            return ClaimResult(Claim.UNKNOWN)
        return ClaimResult(Claim.DUPLICATE,
                           detail=f"run is {state['status']} at attempt {state['attempt']}")


async def end_unstarted(conn: asyncpg.Connection, message: RunMessage, status: str,
                        error: str) -> bool:
    """End a queued run that will not start ('failed' or 'dead'); False if not queued."""
    ended = await conn.fetchval(q("end_queued_run"), message.run_id, message.attempt, status, error)
    return ended is not None
