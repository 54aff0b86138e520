"""RABBITMQ_URL with several nodes: the publisher and the worker's failover connection
use the first node that answers and move on to the next when theirs goes.

Each "node" is a TCP proxy in front of the one real broker, so cutting a proxy is what a
process sees of its node stopping, without touching the server other tests share.
"""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from sundial.core.broker import Outgoing, Publisher, queue_name
from sundial.core.nodes import FailoverConnection, Nodes, NoNodeAnswered
from tests.chaos.stack import target, via_proxy
from tests.conftest import free_port, wait_for
from tests.faults import tcp_proxy


def port_of(node: str | None) -> int:
    assert node is not None
    return int(node.rsplit(":", 1)[1].split("/", 1)[0])


async def test_publisher_moves_to_the_next_node_when_its_node_goes(amqp_url, queue):
    host, port = target(amqp_url, 5672)
    async with tcp_proxy(host, port) as first, tcp_proxy(host, port) as second:
        urls = f"{via_proxy(amqp_url, first.port)},{via_proxy(amqp_url, second.port)}"
        publisher = Publisher(urls, delivery_limit=5, connect_timeout_s=2,
                              confirm_timeout_s=3)
        try:
            assert await publisher.publish_many([Outgoing(1, queue, b"{}")]) == [None]
            assert port_of(publisher.nodes.current) == first.port

            await first.cut()
            # The publish that finds its connection gone may fail; the next one goes out
            # through the other node.
            await wait_for(lambda: _published_ok(publisher, Outgoing(2, queue, b"{}")),
                           timeout=20, interval=0.2, what="a publish through the second node")
            result = await publisher.publish_many([Outgoing(3, queue, b"{}")])
            assert result == [None]
            assert port_of(publisher.nodes.current) == second.port
        finally:
            await publisher.close()
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        declared = await channel.declare_queue(queue_name(queue), passive=True)
        assert declared.declaration_result.message_count >= 2


async def _published_ok(publisher: Publisher, outgoing: Outgoing) -> bool:
    return (await publisher.publish_many([outgoing])) == [None]


async def test_the_first_node_that_answers_is_used(amqp_url, queue):
    host, port = target(amqp_url, 5672)
    async with tcp_proxy(host, port) as live:
        dead = via_proxy(amqp_url, free_port())   # nothing listens there
        publisher = Publisher(f"{dead},{via_proxy(amqp_url, live.port)}", delivery_limit=5,
                              connect_timeout_s=2)
        try:
            assert await _published_ok(publisher, Outgoing(1, queue, b"{}"))
            assert port_of(publisher.nodes.current) == live.port
        finally:
            await publisher.close()


async def test_no_node_answering_names_every_node(amqp_url):
    ports = [free_port(), free_port()]
    nodes = Nodes([via_proxy(amqp_url, p) for p in ports])
    with pytest.raises(NoNodeAnswered) as raised:
        await nodes.connect(timeout_s=2)
    for p in ports:
        assert f":{p}/" in str(raised.value)
    assert "guest:***@" in str(raised.value) or "@" not in amqp_url.split("//", 1)[1]


