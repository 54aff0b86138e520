"""Publish rate of Sundial's publisher against the same work through aiormq's and
aio-pika's public API, in one process, on one durable quorum queue.

`python -m bench.publish [--messages N] [--reps R]`

Each way publishes N run-sized messages (persistent, `mandatory`, a message_id each,
publisher confirms) in batches of BATCH, all of a batch in flight at once, and waits for
every confirm before the next batch; the queue is purged between ways, and the ways take
turns R times so that the machine's load falls on all alike. Per way: messages per
second (wall) and the client's CPU per message (this process's user + system time, the
figure a loaded machine bends least), on uvloop where installed, as the services run:

- `publisher`: `Publisher.publish_many` (core.aiormq_seam: one write per 250 messages);
- `aiormq`: `asyncio.gather` of aiormq's `Channel.basic_publish`, one per message,
  exceptions returned (what the publisher would be on aiormq's public API);
- `aiormq_nowait`: the same with `wait=False` (no drain per message);
- `aio_pika`: `asyncio.gather` of aio-pika's `Exchange.publish`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import aio_pika
import aiormq
from pamqp.commands import Basic

from bench import infra
from sundial.core.broker import EXCHANGE, Outgoing, Publisher, queue_name
from sundial.core.messages import CONTENT_TYPE, encode_run
from sundial.core.settings import Settings

BATCH = 500
QUEUE = "bench"
MESSAGE_BYTES = 200
DELIVERY_LIMIT = Settings.model_fields["delivery_limit"].default

Publish = Callable[[Sequence[Outgoing]], Awaitable[list]]


def run_body(size: int = MESSAGE_BYTES) -> bytes:
    body = encode_run({"run_id": 1, "job_id": 1, "job": "bench-1", "handler": "noop",
                       "payload": {}, "schedule_id": None, "scheduled_for": datetime.now(UTC),
                       "attempt": 1, "timeout_seconds": None})
    return body + b" " * max(0, size - len(body))


def _properties(message: Outgoing) -> Basic.Properties:
    return Basic.Properties(content_type=CONTENT_TYPE, delivery_mode=2,
                            message_id=str(message.run_id))


def _aiormq(channel: aiormq.abc.AbstractChannel, *, wait: bool) -> Publish:
    async def publish(batch: Sequence[Outgoing]) -> list:
        return await asyncio.gather(*(
            channel.basic_publish(m.body, exchange=EXCHANGE, routing_key=m.queue,
                                  properties=_properties(m), mandatory=True, wait=wait)
            for m in batch), return_exceptions=True)
    return publish


def _aio_pika(exchange: aio_pika.abc.AbstractExchange) -> Publish:
    async def publish(batch: Sequence[Outgoing]) -> list:
        return await asyncio.gather(*(
            exchange.publish(aio_pika.Message(m.body, content_type=CONTENT_TYPE,
                                              delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                              message_id=str(m.run_id)),
                             routing_key=m.queue, mandatory=True)
            for m in batch), return_exceptions=True)
    return publish


def _confirmed(outcome: object) -> bool:
    return outcome is None or isinstance(outcome, Basic.Ack)


async def _timed(publish: Publish, batches: list[list[Outgoing]]) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        outcomes = await publish(batch)
        assert all(_confirmed(o) for o in outcomes), outcomes[:3]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sent = sum(len(b) for b in batches)
    return {"per_s": sent / wall, "cpu_us": cpu / sent * 1e6}


async def measure(messages: int, reps: int, only: Sequence[str] = ()) -> dict:
    body = run_body()
    batches = [[Outgoing(start + i + 1, QUEUE, body) for i in range(BATCH)]
               for start in range(0, messages, BATCH)]
    with infra.vhost("publish") as amqp:
        publisher = Publisher(amqp, DELIVERY_LIMIT)
        rmq = await aiormq.connect(amqp)
        pika = await aio_pika.connect(amqp)
        try:
            assert not any(await publisher.publish_many(batches[0]))   # queue declared
            channel = await rmq.channel(publisher_confirms=True)
            pika_channel = await pika.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await pika_channel.get_exchange(EXCHANGE)
            ways: dict[str, Publish] = {
                "publisher": publisher.publish_many,
                "aiormq": _aiormq(channel, wait=True),
                "aiormq_nowait": _aiormq(channel, wait=False),
                "aio_pika": _aio_pika(exchange),
            }
            ways = {way: ways[way] for way in ways if way in only or way == "aiormq" or not only}
            runs: dict[str, list[dict]] = {way: [] for way in ways}
            for _ in range(reps):
                for way, publish in ways.items():
                    await channel.queue_purge(queue_name(QUEUE))
                    runs[way].append(await _timed(publish, batches))
            await channel.queue_purge(queue_name(QUEUE))
        finally:
            await publisher.close()
            await rmq.close()
            await pika.close()
    # Ratios to aiormq's public basic_publish, rep by rep (the same load for both).
    return {"messages": messages, "batch": BATCH, "message_bytes": len(body), "reps": reps,
            "load_average": list(os.getloadavg()),
            "ways": {way: {"runs": r,
                           "per_s_vs_aiormq": statistics.median(
                               x["per_s"] / a["per_s"] for x, a in zip(r, runs["aiormq"], strict=True)),
                           "cpu_vs_aiormq": statistics.median(
                               x["cpu_us"] / a["cpu_us"] for x, a in zip(r, runs["aiormq"], strict=True))}
                     for way, r in runs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=(), metavar="WAY",
                        help="these ways (and aiormq, the reference) only")
    args = parser.parse_args()
    try:   # the services' event loop where installed (core.cli)
        import uvloop
        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(measure(args.messages, args.reps, args.only))
    print(f"{result['messages']} messages of {result['message_bytes']} B, batches of "
          f"{result['batch']}, {result['reps']} reps, load {result['load_average']}")
    for way, figures in result["ways"].items():
        runs = "  ".join(f"{r['per_s']:7.0f}/s {r['cpu_us']:6.1f} us" for r in figures["runs"])
        print(f"{way:14s} {runs}   rate x{figures['per_s_vs_aiormq']:.2f}"
              f"  cpu x{figures['cpu_vs_aiormq']:.2f}  (vs aiormq)")


if __name__ == "__main__":
    main()
