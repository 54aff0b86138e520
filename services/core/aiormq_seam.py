"""The one place Sundial reaches into aiormq's internals, and why.

aiormq's public API has neither of the two things the scheduler needs:

- Publishing many messages in one socket write. `Channel.basic_publish` takes the
  channel lock, marshals and queues one message at a time, and aiormq's writer sends each
  queued message with its own `write` (a system call): gathering 500 `basic_publish`
  calls costs 2.5 to 3 times the client CPU per message of one write for them all, and
  publishes 2 to 3 times slower (bench/publish.py; aio-pika's `Exchange.publish` is
  slower still). Publishing is the scheduler's largest cost when it clears a backlog.
  `publish_together` does what `basic_publish` does, delivery-tag rollback included, for
  many messages under one lock and one write.
- Hearing `connection.blocked` / `connection.unblocked`: aiormq advertises the
  capability and holds its writes while blocked, but calls no one back, nor does
  aio-pika (its maintainer's answer in mosquito/aio-pika#506). `watch_blocking` wraps
  aiormq's two handlers on one connection.

Hence aiormq's minor version is pinned (pyproject.toml) and
tests/integration/test_aiormq_seam.py fails when a new version moves what this uses:
Channel.lock, delivery_tag, confirmations, message_id_delivery_tag, create_future,
_split_body, write_queue, number; Connection's two private blocked handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial

import aiormq
from aio_pika.abc import AbstractConnection
from aiormq.abc import ChannelFrame
from pamqp.commands import Basic, Connection
from pamqp.header import ContentHeader


async def publish_together(channel: aiormq.Channel, exchange: str,
                           messages: Sequence[tuple[str, Basic.Properties, bytes]]
                           ) -> list[asyncio.Future]:
    """`basic_publish(body, exchange=exchange, routing_key=key, properties=properties,
    mandatory=True)` for each (key, properties, body), all under one channel lock and in
    one write; returns each message's confirmation without waiting for it: Basic.Ack,
    Basic.Nack, or the exception of a return or of the channel closing, as aiormq's own
    reader settles them. Every `properties` needs a unique message_id (a returned message
    is matched to its confirmation by it).

    If the call is interrupted before the write is queued (cancelled while the
    connection's write queue is full), the broker has seen none of these messages: their
    delivery tags are given back, so the broker's confirms keep matching the next
    publishes' tags, and their confirmations are cancelled."""
    frames: list = []
    pending: list[tuple[int, str, asyncio.Future]] = []
    async with channel.lock:
        first_tag = channel.delivery_tag
        for routing_key, properties, body in messages:
            channel.delivery_tag += 1
            tag, message_id = channel.delivery_tag, properties.message_id
            confirmation = channel.create_future()
            channel.confirmations[tag] = confirmation
            channel.message_id_delivery_tag[message_id] = tag
            pending.append((tag, message_id, confirmation))
            frames += [Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True),
                       ContentHeader(properties=properties, body_size=len(body)),
                       *channel._split_body(body)]
        try:
            # asyncio.Queue.put queues nothing when it is interrupted.
            await channel.write_queue.put(ChannelFrame.marshall(frames=frames,
                                                                channel_number=channel.number))
        except BaseException:
            channel.delivery_tag = first_tag
            for tag, message_id, confirmation in pending:
                channel.confirmations.pop(tag, None)
                _forget(channel, message_id, tag)
                confirmation.cancel()
            raise
    for tag, message_id, confirmation in pending:
        confirmation.add_done_callback(partial(_forget, channel, message_id, tag))
    return [confirmation for _, _, confirmation in pending]


def _forget(channel: aiormq.Channel, message_id: str, tag: int,
            _confirmation: asyncio.Future | None = None) -> None:
    if channel.message_id_delivery_tag.get(message_id) == tag:
        channel.message_id_delivery_tag.pop(message_id)


def watch_blocking(connection: AbstractConnection, on_blocked: Callable[[str], None],
                   on_unblocked: Callable[[], None]) -> None:
    """Call `on_blocked(reason)` when the broker blocks this connection (RabbitMQ's
    `connection.blocked`, sent on a memory or disk alarm) and `on_unblocked()` when it
    lifts the block, after aiormq's own handling of each notice (it holds its writes
    while blocked). Wraps aiormq's two handlers on this one connection."""
    underlay = connection.transport.connection   # the aiormq.Connection
    handle_blocked = underlay._Connection__handle_connection_blocked
    handle_unblocked = underlay._Connection__handle_connection_unblocked

    async def blocked(frame: Connection.Blocked) -> None:
        await handle_blocked(frame)
        on_blocked(frame.reason or "")

    async def unblocked(frame: Connection.Unblocked) -> None:
        await handle_unblocked(frame)
        on_unblocked()

    underlay._Connection__handle_connection_blocked = blocked
    underlay._Connection__handle_connection_unblocked = unblocked

