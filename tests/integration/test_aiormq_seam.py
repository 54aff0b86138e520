"""core.aiormq_seam, the one place Sundial uses aiormq's internals, against the installed
aiormq and the real RabbitMQ: fails when a new aiormq version moves what it relies on
(aiormq's minor version is pinned for this reason)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiormq
from pamqp.commands import Basic, Connection

from sundial.core.aiormq_seam import publish_together, watch_blocking


async def test_publish_together_settles_each_message_as_basic_publish_would(amqp_url, queue):
    """Confirmed where routed, failed with aiormq's PublishError where returned
    (mandatory), each through aiormq's own reader; the bookkeeping is gone afterwards."""
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.queue_declare(queue, auto_delete=True)
        routes = [queue, f"{queue}-nowhere", queue]
        before = channel.delivery_tag
        confirmations = await publish_together(channel, "", [
            (key, Basic.Properties(message_id=f"m{i}"), b"x" * (i * 300_000))
            for i, key in enumerate(routes)])
        assert channel.delivery_tag == before + len(routes)
        await asyncio.wait(confirmations, timeout=10)
        assert isinstance(confirmations[0].result(), Basic.Ack)
        assert isinstance(confirmations[1].exception(), aiormq.exceptions.PublishError)
        assert isinstance(confirmations[2].result(), Basic.Ack)
        # The next publish, aiormq's own, follows on the same delivery tags.
        assert isinstance(await channel.basic_publish(b"", routing_key=queue), Basic.Ack)
        assert not channel.message_id_delivery_tag
        declared = await channel.queue_declare(queue, passive=True)
        assert declared.message_count == 3
    finally:
        await connection.close()


async def test_blocked_and_unblocked_notices_reach_the_callbacks() -> None:
    underlay = aiormq.Connection("amqp://guest:guest@127.0.0.1:1/")
    connection = SimpleNamespace(transport=SimpleNamespace(connection=underlay))
    seen: list[str | None] = []
    watch_blocking(connection, seen.append, lambda: seen.append(None))

    # What aiormq's reader calls for the two frames on channel 0.
    await underlay._Connection__handle_connection_blocked(
        Connection.Blocked(reason="low on memory"))
    ready = asyncio.ensure_future(underlay.ready())
    underlay.connected.set()
    await asyncio.sleep(0.01)
    assert not ready.done(), "aiormq itself still holds the connection while blocked"
    await underlay._Connection__handle_connection_unblocked(Connection.Unblocked())
    await asyncio.wait_for(ready, 1)
    assert seen == ["low on memory", None]


def test_the_reader_looks_the_handlers_up_on_the_connection() -> None:
    """watch_blocking replaces the handlers on the instance: aiormq's reader must look
    them up there at each frame (not keep references taken earlier)."""
    import inspect

    reader = inspect.getsource(aiormq.Connection._Connection__reader)
    assert "await self.__handle_connection_blocked(frame)" in reader
    assert "await self.__handle_connection_unblocked(frame)" in reader
