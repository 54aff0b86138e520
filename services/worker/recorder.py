"""Results first, acks after: finished runs are written in batches (one transaction for
many, through unnest) and only then acknowledged, with one `multiple` ack where the
delivery tags allow it.

Under light load each run is written alone at once; under load, runs that finish while
a write is in progress go together in the next one, so throughput is not capped by
one commit per run.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field

import asyncpg
import prometheus_client as prom
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError

from sundial.core.broker import BROKER_ERRORS
from sundial.core.db import CLIENT_DATA_ERROR, CONNECTION_ERRORS, is_transient
from sundial.core.logging import get_logger
from sundial.core.outbox import wake_scheduler
from sundial.core.sql import q
from sundial.worker.executor import Held, Outcome

log = get_logger("worker.recorder")

RECORDED = prom.Counter("sundial_worker_runs_recorded_total", "Run outcomes recorded", ["outcome"])


BATCH = 500
WRITTEN_KINDS = ("succeeded", "failed", "timed_out", "cancelled", "retry", "release")


def _refused(exc: BaseException) -> bool:
    """The database (or the driver, encoding an argument) refuses the data itself:
    writing the same rows again cannot succeed. A database that is read-only for now,
    or a statement timeout, refuses nothing: the batch is written again later."""
    if isinstance(exc, CLIENT_DATA_ERROR):
        return True
    return isinstance(exc, asyncpg.PostgresError) and not is_transient(exc)


async def write_results(conn: asyncpg.Connection, worker_id: str,
                        outcomes: Sequence[tuple[int, int, Outcome]]) -> list[asyncpg.Record]:
    """Record (run id, attempt, outcome) of runs this worker holds: one statement, so one
    transaction. The wake-up for runs queued again follows its commit; if it is lost, the
    scheduler's once-a-second sweep finds them."""
    columns: list[list] = [[], [], [], [], [], [], []]
    for run_id, attempt, o in outcomes:
        for column, value in zip(columns, (run_id, attempt, o.kind, o.result, o.error,
                                           o.output, o.retry_in_s), strict=True):
            column.append(value)
    written = await conn.fetch(q("record_results"), worker_id, *columns)
    if any(row["kind"] in ("retry", "release") for row in written):
        with suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
            await wake_scheduler(conn, "retry")
    return written


@dataclass(eq=False)
class Finished:
    message: AbstractIncomingMessage
    held: Held | None = None          # None: nothing to write, only the ack
    outcome: Outcome | None = None


CLOSED = object()   # the channel of a message whose channel has closed


def channel_of(message: AbstractIncomingMessage) -> object:
    """The message's channel, or CLOSED: aio-pika's property raises once it has closed (its
    connection was lost, e.g. its broker node went)."""
    try:
        return message.channel
    except ChannelInvalidStateError:
        return CLOSED


class Acks:
    """Delivery tags per channel, so a `multiple` ack never covers a run still running."""

    def __init__(self) -> None:
        self._open: dict[object, set[int]] = defaultdict(set)

    def delivered(self, message: AbstractIncomingMessage) -> None:
        self._open[channel_of(message)].add(message.delivery_tag)

    def settled(self, message: AbstractIncomingMessage) -> None:
        self._open[channel_of(message)].discard(message.delivery_tag)

    def _forget_closed(self) -> None:
        for channel in [c for c in self._open if c is CLOSED or getattr(c, "is_closed", False)]:
            del self._open[channel]

    async def reject(self, message: AbstractIncomingMessage, *, requeue: bool) -> None:
        self.settled(message)
        try:
            await message.reject(requeue=requeue)
        except BROKER_ERRORS as exc:
            log.warning("message.reject_failed", message_id=message.message_id, error=repr(exc))

    async def ack(self, messages: list[AbstractIncomingMessage]) -> None:
        by_channel: dict[object, list[AbstractIncomingMessage]] = defaultdict(list)
        for m in messages:
            by_channel[channel_of(m)].append(m)
        gone = by_channel.pop(CLOSED, [])
        if gone:
            # Their channel closed with its connection: the broker gives the messages to
            # a consumer again, their runs are final by now, and they are acked then as
            # duplicates.
            self._forget_closed()
            log.warning("message.ack_failed", messages=len(gone), error="the channel closed")
        for channel, done in by_channel.items():
            open_tags = self._open[channel]
            done_tags = {m.delivery_tag for m in done}
            still_open = min((t for t in open_tags if t not in done_tags), default=None)
            prefix = [m for m in done if still_open is None or m.delivery_tag < still_open]
            rest = [m for m in done if m not in prefix]
            open_tags.difference_update(done_tags)
            try:
                if prefix:
                    top = max(prefix, key=lambda m: m.delivery_tag)
                    await top.ack(multiple=len(prefix) > 1)
                for m in rest:
                    await m.ack()
            except BROKER_ERRORS as exc:
                # The channel died (broker restart): the messages come back, their runs
                # are already final, and they are acked then as duplicates.
                self._open.pop(channel, None)
                log.warning("message.ack_failed", messages=len(done), error=repr(exc))


