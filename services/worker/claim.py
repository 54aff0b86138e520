"""Claiming a run before executing it: one conditional UPDATE decides who runs what.

The claim names the attempt, so a stale duplicate of an earlier attempt can never
start a retry early; a run that is taken, finished or cancelled is not claimed again.
The job's concurrency policy is applied in the same transaction, serialised per job.
Priority: a claim of a job with policy `allow` starts the highest-priority run waiting
on the message's queue instead of the message's own run when one ranks above it; the
message's run goes back to the outbox (worker.sql, claim_run).
Everything about the run (its job, handler, payload, secrets, timeout) is read from the
database: a message only says which run and attempt to look at.

`Claimer` batches: messages that arrive while a claim is in progress are claimed
together in one round trip (jobs with policy `allow`, the common case); anything that
statement does not claim goes through `claim` in its message's own task, which applies
the policy or explains why.

While a run taken over from a dead worker waits or executes here (quarantine.py), nothing
else may start in this worker: a claim then hands a startable run back instead (it stays
`queued`, and the outbox publishes it again for any worker of its queue).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg

from sundial.core.logging import get_logger
from sundial.core.messages import RunRef
from sundial.core.outbox import wake_scheduler
from sundial.core.sql import q
from sundial.worker.executor import RELEASE, Outcome
from sundial.worker.recorder import write_results

log = get_logger("worker.claim")


class Claim(enum.Enum):
    CLAIMED = "claimed"        # ours to execute
    SKIPPED = "skipped"        # forbid: the job already has a running run
    CANCELLED = "cancelled"    # cancel requested before it started
    RUNNING = "running"        # this attempt is running (on this or another worker)
    DUPLICATE = "duplicate"    # already finished, or another attempt
    UNKNOWN = "unknown"        # no such run
    NO_HANDLER = "no_handler"  # queued, but its job's handler is not one of this worker's
    NOT_HERE = "not_here"      # queued, but not available yet or not of this worker's queues
    HANDED_BACK = "handed_back"  # queued, but nothing may start here now: back to the outbox
    PAUSED = "paused"          # queued, but its queue is paused: back to the outbox


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    run: asyncpg.Record | None = None
    detail: str | None = None
    handler: str | None = None  # the job's handler and queue, for NO_HANDLER
    queue: str | None = None


T = TypeVar("T")
Db = Callable[[Callable[[asyncpg.Connection], Awaitable[T]]], Awaitable[T]]

BATCH = 500
# A run handed back to the outbox is published again after this pause, doubled each time
# it comes back (return_run_to_outbox).
OUTBOX_PAUSE_S = 1.0


async def claim(conn: asyncpg.Connection, message: RunRef, worker_id: str,
                handlers: Sequence[str], queues: Sequence[str], *,
                may_start: bool = True) -> ClaimResult:
    """Claim the message's attempt; with `may_start` false, claim nothing: a run that
    could start is handed back to the outbox, anything else is explained as usual."""
    async with conn.transaction():
        job = await conn.fetchrow(q("run_job"), message.run_id)
        if job is None:
            return ClaimResult(Claim.UNKNOWN)
        if job["status"] == "queued" and job["attempt"] == message.attempt:
            # A message for a run that is not due yet, or of another queue, decides nothing
            # (it is forged, or the job moved queue since: the relay's sweep sends a fresh
            # message where it belongs).
            if not job["available"] or job["queue"] not in queues:
                return ClaimResult(Claim.NOT_HERE, detail=f"queue {job['queue']!r}, available "
                                                          f"{'now' if job['available'] else 'later'}")
            if job["handler"] not in handlers:
                return ClaimResult(Claim.NO_HANDLER, handler=job["handler"], queue=job["queue"])
            if (job["paused"] and not job["cancel_requested"]
                    and await conn.fetchval(q("unpublish_run"), message.run_id,
                                            message.attempt) is not None):
                # Published before its queue was paused: the relay sends it again on resume.
                return ClaimResult(Claim.PAUSED, detail=f"queue {job['queue']!r} is paused")
            if (not may_start and not job["cancel_requested"]
                    and await return_to_outbox(conn, message, "handed back")):
                return ClaimResult(Claim.HANDED_BACK,
                                   detail="a run taken over from a dead worker runs alone here")
        if may_start:
            claimed = await _claim_by_policy(conn, message, job, worker_id, handlers, queues)
            if claimed is not None:
                return claimed
        cancelled = await conn.fetchval(q("end_queued_run"), message.run_id, message.attempt,
                                        "cancelled", "cancelled before it started")
        if cancelled is not None:
            return ClaimResult(Claim.CANCELLED)
        state = await conn.fetchrow(q("run_state"), message.run_id)
        if state is None:
            return ClaimResult(Claim.UNKNOWN)
        if state["status"] == "running" and state["attempt"] == message.attempt:
            return ClaimResult(Claim.RUNNING, detail=f"attempt {message.attempt} is running")
        return ClaimResult(Claim.DUPLICATE,
                           detail=f"run is {state['status']} at attempt {state['attempt']}")


async def _claim_by_policy(conn: asyncpg.Connection, message: RunRef, job: asyncpg.Record,
                           worker_id: str, handlers: Sequence[str],
                           queues: Sequence[str]) -> ClaimResult | None:
    """Claim under the job's concurrency policy: CLAIMED, SKIPPED, or None (not claimable)."""
    policy = job["concurrency_policy"]
    if policy in ("forbid", "replace"):
        await conn.execute(q("lock_job_runs"), job["job_id"])
    if policy == "forbid":
        skipped = await conn.fetchrow(q("skip_run_if_job_busy"), message.run_id, message.attempt)
        if skipped is not None:
            return ClaimResult(Claim.SKIPPED, detail=f"run {skipped['running_id']} is running")
    run = await conn.fetchrow(q("claim_run"), message.run_id, message.attempt, worker_id,
                              handlers, queues, False)
    if run is not None:
        if policy == "replace":
            replaced = await conn.fetch(q("cancel_other_runs_of_job"), run["job_id"], run["id"])
            detail = f"replacing runs {[r['id'] for r in replaced]}" if replaced else None
            return ClaimResult(Claim.CLAIMED, run, detail)
        return ClaimResult(Claim.CLAIMED, run)
    return None


