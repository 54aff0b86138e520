"""Consume run messages: decode, claim, execute, hand the outcome to the recorder.

Every message ends in exactly one of: acked after its result is committed (or as a
duplicate / skipped / cancelled run), rejected to sundial.dead (undecodable, unknown
run, delivered too often), or requeued (the worker is shutting down, or a bug before the
claim). A run whose handler only another worker has goes back to the outbox.
The connection is robust: after a broker restart the consumers are registered again.

A message the broker redelivers while its attempt is still running elsewhere is held
until that attempt ends (then acked) or its worker's heartbeat is older than the lease:
then this worker runs the attempt again. So a run whose execution kills its worker
comes back with every crash, as the broker counts deliveries, and at the delivery
limit it ends 'dead' and its message goes to sundial.dead.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

import aio_pika
import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from sundial.core.broker import BROKER_ERRORS, declare_base, declare_queue
from sundial.core.db import waiting_out
from sundial.core.logging import get_logger
from sundial.core.messages import RunRef, decode_ref
from sundial.core.outbox import wake_scheduler
from sundial.core.secrets import decrypt_fields, merge_secrets
from sundial.core.sql import q
from sundial.worker.claim import Claim, Claimer, ClaimResult, end_unstarted
from sundial.worker.executor import MAX_ERROR_CHARS, Held, Outcome, Retry, execute
from sundial.worker.handlers import HINTS, Handler, RunContext
from sundial.worker.quarantine import Quarantine
from sundial.worker.recorder import Finished, Recorder
from sundial.worker.settings import WorkerSettings

log = get_logger("worker.consumer")

T = TypeVar("T")
# A run whose handler only another worker of its queue has goes back to the outbox for
# this pause, doubled each time it comes back (return_run_to_outbox).
REQUEUE_PAUSE_S = 1.0
# Shutdown must not hang on a broker that is away.
BROKER_CALL_TIMEOUT_S = 5.0
# A redelivered message's attempt is looked at again this long after its lease runs out.
HOLDER_SLACK_S = 0.05
HOLDER_RETRY_S = 0.5
# What _outlast_holder found: the attempt is no longer running (it ended, or the reaper
# rescued it); there is no such run; it ended it 'dead'; it queued it again.
GONE = object()
MISSING = object()
ENDED = object()
REQUEUED = object()


def delivery_count(message: AbstractIncomingMessage) -> int:
    """How often the broker delivered this message before (its x-delivery-count header on a
    redelivery; anything but a whole number counts as none)."""
    value = (message.headers or {}).get("x-delivery-count")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class Consumer:
    def __init__(self, settings: WorkerSettings, pool: asyncpg.Pool, worker_id: str,
                 handlers: dict[str, Handler], recorder: Recorder):
        self.settings = settings
        self.pool = pool
        self.worker_id = worker_id
        self.handlers = handlers
        self.recorder = recorder
        self.held = recorder.held
        self.counts = recorder.counts
        self.tasks: set[asyncio.Task] = set()
        self._stopping = asyncio.Event()
        self.last_execution: float | None = None
        self._rng = random.Random()
        self._connection: AbstractRobustConnection | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._connected = False
        self.claimer = Claimer(self._db, worker_id, list(handlers), list(settings.worker_queues))
        self.quarantine = Quarantine()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def connected(self) -> bool:
        return self._connected

    # --- connection ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (waiting for the broker with backoff) and start consuming."""
        failures = 0
        while True:
            try:
                self._connection = await aio_pika.connect_robust(self.settings.rabbitmq_url,
                                                                 timeout=10)
                break
            except BROKER_ERRORS as exc:
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6)) * self._rng.uniform(0.8, 1.2)
                log.warning("broker.connect_retry", attempt=failures, error=repr(exc),
                            wait_s=round(delay, 2))
                await asyncio.sleep(delay)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self.settings.worker_concurrency)
        exchange = await declare_base(channel)
        for name in self.settings.worker_queues:
            queue = await declare_queue(channel, exchange, name, self.settings.delivery_limit)
            tag = await queue.consume(self._on_message)
            self._consumers.append((queue, tag))
        self._connection.close_callbacks.add(self._on_connection_lost)
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        self._connected = True
        log.info("worker.consuming", queues=list(self.settings.worker_queues),
                 prefetch=self.settings.worker_concurrency)

    def _on_connection_lost(self, _connection: object, exc: BaseException | None = None) -> None:
        if self._connected and not self.stopping:
            log.warning("broker.connection_lost", error=repr(exc))
        self._connected = False

    def _on_reconnect(self, *_args: object) -> None:
        # aio-pika's robust channel declares the queues and consumers again.
        self._connected = True
        log.info("broker.reconnected", queues=list(self.settings.worker_queues))

    async def stop_consuming(self) -> None:
        self._stopping.set()
        for queue, tag in self._consumers:
            try:
                await asyncio.wait_for(queue.cancel(tag), BROKER_CALL_TIMEOUT_S)
            except BROKER_ERRORS as exc:
                log.warning("worker.cancel_consumer_failed", queue=queue.name, error=repr(exc))
        self._consumers.clear()

    async def close(self) -> None:
        if self._connection is not None:
            try:
                await asyncio.wait_for(self._connection.close(), BROKER_CALL_TIMEOUT_S)
            except BROKER_ERRORS:
                pass

    # --- one message -----------------------------------------------------------------

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.recorder.acks.delivered(message)
        task = asyncio.create_task(self._handle(message), name=f"message-{message.message_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        self.counts["received"] += 1
        try:
            await self._process(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug or a persistent database error before the claim (after it, _process
            # records an outcome itself): give the message back (the delivery limit stops
            # it bouncing forever) rather than lose it.
            log.exception("message.failed", message_id=message.message_id)
            await asyncio.sleep(REQUEUE_PAUSE_S)
            await self.recorder.acks.reject(message, requeue=True)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        acks = self.recorder.acks
        if self.stopping:
            # Delivered as the drain began: another worker starts it, not this one.
            await acks.reject(message, requeue=True)
            return
        try:
            ref = decode_ref(message.body)
        except ValueError as exc:
            self.counts["rejected"] += 1
            log.error("message.rejected", reason="undecodable", message_id=message.message_id,
                      error=str(exc)[:500])
            await acks.reject(message, requeue=False)
            return
        fields: dict[str, Any] = dict(run_id=ref.run_id, attempt=ref.attempt)

        claimed = await self.claimer.claim(ref)
        if claimed.claim is Claim.UNKNOWN:
            self.counts["rejected"] += 1
            log.error("message.rejected", reason="unknown run", **fields)
            await acks.reject(message, requeue=False)
            return
        if claimed.claim is Claim.NO_HANDLER:
            await self._handler_missing(message, ref, claimed, fields)
            return
        row = claimed.run
        alone = False
        if claimed.claim is Claim.RUNNING and message.redelivered:
            # The broker gave this message back: the channel of the worker running the
            # attempt closed. Wait for that worker to finish it, or take it over if its
            # heartbeat stops (it died, perhaps killed by this very run: so it runs
            # alone here, and a crash it causes takes no bystander with it).
            deliveries = delivery_count(message)
            if deliveries >= self.settings.delivery_limit:
                await self._at_delivery_limit(message, ref, deliveries, fields)
                return
            outlasted = await self._outlast_holder(message, ref, self._take_over)
            if outlasted is None:
                return
            if isinstance(outlasted, asyncpg.Record):
                row, alone = outlasted, True
                log.warning("run.taken_over", deliveries=deliveries + 1, **fields)
        if row is None:
            kind = "duplicate" if claimed.claim is Claim.RUNNING else claimed.claim.value
            self.counts[kind] += 1
            log.info(f"run.{kind}", detail=claimed.detail, **fields)
            self.recorder.add(Finished(message))
            return

        fields.update(job=row["job"], handler=row["handler"])
        self.counts["claimed"] += 1
        self.last_execution = time.time()
        log.debug("run.claimed", detail=claimed.detail, **fields)
        held = Held(ref.run_id, ref.attempt)
        self.held[held.key] = held
        # From here on the run is ours: whatever happens, it gets an outcome (a requeued
        # message would find it running and be dropped as a duplicate).
        try:
            if not alone:
                await self.quarantine.enter()
            try:
                outcome = await self._execute(row, held)
            finally:
                await (self.quarantine.leave_alone() if alone else self.quarantine.leave())
        except Exception as exc:
            log.exception("run.execute_failed", **fields)
            outcome = Outcome("failed", error=f"the worker failed running it: "
                                              f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
        held.finished = True
        self.recorder.add(Finished(message, held, outcome))

    async def _at_delivery_limit(self, message: AbstractIncomingMessage, run: RunRef,
                                 deliveries: int, fields: dict[str, Any]) -> None:
        """The broker delivered this message `delivery_limit` times before while its
        attempt was running: a worker died (or its channel closed) holding it each time.
        The run ends 'dead' only if the database shows it was executing at every one of
        those deliveries (taken over each time); a bystander (it waited in a worker
        another run killed) gets a fresh message instead. The header alone ends nothing."""
        error = f"delivered {deliveries + 1} times without a result; dead-lettered"
        outcome = await self._outlast_holder(
            message, run, functools.partial(self._end_abandoned, error=error))
        if outcome is None:
            return
        if outcome is REQUEUED:
            log.warning("run.republished", deliveries=deliveries + 1,
                        reason="delivery limit reached while it waited in a dying worker",
                        **fields)
            self.recorder.add(Finished(message))
            return
        if outcome is GONE:
            # Ended meanwhile (its worker was alive after all): a duplicate.
            self.counts["duplicate"] += 1
            log.info("run.duplicate", detail="ended while its message was redelivered", **fields)
            self.recorder.add(Finished(message))
            return
        if outcome is MISSING:
            self.counts["rejected"] += 1
            log.error("message.rejected", reason="unknown run", **fields)
        else:
            self.counts["dead"] += 1
            log.error("run.dead", deliveries=deliveries + 1, **fields)
        await self.recorder.acks.reject(message, requeue=False)

    async def _outlast_holder(
            self, message: AbstractIncomingMessage, run: RunRef,
            act: Callable[[RunRef, float], Awaitable[object | None]]) -> object | None:
        """Hold a redelivered message while its attempt runs elsewhere, checking when the
        holder's lease would run out; then `act(run, lease)`: what it returns ends the
        wait (None: heard from just now, or rescued meanwhile, so look again shortly).
        Returns GONE once the attempt is no longer running (finished, or rescued by the
        reaper), MISSING if there is no such run, None if the worker is stopping (the
        message went back to the queue)."""
        lease = self.settings.run_lease_s
        while not self.stopping:
            state = await self._db(lambda c: c.fetchrow(q("run_holder"), run.run_id,
                                                        run.attempt, lease))
            if state is None:
                return MISSING
            if not state["running"]:
                return GONE
            stale_in = state["stale_in"] or 0.0
            if stale_in <= 0:
                outcome = await act(run, lease)
                if outcome is not None:
                    return outcome
                stale_in = HOLDER_RETRY_S
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), stale_in + HOLDER_SLACK_S)
        await self.recorder.acks.reject(message, requeue=True)
        return None

    async def _take_over(self, run: RunRef, lease: float) -> asyncpg.Record | None:
        """The attempt's worker is gone: run it here, alone (the caller leaves the
        quarantine), so a crash it causes takes no bystander with it."""
        await self.quarantine.enter_alone()
        try:
            row = await self._db(lambda c: c.fetchrow(
                q("take_over_run"), run.run_id, run.attempt, self.worker_id, lease,
                self.claimer.handlers, self.claimer.queues))
        except BaseException:
            await self.quarantine.leave_alone()
            raise
        if row is None:
            await self.quarantine.leave_alone()
        return row

    async def _end_abandoned(self, run: RunRef, lease: float, *, error: str) -> object | None:
        """At the delivery limit, for an attempt whose worker's lease is out: 'dead' if
        it was taken over at every delivery after the first, else queued again."""
        executing_each_time = self.settings.delivery_limit - 1

        async def end(conn: asyncpg.Connection) -> object | None:
            async with conn.transaction():
                if await conn.fetchval(q("end_abandoned_run"), run.run_id, run.attempt,
                                       error, lease, executing_each_time) is not None:
                    return ENDED
                if await conn.fetchval(q("requeue_abandoned_run"), run.run_id, run.attempt,
                                       lease) is not None:
                    await wake_scheduler(conn, "requeued")
                    return REQUEUED
                return None

        return await self._db(end)

    async def _execute(self, row: asyncpg.Record, held: Held) -> Outcome:
        """Run the claimed attempt as the database describes it (the row of the claim)."""
        ctx = RunContext(self.settings, row["id"], row["job_id"], row["job"], row["attempt"],
                         row["max_attempts"])
        retry = Retry(row["max_attempts"], row["retry_backoff_seconds"],
                      row["retry_backoff_max_seconds"], self._rng)
        try:
            payload = self._payload(row["payload"], row["secret_payload"])
        except Exception as exc:
            return Outcome("failed", error=f"{type(exc).__name__}: {exc}")
        return await execute(held, self.handlers[row["handler"]], payload, ctx,
                             row["timeout_seconds"], retry)

    def _payload(self, stored: dict[str, Any], secret: str | None) -> dict[str, Any]:
        if not secret:
            return dict(stored)
        return merge_secrets(stored, decrypt_fields(self.settings.encryption_key, secret))

    async def _handler_missing(self, message: AbstractIncomingMessage, run: RunRef,
                               claimed: ClaimResult, fields: dict[str, Any]) -> None:
        """Another worker of the run's queue has its handler: back to the outbox (the
        pause doubles each time). None has: the run fails at once, saying how to fix it."""
        handler = claimed.handler or ""
        fields = {**fields, "handler": handler}
        elsewhere = await self._db(lambda c: c.fetchval(
            q("handler_advertised"), handler, self.worker_id,
            self.settings.worker_offline_threshold_s, claimed.queue))
        if elsewhere:
            returned = await self._db(lambda c: self._return_to_outbox(c, run))
            log.warning("run.handler_elsewhere", returned_to_outbox=returned, **fields)
            self.recorder.add(Finished(message))
            return
        hint = HINTS.get(handler, f"known handlers: {', '.join(sorted(self.handlers))}")
        error = f"no online worker runs handler {handler!r} ({hint})"
        await self._db(lambda c: end_unstarted(c, run, "failed", error))
        self.counts["handler_missing"] += 1
        log.error("run.handler_unavailable", error=error, **fields)
        self.recorder.add(Finished(message))

    @staticmethod
    async def _return_to_outbox(conn: asyncpg.Connection, run: RunRef) -> bool:
        returned = await conn.fetchval(q("return_run_to_outbox"), run.run_id, run.attempt,
                                       REQUEUE_PAUSE_S)
        if returned is not None:
            await wake_scheduler(conn, "handler elsewhere")
        return returned is not None

    async def _db(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn` on a pooled connection, waiting out a database restart, a read-only
        database after a failover, a statement timeout or a deadlock (core.db.is_transient):
        the message waits here, unacked, instead of being given back to the broker, where
        each return would count towards its delivery limit."""
        async for attempt in waiting_out("worker.db_unavailable"):
            with attempt:
                async with self.pool.acquire() as conn:
                    return await fn(conn)
        raise AssertionError("unreachable: waiting_out retries until it returns or raises")
