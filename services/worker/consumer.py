"""Consume run messages: decode, claim, execute, hand the outcome to the recorder.

Every message ends in exactly one of: acked after its result is committed (or as a
duplicate / skipped / cancelled run), rejected to sundial.dead (undecodable, unknown
run, delivered too often), or requeued (the worker is shutting down, or a bug before the
claim). A run whose handler only another worker has goes back to the outbox, and so
does one that may not start here yet because a taken-over run executes here alone, or
waits to (quarantine.py): it stays `queued` meanwhile, never `running`.
The connection fails over: when it goes (a broker restart, its node of RABBITMQ_URL
stopped), the next node that answers takes over and the consumers are registered again.

A message the broker redelivers while its attempt is still running elsewhere is held
until that attempt ends (then acked) or its worker's heartbeat is older than the lease:
then this worker runs the attempt again, alone. So a run whose execution kills its worker
comes back with every crash, as the broker counts deliveries, and at the delivery
limit it ends 'dead' and its message goes to sundial.dead.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

import asyncpg
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, AbstractQueue

from sundial.core.broker import BROKER_ERRORS, declare_base, declare_queue
from sundial.core.db import waiting_out
from sundial.core.logging import get_logger
from sundial.core.messages import RunRef, decode_ref
from sundial.core.nodes import FailoverConnection, Nodes
from sundial.core.outbox import wake_scheduler
from sundial.core.secrets import decrypt_fields, merge_secrets
from sundial.core.sql import q
from sundial.worker import metrics
from sundial.worker.claim import Claim, Claimer, ClaimResult, end_unstarted, return_to_outbox
from sundial.worker.executor import MAX_ERROR_CHARS, Held, Outcome, Retry, execute
from sundial.worker.handlers import HINTS, Handler, RunContext
from sundial.worker.quarantine import Quarantine
from sundial.worker.recorder import Finished, Recorder
from sundial.worker.settings import WorkerSettings

log = get_logger("worker.consumer")

T = TypeVar("T")
# A message that failed before its claim goes back to the queue after this pause.
REQUEUE_PAUSE_S = 1.0
# Shutdown must not hang on a broker that is away.
BROKER_CALL_TIMEOUT_S = 5.0
# How long a taken-over run waits for the results of the runs that ended before it.
RESULTS_BEFORE_SUSPECT_S = 10.0
# A redelivered message's attempt is looked at again this long after its lease runs out.
HOLDER_SLACK_S = 0.05
HOLDER_RETRY_S = 0.5


class AtLimit(enum.Enum):
    """How a run whose message reached the delivery limit ends, once its worker is gone."""

    DEAD = "dead"            # executing at every delivery: 'dead', message dead-lettered
    REQUEUED = "requeued"    # it only waited somewhere at some delivery: a fresh message


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
        self._failover = FailoverConnection(
            Nodes(settings.rabbitmq_nodes), self._consume, timeout_s=10.0,
            on_lost=self._on_connection_lost, on_restored=self._on_reconnect)
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
        """Connect (waiting for a node of RABBITMQ_URL with backoff) and start consuming."""
        await self._failover.start()
        self._connected = True
        log.info("worker.consuming", queues=list(self.settings.worker_queues),
                 prefetch=self.settings.worker_concurrency, node=self._failover.nodes.current)

    async def _consume(self, connection: AbstractConnection) -> None:
        """On each new connection: the channel, the topology and the consumers."""
        channel = await connection.channel()
        self._failover.watch(channel)
        await channel.set_qos(prefetch_count=self.settings.worker_concurrency)
        exchange = await declare_base(channel)
        self._consumers = []
        for name in self.settings.worker_queues:
            queue = await declare_queue(channel, exchange, name, self.settings.delivery_limit)
            if not self.stopping:   # draining: no new deliveries on a new connection
                self._consumers.append((queue, await queue.consume(self._on_message)))

    def _on_connection_lost(self, exc: BaseException | None) -> None:
        if self._connected and not self.stopping:
            log.warning("broker.connection_lost", error=repr(exc), node=self._failover.nodes.current)
        self._connected = False

    def _on_reconnect(self) -> None:
        self._connected = True
        log.info("broker.reconnected", queues=list(self.settings.worker_queues),
                 node=self._failover.nodes.current)

    async def stop_consuming(self) -> None:
        self._stopping.set()
        for queue, tag in self._consumers:
            try:
                await asyncio.wait_for(queue.cancel(tag), BROKER_CALL_TIMEOUT_S)
            except BROKER_ERRORS as exc:
                log.warning("worker.cancel_consumer_failed", queue=queue.name, error=repr(exc))
        self._consumers.clear()

    async def close(self) -> None:
        await self._failover.close(BROKER_CALL_TIMEOUT_S)

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
        # Admitted before the claim, so that no run is `running` while it waits for a
        # taken-over run to end: one not admitted is handed back, still queued.
        admitted = self.quarantine.admit()
        try:
            claimed = await self.claimer.claim(ref, may_start=admitted)
        except BaseException:
            if admitted:
                self.quarantine.leave()
            raise
        if claimed.claim is Claim.CLAIMED:
            row = claimed.run
            if row["id"] != ref.run_id:
                # A run of higher priority was waiting: this message started it instead.
                log.info("run.claimed_by_priority", message_run_id=ref.run_id,
                         run_id=row["id"], attempt=row["attempt"])
                ref = RunRef(version=ref.version, run_id=row["id"], attempt=row["attempt"])
                fields = dict(run_id=ref.run_id, attempt=ref.attempt)
            await self._run(message, ref, row, fields, suspect=False, detail=claimed.detail)
            return
        if admitted:
            self.quarantine.leave()
        if claimed.claim is Claim.RUNNING and message.redelivered:
            # The broker gave this message back: the channel of the worker running the
            # attempt closed (it died, perhaps killed by this very run).
            if delivery_count(message) >= self.settings.delivery_limit:
                await self._at_delivery_limit(message, ref, fields)
            else:
                await self._take_over(message, ref, fields)
            return
        await self._not_claimed(message, ref, claimed, fields)

    async def _not_claimed(self, message: AbstractIncomingMessage, run: RunRef,
                           claimed: ClaimResult, fields: dict[str, Any]) -> None:
        """Settle a message whose run this worker does not execute."""
        if claimed.claim is Claim.UNKNOWN:
            await self._reject_unknown(message, fields)
        elif claimed.claim is Claim.NO_HANDLER:
            await self._handler_missing(message, run, claimed, fields)
        else:
            kind = "duplicate" if claimed.claim is Claim.RUNNING else claimed.claim.value
            self._drop(message, kind, claimed.detail, fields)

    async def _reject_unknown(self, message: AbstractIncomingMessage,
                              fields: dict[str, Any]) -> None:
        self.counts["rejected"] += 1
        log.error("message.rejected", reason="unknown run", **fields)
        await self.recorder.acks.reject(message, requeue=False)

    def _drop(self, message: AbstractIncomingMessage, kind: str, detail: str | None,
              fields: dict[str, Any]) -> None:
        """Ack a message that starts nothing (its run is a duplicate, skipped, ...)."""
        self.counts[kind] += 1
        log.info(f"run.{kind}", detail=detail, **fields)
        self.recorder.add(Finished(message))

    async def _run(self, message: AbstractIncomingMessage, run: RunRef, row: asyncpg.Record,
                   fields: dict[str, Any], *, suspect: bool, detail: str | None = None) -> None:
        """Execute a claimed (or taken-over) attempt and hand its outcome to the recorder;
        then leave the quarantine it was admitted to (alone, for a suspect)."""
        fields = {**fields, "job": row["job"], "handler": row["handler"]}
        self.counts["claimed"] += 1
        self.last_execution = time.time()
        log.debug("run.claimed", detail=detail, **fields)
        held = Held(run.run_id, run.attempt)
        self.held[held.key] = held
        if not suspect:
            metrics.FIRE_LAG.labels(row["queue"]).observe(max(0.0, row["fire_lag_s"]))
        started = time.monotonic()
        # From here on the run is ours: whatever happens, it gets an outcome (a requeued
        # message would find it running and be dropped as a duplicate).
        try:
            outcome = await self._execute(row, held)
        except Exception as exc:
            log.exception("run.execute_failed", **fields)
            outcome = Outcome("failed", error=f"the worker failed running it: "
                                              f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
        finally:
            if suspect:
                self.quarantine.leave_alone()
            else:
                self.quarantine.leave()
        held.finished = True
        if outcome.output is None:
            outcome.output = held.live.text()   # what it printed, its last lines included
        metrics.DURATION.labels(row["queue"], outcome.kind).observe(time.monotonic() - started)
        self.recorder.add(Finished(message, held, outcome))

    async def _take_over(self, message: AbstractIncomingMessage, run: RunRef,
                         fields: dict[str, Any]) -> None:
        """Once the attempt's worker is gone (its heartbeat older than the lease), run the
        attempt here, alone: if it is what killed that worker, a crash it causes here
        takes no bystander with it. Taken over only when it may execute at once, so
        `takeovers` counts the deliveries at which it was executing."""
        lease = self.settings.run_lease_s

        async def take_over() -> asyncpg.Record | None:
            await self.quarantine.enter_alone()
            if self.stopping:  # drained while it waited: another worker takes it over
                self.quarantine.leave_alone()
                return None
            # The runs that ended before it get their results written and acked first:
            # if the suspect kills this worker, they are not redelivered and taken over
            # again as if they had been executing with it.
            if not await self.recorder.drain(RESULTS_BEFORE_SUSPECT_S):
                log.warning("run.suspect_before_results", wait_s=RESULTS_BEFORE_SUSPECT_S,
                            **fields)
            try:
                row = await self._db(lambda c: c.fetchrow(
                    q("take_over_run"), run.run_id, run.attempt, self.worker_id, lease,
                    self.claimer.handlers, self.claimer.queues))
            except BaseException:
                self.quarantine.leave_alone()
                raise
            if row is None:
                self.quarantine.leave_alone()
            return row

        row = await self._when_abandoned(message, run, fields, take_over)
        if row is not None:
            log.warning("run.taken_over", deliveries=delivery_count(message) + 1, **fields)
            await self._run(message, run, row, fields, suspect=True)

    async def _at_delivery_limit(self, message: AbstractIncomingMessage, run: RunRef,
                                 fields: dict[str, Any]) -> None:
        """The broker delivered this message `delivery_limit` times before while its
        attempt was running: a worker died (or its channel closed) holding it each time.
        Once that attempt's worker is gone, the run ends 'dead' only if the database shows
        it was executing at every one of those deliveries (taken over each time); one that
        only waited somewhere gets a fresh message instead. The header alone ends nothing."""
        deliveries = delivery_count(message) + 1
        lease = self.settings.run_lease_s
        error = f"delivered {deliveries} times without a result; dead-lettered"
        executing_each_time = self.settings.delivery_limit - 1

        async def end(conn: asyncpg.Connection) -> AtLimit | None:
            async with conn.transaction():
                if await conn.fetchval(q("end_abandoned_run"), run.run_id, run.attempt,
                                       error, lease, executing_each_time) is not None:
                    return AtLimit.DEAD
                if await conn.fetchval(q("requeue_abandoned_run"), run.run_id, run.attempt,
                                       lease) is not None:
                    await wake_scheduler(conn, "requeued")
                    return AtLimit.REQUEUED
                return None

        ended = await self._when_abandoned(message, run, fields, lambda: self._db(end))
        if ended is AtLimit.DEAD:
            self.counts["dead"] += 1
            log.error("run.dead", deliveries=deliveries, **fields)
            await self.recorder.acks.reject(message, requeue=False)
        elif ended is AtLimit.REQUEUED:
            log.warning("run.republished", deliveries=deliveries,
                        reason="delivery limit reached while it waited in a dying worker",
                        **fields)
            self.recorder.add(Finished(message))

    async def _when_abandoned(self, message: AbstractIncomingMessage, run: RunRef,
                              fields: dict[str, Any],
                              act: Callable[[], Awaitable[T | None]]) -> T | None:
        """Hold a redelivered message while its attempt runs elsewhere, looking again when
        the lease of the attempt's worker would run out. Once its heartbeat is older than
        the lease, return what `act()` returns, unless that is None (the worker was heard
        from just now, or the reaper rescued the attempt): then look again shortly.
        Returns None once the message is settled here instead: the attempt ended (a
        duplicate), there is no such run (rejected), or this worker is stopping (back to
        the queue, for another worker to hold)."""
        lease = self.settings.run_lease_s
        while not self.stopping:
            state = await self._db(lambda c: c.fetchrow(q("run_holder"), run.run_id,
                                                        run.attempt, lease))
            if state is None:
                await self._reject_unknown(message, fields)
                return None
            if not state["running"]:
                self._drop(message, "duplicate", "ended while its message was redelivered",
                           fields)
                return None
            stale_in = state["stale_in"] or 0.0
            if stale_in <= 0:
                done = await act()
                if done is not None:
                    return done
                stale_in = HOLDER_RETRY_S
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), stale_in + HOLDER_SLACK_S)
        await self.recorder.acks.reject(message, requeue=True)
        return None

    async def _execute(self, row: asyncpg.Record, held: Held) -> Outcome:
        """Run the claimed attempt as the database describes it (the row of the claim)."""
        ctx = RunContext(self.settings, row["id"], row["job_id"], row["job"], row["attempt"],
                         row["max_attempts"], held.live)
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
            returned = await self._db(lambda c: return_to_outbox(c, run, "handler elsewhere"))
            log.warning("run.handler_elsewhere", returned_to_outbox=returned, **fields)
            self.recorder.add(Finished(message))
            return
        hint = HINTS.get(handler, f"known handlers: {', '.join(sorted(self.handlers))}")
        error = f"no online worker runs handler {handler!r} ({hint})"
        await self._db(lambda c: end_unstarted(c, run, "failed", error))
        self.counts["handler_missing"] += 1
        log.error("run.handler_unavailable", error=error, **fields)
        self.recorder.add(Finished(message))

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