async def return_to_outbox(conn: asyncpg.Connection, message: RunRef, why: str) -> bool:
    """A queued attempt goes back to the outbox: published again after a pause, without a
    requeue (which would count towards the delivery limit). False if it is not queued."""
    returned = await conn.fetchval(q("return_run_to_outbox"), message.run_id, message.attempt,
                                   OUTBOX_PAUSE_S)
    if returned is not None:
        await wake_scheduler(conn, why)
    return returned is not None


async def end_unstarted(conn: asyncpg.Connection, message: RunRef, status: str,
                        error: str) -> bool:
    """End a queued run that will not start ('failed' or 'dead'); False if not queued."""
    ended = await conn.fetchval(q("end_queued_run"), message.run_id, message.attempt, status, error)
    return ended is not None


@dataclass
class Claimer:
    """Claims runs for the consumer, many per round trip under load, one at once when idle.

    `db` runs a function on a pooled connection, waiting out a database restart.
    """

    db: Db
    worker_id: str
    handlers: Sequence[str]
    queues: Sequence[str]
    _pending: list[tuple[RunRef, asyncio.Future[ClaimResult | None]]] = field(
        default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def claim(self, message: RunRef, *, may_start: bool = True) -> ClaimResult:
        if not may_start:
            return await self.db(lambda c: claim(c, message, self.worker_id, self.handlers,
                                                 self.queues, may_start=False))
        future: asyncio.Future[ClaimResult | None] = asyncio.get_running_loop().create_future()
        self._pending.append((message, future))
        self._wake.set()
        result = await future
        if result is None:
            # Another policy, or not claimable (a second copy of a message in the same
            # batch included): the full claim, in this message's own task, applies the
            # policy or says why.
            result = await self.db(lambda c: claim(c, message, self.worker_id, self.handlers,
                                                   self.queues))
        return result

    async def run(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            try:
                await self._claim_batch(batch)
            except Exception as exc:
                # Not a lost connection (db waits those out). One message must not sink the
                # others that arrived with it: each gets its own full claim, in its own task.
                log.warning("worker.batch_claim_failed", runs=len(batch), error=repr(exc))
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _claim_batch(self, batch: list[tuple[RunRef, asyncio.Future]]) -> None:
        live = [(m, f) for m, f in batch if not f.done()]  # a cancelled waiter needs no claim
        if not live:
            return
        # One round trip and one transaction; each claim is found by its primary key
        # whatever the table's statistics say (a set-based UPDATE ... FROM unnest could
        # be planned as a scan of every queued run while the table is young). A claim may
        # start a run of higher priority than its message's.
        rows = await self.db(lambda c: c.fetchmany(
            q("claim_run"),
            [(m.run_id, m.attempt, self.worker_id, self.handlers, self.queues, True)
             for m, _ in live]))
        by_message = {(r["message_run_id"], r["message_attempt"]): r for r in rows}
        for message, future in live:
            if not future.done():
                row = by_message.pop((message.run_id, message.attempt), None)
                future.set_result(None if row is None else ClaimResult(Claim.CLAIMED, row))
        if any(r["swapped"] for r in rows):
            # Their messages' runs are back in the outbox: the relay publishes them now.
            await self.db(lambda c: wake_scheduler(c, "priority"))
        claimed = {(r["id"], r["attempt"]): r for r in by_message.values()}
        if claimed:
            # Claimed for waiters cancelled meanwhile (shutdown): queue them again at once,
            # the attempt not counted, for the outbox to publish.
            released = [(run_id, attempt, Outcome(RELEASE)) for run_id, attempt in claimed]
            await self.db(lambda c: write_results(c, self.worker_id, released))