async def test_failover_connection_sets_up_again_on_the_next_node(amqp_url, queue):
    """A consumer kept by FailoverConnection gets messages again after its node goes:
    the next node takes over and the setup (channel, queue, consumer) runs there."""
    host, port = target(amqp_url, 5672)
    got: list[bytes] = []
    setups: list[int] = []

    async with tcp_proxy(host, port) as first, tcp_proxy(host, port) as second:
        nodes = Nodes([via_proxy(amqp_url, first.port), via_proxy(amqp_url, second.port)])
        failover: FailoverConnection

        async def setup(connection: aio_pika.abc.AbstractConnection) -> None:
            channel = await connection.channel()
            failover.watch(channel)
            declared = await channel.declare_queue(queue, auto_delete=False)

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                got.append(message.body)
                await message.ack()

            await declared.consume(on_message)
            setups.append(port_of(nodes.current))

        failover = FailoverConnection(nodes, setup, timeout_s=2, max_wait_s=1)
        await failover.start()
        try:
            async with await aio_pika.connect(amqp_url) as producer:
                channel = await producer.channel()
                await channel.default_exchange.publish(aio_pika.Message(b"one"), queue)
                await wait_for(lambda: got == [b"one"], what="the first message")

                await first.cut()
                await wait_for(lambda: len(setups) == 2, timeout=20,
                               what="the consumer set up again on the second node")
                assert setups == [first.port, second.port]
                await channel.default_exchange.publish(aio_pika.Message(b"two"), queue)
                await wait_for(lambda: got == [b"one", b"two"], what="a message after failover")
                assert failover.connected
        finally:
            await failover.close()
            async with await aio_pika.connect(amqp_url) as conn:
                await (await conn.channel()).queue_delete(queue)


async def test_a_closed_channel_brings_the_next_node_in(amqp_url, queue):
    """A watched channel that the broker closes (here: a queue declared with other
    arguments) takes the connection down, and the setup runs again."""
    host, port = target(amqp_url, 5672)
    setups = 0
    async with tcp_proxy(host, port) as first, tcp_proxy(host, port) as second:
        nodes = Nodes([via_proxy(amqp_url, first.port), via_proxy(amqp_url, second.port)])
        channels: list[aio_pika.abc.AbstractChannel] = []

        async def setup(connection: aio_pika.abc.AbstractConnection) -> None:
            nonlocal setups
            channel = await connection.channel()
            failover.watch(channel)
            channels.append(channel)
            setups += 1

        failover = FailoverConnection(nodes, setup, timeout_s=2, max_wait_s=1)
        await failover.start()
        try:
            with pytest.raises(aio_pika.exceptions.ChannelClosed):
                await channels[0].declare_queue(f"{queue}-missing", passive=True)
            await wait_for(lambda: setups == 2, timeout=20, what="setup on a new connection")
            await asyncio.sleep(0)
            assert port_of(nodes.current) == second.port
        finally:
            await failover.close()


async def test_a_nacked_publish_gets_a_new_connection(amqp_url, queue):
    """After the broker nacks (here: a policy that makes the queue reject publishes), the
    publisher drops its connection, so the next publish goes out on a new one (the next
    node's): a channel that a quorum queue nacked while it had lost its leader would go
    on nacking."""
    import subprocess

    from tests.chaos.checker import vhost_of

    def policy(*args: str) -> None:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)

    host, port = target(amqp_url, 5672)
    name = f"reject-{queue}"
    async with tcp_proxy(host, port) as first, tcp_proxy(host, port) as second:
        urls = f"{via_proxy(amqp_url, first.port)},{via_proxy(amqp_url, second.port)}"
        publisher = Publisher(urls, delivery_limit=5, connect_timeout_s=2, confirm_timeout_s=5)
        try:
            assert await _published_ok(publisher, Outgoing(1, queue, b"{}"))
            assert port_of(publisher.nodes.current) == first.port
            policy("set_policy", "-p", vhost_of(amqp_url), "--apply-to", "queues", name,
                   f"^{queue_name(queue)}$".replace(".", r"\."),
                   '{"max-length": 0, "overflow": "reject-publish"}')
            try:
                async def nacked() -> bool:
                    errors = await publisher.publish_many([Outgoing(2, queue, b"{}")])
                    return "Nack" in repr(errors[0])
                await wait_for(nacked, timeout=30, interval=0.5, what="a nacked publish")
                assert not publisher.connected, "the nacked connection was dropped"
            finally:
                policy("clear_policy", "-p", vhost_of(amqp_url), name)
            await wait_for(lambda: _published_ok(publisher, Outgoing(3, queue, b"{}")),
                           timeout=30, interval=0.5, what="a confirmed publish again")
        finally:
            await publisher.close()