@dataclass
class Recorder:
    pool: asyncpg.Pool
    worker_id: str
    acks: Acks
    held: dict[tuple[int, int], Held]  # by (run id, attempt)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _pending: list[Finished] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, finished: Finished) -> None:
        self._pending.append(finished)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while True:
            if not self._pending:
                self._idle.set()
                await self._wake.wait()
            self._wake.clear()
            try:
                await self.run_once()
                failures = 0
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                failures += 1
                delay = min(10.0, 0.2 * 2 ** min(failures, 6)) * random.uniform(0.8, 1.2)
                log.error("worker.record_failed", runs=len(self._pending), error=repr(exc),
                          retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)

    async def run_once(self) -> None:
        """Write one batch, commit, then ack it."""
        batch = self._pending[:BATCH]
        if not batch:
            return
        to_write = [f for f in batch if f.held is not None and f.outcome is not None
                    and f.outcome.kind in WRITTEN_KINDS]
        if to_write:
            await self._write(to_write)
        del self._pending[:len(batch)]
        for f in batch:
            if f.held is not None:
                self.held.pop(f.held.key, None)
        await self.acks.ack([f.message for f in batch])

    async def _write(self, batch: list[Finished]) -> None:
        try:
            written = await self._commit(batch)
        except Exception as exc:
            if not _refused(exc):
                raise  # passing trouble: the whole batch is written again
            # One row the database refuses must not hold back the others forever.
            log.error("worker.record_refused", runs=len(batch), error=repr(exc))
            written = []
            for f in batch:
                written += await self._write_alone(f)
        self._log_written(batch, written)

    async def _write_alone(self, f: Finished) -> list[asyncpg.Record]:
        try:
            return await self._commit([f])
        except Exception as exc:
            if not _refused(exc):
                raise
            assert f.held is not None and f.outcome is not None
            log.error("run.result_refused", run_id=f.held.run_id, attempt=f.held.attempt,
                      outcome=f.outcome.kind, error=repr(exc))
            f.outcome = Outcome("failed", error=f"the database refused this run's {f.outcome.kind} "
                                                f"outcome: {type(exc).__name__}: {exc}"[:2000])
            return await self._commit([f])

    async def _commit(self, batch: list[Finished]) -> list[asyncpg.Record]:
        outcomes = []
        for f in batch:
            assert f.held is not None and f.outcome is not None
            outcomes.append((f.held.run_id, f.held.attempt, f.outcome))
        async with self.pool.acquire() as conn:
            return await write_results(conn, self.worker_id, outcomes)

    def _log_written(self, batch: list[Finished], written: list[asyncpg.Record]) -> None:
        kinds = {row["id"]: row["kind"] for row in written}
        for f in batch:
            assert f.held is not None and f.outcome is not None
            kind = kinds.get(f.held.run_id)
            self.counts[kind or "not_recorded"] += 1
            RECORDED.labels(kind or "not_recorded").inc()
            fields = dict(run_id=f.held.run_id, attempt=f.held.attempt, outcome=f.outcome.kind)
            if kind is None:
                log.warning("run.result_dropped", reason="no longer held by this worker", **fields)
            elif kind == "succeeded":
                log.debug("run.finished", **fields)
            elif kind == "retry":
                log.warning("run.retry_scheduled", error=f.outcome.error,
                            retry_in_s=round(f.outcome.retry_in_s, 2), **fields)
            else:
                log.warning("run.finished", error=f.outcome.error, **fields)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything added so far is written and acked."""
        if not self._pending:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except TimeoutError:
            return False
