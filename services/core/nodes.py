"""Several RabbitMQ nodes behind one RABBITMQ_URL: the list, and a connection to one of them.

RABBITMQ_URL holds one amqp:// (or amqps://) URL, or several separated by commas, one per
node of a cluster:

    amqp://app:secret@mq1:5672/sundial,amqp://app:secret@mq2:5672/sundial

Every process connects to the first node that answers, in the order given. When its
connection goes (the node stopped, the network cut, the node stopped answering), it
connects again starting with the node after the one it lost, round the list, so a node
that went is tried last. Every node must name the same vhost: the nodes are meant to be
one cluster, whose quorum queues keep the messages of a node that goes.
The list is read by
sundial.core.settings.parse_nodes, so that checking the settings does not load aio-pika.

aio-pika's robust connection reconnects to its one URL only; `FailoverConnection` is
the robust connection of the worker across the list, built on `aio_pika.connect`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from functools import partial

import aio_pika
import aiormq
import tenacity
from aio_pika.abc import AbstractChannel, AbstractConnection

from sundial.core.logging import get_logger
from sundial.core.settings import redact_url

log = get_logger("core.broker")

# What a connection attempt raises when its node is away or does not answer.
CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


class NoNodeAnswered(ConnectionError):
    """No node of RABBITMQ_URL accepted a connection."""


class Nodes:
    """The nodes of RABBITMQ_URL and which to try first: the first listed, then the one
    after the node last connected to (whose connection is gone when a new one is made)."""

    def __init__(self, urls: Sequence[str]):
        if not urls:
            raise ValueError("at least one node URL is needed")
        self.urls = tuple(urls)
        self._next = 0
        self.current: str | None = None   # the node connected to last, password redacted

    async def connect(self, *, timeout_s: float) -> AbstractConnection:
        """A connection to the first node that answers, starting with the next to try.
        With one node, its error; with several, NoNodeAnswered naming each one's."""
        errors: list[str] = []
        count = len(self.urls)
        for k in range(count):
            i = (self._next + k) % count
            try:
                connection = await aio_pika.connect(self.urls[i], timeout=timeout_s)
            except CONNECT_ERRORS as exc:
                if count == 1:
                    raise
                errors.append(f"{redact_url(self.urls[i])}: {exc!r}")
                continue
            # When this connection goes, the next one starts with the node after it.
            self._next = (i + 1) % count
            self.current = redact_url(self.urls[i])
            if count > 1:
                log.info("broker.node_connected", node=self.current, position=i + 1,
                         nodes=count)
            return connection
        raise NoNodeAnswered("no RabbitMQ node answered: " + "; ".join(errors))


def _log_reconnect(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("broker.connect_retry", attempt=state.attempt_number, error=repr(exc),
                wait_s=round(state.next_action.sleep, 2) if state.next_action else None)


class FailoverConnection:
    """A connection kept to one node of several. `setup` runs on every new connection
    (channels, declarations, consumers) and `watch`es what it opens; when the connection
    or a watched channel closes, the next node that answers takes over and `setup` runs
    again. Connecting waits with backoff until a node answers."""

    def __init__(self, nodes: Nodes, setup: Callable[[AbstractConnection], Awaitable[None]], *,
                 timeout_s: float = 10.0, max_wait_s: float = 30.0,
                 on_lost: Callable[[BaseException | None], None] | None = None,
                 on_restored: Callable[[], None] | None = None):
        self.nodes = nodes
        self._setup = setup
        self._timeout_s = timeout_s
        self._max_wait_s = max_wait_s
        self._on_lost = on_lost
        self._on_restored = on_restored
        self.connection: AbstractConnection | None = None
        # Close callbacks of an earlier connection (closed late) must not take a new one
        # down: each connection is a generation, and only the current one's count.
        self._generation = 0
        self._gone = asyncio.Event()
        self._error: BaseException | None = None
        self._closing = False
        self._keeper: asyncio.Task | None = None

    @property
    def connected(self) -> bool:
        return self.connection is not None and not self.connection.is_closed

    async def start(self) -> None:
        """The first connection, set up; from then on it is kept."""
        await self._connect()
        self._keeper = asyncio.create_task(self._keep(), name="broker-failover")

    def watch(self, closable: AbstractConnection | AbstractChannel) -> None:
        """When `closable` (the connection, or a channel `setup` opened) closes, the next
        node takes over."""
        closable.close_callbacks.add(partial(self._closed, self._generation))

    def _closed(self, generation: int, _sender: object = None,
                exc: BaseException | None = None) -> None:
        if generation == self._generation and not self._closing:
            self._error = exc
            self._gone.set()

    async def _connect(self) -> None:
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type((*CONNECT_ERRORS, RuntimeError)),
            wait=tenacity.wait_exponential_jitter(multiplier=0.5, max=self._max_wait_s, jitter=0.5),
            stop=tenacity.stop_never, before_sleep=_log_reconnect, reraise=True)
        async for attempt in retrying:
            with attempt:
                self._generation += 1
                self._gone.clear()
                connection = await self.nodes.connect(timeout_s=self._timeout_s)
                self.connection = connection
                try:
                    self.watch(connection)
                    await self._setup(connection)
                except BaseException:
                    self.connection = None
                    await _close(connection, 1.0)
                    raise

    async def _keep(self) -> None:
        while not self._closing:
            await self._gone.wait()
            lost, self.connection = self.connection, None
            if self._on_lost is not None:
                self._on_lost(self._error)
            if lost is not None:
                await _close(lost, 1.0)   # a stalled node would never answer the close
            try:
                await self._connect()
            except Exception:
                # A bug in setup, not an outage: said loudly, and tried again, so the
                # process never goes deaf.
                log.exception("broker.failover_failed")
                await asyncio.sleep(self._max_wait_s)
                self._gone.set()
                continue
            if self._on_restored is not None:
                self._on_restored()

    async def close(self, timeout_s: float = 5.0) -> None:
        self._closing = True
        if self._keeper is not None:
            self._keeper.cancel()
            with suppress(asyncio.CancelledError):
                await self._keeper
        connection, self.connection = self.connection, None
        if connection is not None:
            await _close(connection, timeout_s)


async def _close(connection: AbstractConnection, timeout_s: float) -> None:
    with suppress(*CONNECT_ERRORS, RuntimeError):
        async with asyncio.timeout(timeout_s):
            await connection.close()
