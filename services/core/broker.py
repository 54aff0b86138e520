"""RabbitMQ topology and the confirmed publisher.

Topology (declared idempotently by every service that needs it):
    exchange sundial.runs   direct, durable; routing key = the job's queue
    queue    sundial.<q>    quorum, durable, x-delivery-limit, DLX sundial.dlx
    exchange sundial.dlx    fanout, durable  ->  queue sundial.dead
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import partial

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from pamqp.commands import Basic

from sundial.core import faults
from sundial.core.aiormq_seam import publish_together, watch_blocking
from sundial.core.logging import get_logger
from sundial.core.messages import CONTENT_TYPE
from sundial.core.nodes import CONNECT_ERRORS, Nodes
from sundial.core.settings import parse_nodes

log = get_logger("core.broker")

EXCHANGE = "sundial.runs"
DEAD_LETTER_EXCHANGE = "sundial.dlx"
DEAD_LETTER_QUEUE = "sundial.dead"

class PublishNotConfirmed(Exception):
    """The broker nacked a message instead of confirming it, or did not answer in time."""


BROKER_ERRORS: tuple[type[BaseException], ...] = (
    PublishNotConfirmed,
    *CONNECT_ERRORS,
    RuntimeError,  # aio-pika raises it for a closed channel
)


def queue_name(queue: str) -> str:
    return f"sundial.{queue}"


def queue_arguments(delivery_limit: int) -> dict[str, object]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    }


async def declare_base(channel: AbstractChannel) -> AbstractExchange:
    """The run exchange and the dead-letter path; returns the run exchange."""
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
    dlx = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT,
                                         durable=True)
    dead = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True,
                                       arguments={"x-queue-type": "quorum"})
    await dead.bind(dlx, routing_key="")
    return exchange


async def declare_queue(channel: AbstractChannel, exchange: AbstractExchange, queue: str,
                        delivery_limit: int) -> aio_pika.abc.AbstractQueue:
    declared = await channel.declare_queue(queue_name(queue), durable=True,
                                           arguments=queue_arguments(delivery_limit))
    await declared.bind(exchange, routing_key=queue)
    return declared


async def declare_topology(channel: AbstractChannel, queues: Iterable[str],
                           delivery_limit: int) -> AbstractExchange:
    exchange = await declare_base(channel)
    for queue in queues:
        await declare_queue(channel, exchange, queue, delivery_limit)
    return exchange


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: the run id (message_id), the queue and the body."""

    run_id: int
    queue: str
    body: bytes


# Messages per socket write when publishing many (see core.aiormq_seam).
FRAME_BATCH = 250
# How long a batch may take from connect to its last confirm (a healthy broker confirms
# a batch in milliseconds); past it the broker counts as unresponsive.
CONFIRM_TIMEOUT_S = 10.0


