"""The confirmed publisher against the real RabbitMQ: each message's own outcome, in
order, whatever happened to the others and to an earlier, interrupted publish."""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq
import pytest

from sundial.core.broker import FRAME_BATCH, Outgoing, Publisher, queue_name
from tests.chaos.stack import target, via_proxy
from tests.faults import tcp_proxy


async def _depth(amqp_url: str, queue: str) -> int:
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        declared = await channel.declare_queue(queue_name(queue), passive=True)
        return declared.declaration_result.message_count


async def _delete_queue(amqp_url: str, queue: str) -> None:
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        await channel.queue_delete(queue_name(queue))


async def test_each_message_gets_its_own_outcome_in_order(amqp_url, queue):
    """More messages than one socket write takes: routable ones are confirmed, those the
    broker returns as unroutable (their queue deleted since) fail, each in its place."""
    gone = f"{queue}-gone"
    publisher = Publisher(amqp_url, delivery_limit=5)
    try:
        assert await publisher.publish_many([Outgoing(1, gone, b"{}")]) == [None]
        await _delete_queue(amqp_url, gone)
        messages = [Outgoing(10 + i, gone if i % 97 == 3 else queue, b"{}")
                    for i in range(FRAME_BATCH * 2 + 7)]
        errors = await publisher.publish_many(messages)
        failed = [m.run_id for m, e in zip(messages, errors, strict=True) if e is not None]
        assert failed == [m.run_id for m in messages if m.queue == gone]
        assert all(isinstance(errors[messages.index(m)], aiormq.exceptions.PublishError)
                   for m in messages if m.queue == gone)
        assert publisher.connected, "a returned message does not drop the connection"
    finally:
        await publisher.close()
    assert await _depth(amqp_url, queue) == sum(1 for m in messages if m.queue == queue)


async def test_a_closed_channel_fails_the_publish_and_the_next_one_reconnects(amqp_url, queue):
    """The broker closes the channel under the publish (here: the run exchange deleted,
    so publishing to it is a channel error): every message fails, the next publish
    declares the exchange again on a new channel and is confirmed."""
    publisher = Publisher(amqp_url, delivery_limit=5)
    try:
        assert await publisher.publish_many([Outgoing(1, queue, b"{}")]) == [None]
        async with await aio_pika.connect(amqp_url) as conn:
            await (await conn.channel()).exchange_delete("sundial.runs")
        errors = await publisher.publish_many([Outgoing(2, queue, b"{}"),
                                               Outgoing(3, queue, b"{}")])
        assert all(isinstance(e, aiormq.exceptions.ChannelClosed) for e in errors), errors
        assert await publisher.publish_many([Outgoing(4, queue, b"{}")]) == [None]
    finally:
        await publisher.close()


async def _hog(channel: aio_pika.abc.AbstractChannel, megabytes: int) -> None:
    """Messages the writer waits to drain (aiormq drains a `basic_publish` it waits
    for), more than the socket buffers of a stalled connection take."""
    body = b"x" * (1 << 20)
    for _ in range(megabytes):
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key="nowhere",
                                               mandatory=False)


async def test_a_publish_cancelled_before_its_write_leaves_no_confirm_misattributed(
        amqp_url, queue):
    """A publish_many cancelled while its later messages wait for room in the
    connection's write queue: the broker never saw those, so their delivery tags are
    given back. Else the broker's confirms would land on the cancelled messages and the
    next publish, one tag count ahead, would wait for confirms that never come."""
    gone = f"{queue}-gone"
    async with tcp_proxy(*target(amqp_url, 5672)) as proxy:
        publisher = Publisher(via_proxy(amqp_url, proxy.port), delivery_limit=5,
                              confirm_timeout_s=10)
        try:
            assert await publisher.publish_many([Outgoing(1, queue, b"{}"),
                                                 Outgoing(2, gone, b"{}")]) == [None, None]
            await _delete_queue(amqp_url, gone)
            assert publisher._connection is not None
            side = await publisher._connection.channel(publisher_confirms=False)
            proxy.stall()
            hog = asyncio.create_task(_hog(side, 64))
            await asyncio.sleep(1.0)
            assert not hog.done(), "the writer waits to drain into the stalled socket"
            batches = 12   # more than aiormq's write queue holds (10)
            publish = asyncio.create_task(publisher.publish_many(
                [Outgoing(100 + i, queue, b"{}") for i in range(FRAME_BATCH * batches)]))
            await asyncio.sleep(0.5)
            assert not publish.done()
            publish.cancel()
            with pytest.raises(asyncio.CancelledError):
                await publish
            await proxy.restore()
            await asyncio.wait_for(hog, 60)

            errors = await publisher.publish_many([Outgoing(5000, queue, b"{}"),
                                                   Outgoing(5001, gone, b"{}"),
                                                   Outgoing(5002, queue, b"{}")])
            assert errors[0] is None and errors[2] is None, errors
            assert isinstance(errors[1], aiormq.exceptions.PublishError), errors
        finally:
            await publisher.close()
    # The cancelled call's first batches went out whole, the rest not at all.
    sent = await _depth(amqp_url, queue) - 3
    assert sent % FRAME_BATCH == 0 and 0 < sent < FRAME_BATCH * batches, sent
