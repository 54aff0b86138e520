"""The worker's acks when its broker connection goes while runs finish."""

from __future__ import annotations

import aio_pika

from sundial.core.broker import declare_base, declare_queue, queue_name


async def test_acking_messages_whose_channel_closed_neither_raises_nor_stops_the_worker(
        amqp_url, queue):
    """A worker's node goes while runs finish: their messages' channel is closed when the
    recorder acks them. The ack is given up (the broker delivers the messages again and
    they are acked as duplicates) instead of failing the recorder, which stopped the
    worker."""
    from sundial.worker.recorder import Acks

    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        q = await declare_queue(channel, await declare_base(channel), queue, 5)
        await channel.default_exchange.publish(aio_pika.Message(b"{}", message_id="7"),
                                               routing_key=queue_name(queue))
        message = await q.get(timeout=5)
        acks = Acks()
        acks.delivered(message)
        await channel.close()
        await acks.ack([message])   # raised ChannelInvalidStateError before
        acks.settled(message)
    finally:
        await connection.close()