class Publisher:
    """Publishes with publisher confirms and `mandatory`, many messages in flight at once.

    Not robust by itself on purpose: a failed publish marks the connection broken and the
    next call reconnects (to the next node of RABBITMQ_URL that answers, core.nodes), so
    the caller (the tick) decides when to try again and never blocks on a broker that is
    down. `url` is RABBITMQ_URL: one node's URL or several, comma-separated.

    `blocked` holds the reason while the broker blocks this publisher (a memory or disk
    alarm: `connection.blocked`), from that notice until `connection.unblocked` or a
    confirm on a connection made since.
    """

    def __init__(self, url: str, delivery_limit: int, *, connect_timeout_s: float = 5.0,
                 confirm_timeout_s: float = CONFIRM_TIMEOUT_S):
        self.nodes = Nodes(parse_nodes(url))
        self.delivery_limit = delivery_limit
        self.connect_timeout_s = connect_timeout_s
        self.confirm_timeout_s = confirm_timeout_s
        self.blocked: str | None = None
        self.blocked_since: float | None = None   # wall time of the notice
        self._blocked_on: AbstractConnection | None = None
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._queues: set[str] = set()
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return (self._channel is not None and not self._channel.is_closed
                and self._connection is not None and not self._connection.is_closed)

    async def connect(self) -> None:
        async with self._lock:
            if self.connected:
                return
            await self._close_quietly()
            connection = await self.nodes.connect(timeout_s=self.connect_timeout_s)
            try:
                watch_blocking(connection, partial(self._on_blocked, connection),
                               partial(self._on_unblocked, connection))
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                self._exchange = await declare_base(channel)
            except BaseException:
                await connection.close()
                raise
            self._connection, self._channel, self._queues = connection, channel, set()
            log.info("broker.connected", node=self.nodes.current)

    def _on_blocked(self, connection: AbstractConnection, reason: str) -> None:
        self._blocked_on = connection
        if self.blocked is None:
            self.blocked, self.blocked_since = reason or "no reason given", time.time()
            log.warning("broker.blocked", reason=self.blocked, node=self.nodes.current)

    def _on_unblocked(self, _connection: AbstractConnection) -> None:
        if self.blocked is not None:
            assert self.blocked_since is not None
            log.info("broker.unblocked", reason=self.blocked, node=self.nodes.current,
                     blocked_s=round(time.time() - self.blocked_since, 3))
        self.blocked = self.blocked_since = self._blocked_on = None

    def _confirmed(self, connection: AbstractConnection | None) -> None:
        """A message was confirmed on `connection`: the block is over unless that is the
        connection blocked (which may confirm messages it took before the block)."""
        if self.blocked is not None and connection is not self._blocked_on:
            self._on_unblocked(connection)

    async def _close_quietly(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                await connection.close()
            except BROKER_ERRORS:
                pass

    async def close(self) -> None:
        async with self._lock:
            await self._close_quietly()

    async def _ensure_queue(self, queue: str) -> None:
        # The scheduler declares a job's queue before its first message, so runs wait
        # in RabbitMQ for a worker instead of being returned as unroutable.
        if queue not in self._queues:
            assert self._channel is not None and self._exchange is not None
            await declare_queue(self._channel, self._exchange, queue, self.delivery_limit)
            self._queues.add(queue)

    async def publish_many(self, messages: Sequence[Outgoing]) -> list[BaseException | None]:
        """Publish all; for each message, None once confirmed, else the error.

        Connects first if needed (raising if the broker cannot be reached). Everything,
        confirms included, ends within `confirm_timeout_s`: a broker that keeps the socket
        open but stops answering, or blocks publishers (a memory or disk alarm), fails the
        messages it has not confirmed by then, and the connection is dropped so that the
        next call starts afresh. A message that fails so may still arrive: publishing it
        again is harmless (a worker claims a run once).
        """
        if not messages:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.confirm_timeout_s
        connection = self._connection
        try:
            async with asyncio.timeout_at(deadline):
                if not self.connected:
                    await self.connect()
                connection = self._connection
                for queue in {m.queue for m in messages}:
                    await self._ensure_queue(queue)
                assert self._channel is not None
                channel = await self._channel.get_underlay_channel()
                confirmations: list[asyncio.Future] = []
                for start in range(0, len(messages), FRAME_BATCH):
                    confirmations += await publish_together(
                        channel, EXCHANGE, [_frame_of(m) for m in messages[start:start + FRAME_BATCH]])
        except TimeoutError:
            log.warning("broker.unresponsive", timeout_s=self.confirm_timeout_s)
            await self._abandon(connection)
            return [self._unanswered()] * len(messages)
        confirmations[0].add_done_callback(lambda _f: faults.reached("after_publish"))
        _, pending = await asyncio.wait(confirmations, timeout=max(0.0, deadline - loop.time()))
        errors = [_error(m, _outcome(c)) if c.done() else self._unanswered()
                  for m, c in zip(messages, confirmations, strict=True)]
        if any(e is None for e in errors):
            self._confirmed(connection)
        if pending:
            log.warning("broker.unresponsive", timeout_s=self.confirm_timeout_s)
            await self._abandon(connection)
        elif any(_nacked(e) for e in errors):
            # A channel whose publish a quorum queue nacked (it had lost its leader) goes
            # on nacking every later publish even once a new leader is elected (RabbitMQ
            # 3.10, measured: still after two minutes), while a new channel's publishes
            # are confirmed: the next publish gets a new connection.
            log.warning("broker.nacked", runs=sum(1 for e in errors if _nacked(e)))
            await self._abandon(connection)
        elif any(e is not None for e in errors) and not self.connected:
            await self.close()
        return errors

    def _unanswered(self) -> PublishNotConfirmed:
        return PublishNotConfirmed(
            f"no confirm within {self.confirm_timeout_s:g} s: the broker does not answer, or "
            "blocks publishers (a memory or disk alarm)")

    async def _abandon(self, connection: AbstractConnection | None) -> None:
        """Drop the connection this publish used (not one made since by another publish),
        so that the next publish connects afresh: its close handshake gets a second at
        most, a stalled socket would never answer it."""
        if connection is None:
            return
        if connection is self._connection:
            self._connection, self._channel = None, None
        with suppress(TimeoutError, *BROKER_ERRORS):
            async with asyncio.timeout(1.0):
                await connection.close()


def _outcome(confirmation: asyncio.Future) -> object:
    if confirmation.cancelled():
        return PublishNotConfirmed("the confirmation was cancelled")
    return confirmation.exception() or confirmation.result()


def _nacked(error: BaseException | None) -> bool:
    """Whether the broker answered with a nack (a queue that cannot take the message)."""
    if isinstance(error, aiormq.exceptions.DeliveryError):
        return isinstance(error.frame, Basic.Nack)
    return isinstance(error, Nacked)


class Nacked(PublishNotConfirmed):
    """The broker nacked the message."""


def _error(message: Outgoing, confirmation: object) -> BaseException | None:
    """None for the broker's ack, else what went wrong."""
    if isinstance(confirmation, BaseException):
        return confirmation
    if isinstance(confirmation, Basic.Ack):
        return None
    if isinstance(confirmation, Basic.Nack):
        return Nacked(f"run {message.run_id}: broker answered {confirmation!r}")
    return PublishNotConfirmed(f"run {message.run_id}: broker answered {confirmation!r}")


def _frame_of(message: Outgoing) -> tuple[str, Basic.Properties, bytes]:
    """(routing key, properties, body): persistent, the run id as message_id."""
    return message.queue, Basic.Properties(content_type=CONTENT_TYPE, delivery_mode=2,
                                           message_id=str(message.run_id)), message.body
