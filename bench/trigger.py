"""3. Trigger latency: "run now" -> the worker starts the run, at light load.

Sundial: `POST /api/jobs/{id}/trigger` against `sundial api` (with a key from
`sundial keys create`), one request at a time with a short pause; latency =
runs.started_at - the instant httpx was called, as the peers are measured from their
client's call. The broker's own floor is measured in the same run, interleaved with the
triggers (one floor message after each trigger, so both see the same machine): RabbitMQ
used as Sundial uses it, a persistent `mandatory` message published with confirms to a
direct exchange and a durable quorum queue with Sundial's arguments, a consumer with
the worker's prefetch; floor = the publish call -> the delivery. Sundial's overhead =
its latency - the floor (p50 and p99).
The breakdown of Sundial's latency: call -> request on the wire (httpx's trace of the
request's first write) -> run inserted (`runs.created_at`) -> message on the broker (a
transient classic queue bound beside the worker's, consumed by the bench) -> worker
start (`runs.started_at`), and the answer back at the client.
APScheduler 4: `add_job` from a client process against one worker-role process;
latency = job_results.started_at - the instant add_job was called.
Both clocks are this machine's one clock (PostgreSQL's now() and time.time()).
"""

from __future__ import annotations

import asyncio
import time

import aiormq
import asyncpg
import httpx

from bench import aps, infra, seed
from bench.stats import summary_ms
from sundial.core.broker import EXCHANGE, queue_arguments

PAUSE_S = 0.02
WARM_UP = 20
WORKER_CONCURRENCY = 10
DELIVERY_LIMIT = 5
# httpx's trace event as the request's first bytes are written to the socket.
ON_THE_WIRE = "http11.send_request_headers.started"
# A message body of the size of a run's.
FLOOR_BODY = (b'{"version":1,"run_id":1000000,"job_id":1,"job":"bench-trigger-0","handler":"noop",'
              b'"payload":{},"schedule_id":null,"scheduled_for":"2026-01-01T00:00:00.000000+00:00",'
              b'"attempt":1,"timeout_seconds":3600}')


async def sundial(count: int, *, timeout_s: float) -> dict:
    async with infra.database("trigger") as db:
        with infra.vhost("trigger") as amqp:
            await seed.schedules(db, 1, every_s=86400, first_in_s=86400, prefix="bench-trigger-")
            port = infra.free_port()
            env = infra.sundial_env(db, amqp, WORKER_QUEUES=seed.QUEUE,
                                    WORKER_CONCURRENCY=WORKER_CONCURRENCY,
                                    RABBITMQ_DELIVERY_LIMIT=DELIVERY_LIMIT,
                                    API_HOST="127.0.0.1", API_PORT=port)
            key = infra.api_key(env)
            conn = await asyncpg.connect(db)
            job_id = await conn.fetchval("SELECT min(id) FROM jobs")
            procs = [infra.sundial("sundial-trigger-scheduler", ["scheduler"], env),
                     infra.sundial("sundial-trigger-worker", ["worker"], env),
                     infra.sundial("sundial-trigger-api", ["api"], env)]
            base = f"http://127.0.0.1:{port}"
            try:
                async with httpx.AsyncClient(base_url=base, timeout=10,
                                             headers={"Authorization": f"Bearer {key}"}) as http:
                    await infra.wait_until(lambda: _healthy(http), 60, "the API")
                    await infra.wait_until(
                        lambda: conn.fetchval("SELECT count(*) FROM workers"), 60, "the worker")
                    async with Floor(amqp) as floor, Tap(amqp, seed.QUEUE) as tap:
                        cpu_before = [p.usage().cpu_s for p in procs]
                        t = await _triggers(http, f"/api/jobs/{job_id}/trigger", count, floor)
                        cpu = [p.usage().cpu_s - c for p, c in zip(procs, cpu_before, strict=True)]
                        await infra.wait_until(
                            lambda: conn.fetchval("SELECT NOT EXISTS (SELECT 1 FROM runs WHERE status"
                                                  " IN ('queued', 'running'))"),
                            timeout_s, "triggered runs")
                        on_broker = dict(tap.seen)
                rows = await conn.fetch("SELECT id, extract(epoch FROM created_at)::float8 AS c,"
                                        " extract(epoch FROM started_at)::float8 AS s"
                                        " FROM runs WHERE id = ANY($1::bigint[])", list(t.called))
            finally:
                for p in procs:
                    p.stop()
                await conn.close()
    rows = [r for r in rows if r["s"] is not None]
    called = [r["s"] - t.called[r["id"]] for r in rows]
    figures = summary_ms(called)
    floor_ms = floor.summary()
    return {**figures,
            "floor": floor_ms,
            "overhead": {p: _minus(figures[p], floor_ms[p]) for p in ("p50_ms", "p99_ms")},
            "from_wire": summary_ms([r["s"] - t.sent[r["id"]] for r in rows]),
            "breakdown": {
                "call_to_wire": summary_ms([t.sent[i] - t.called[i] for i in t.sent]),
                "wire_to_inserted": summary_ms([r["c"] - t.sent[r["id"]] for r in rows]),
                "inserted_to_broker": summary_ms([on_broker[r["id"]] - r["c"] for r in rows
                                                  if r["id"] in on_broker]),
                "broker_to_started": summary_ms([r["s"] - on_broker[r["id"]] for r in rows
                                                 if r["id"] in on_broker]),
                "call_to_answer": summary_ms([t.answered[i] - t.called[i] for i in t.called])},
            "cpu_ms_per_trigger": {name: round(c * 1000 / (WARM_UP + count), 3)
                                   for name, c in zip(("scheduler", "worker", "api"), cpu,
                                                      strict=True)},
            "triggers": count, "pause_s": PAUSE_S,
            "command": f"sundial api + sundial worker (WORKER_CONCURRENCY={WORKER_CONCURRENCY}) + "
                       "sundial scheduler; POST /api/jobs/{id}/trigger one at a time"}


class _Timings:
    def __init__(self) -> None:
        self.called: dict[int, float] = {}
        self.sent: dict[int, float] = {}
        self.answered: dict[int, float] = {}


async def _triggers(http: httpx.AsyncClient, path: str, count: int, floor: Floor) -> _Timings:
    """`count` triggers (after WARM_UP), each followed by one floor message."""
    t = _Timings()
    wire: list[float] = []

    async def trace(event: str, _info: dict) -> None:
        if event == ON_THE_WIRE:
            wire.append(time.time())

    for i in range(WARM_UP + count):
        wire.clear()
        at = time.time()
        response = await http.post(path, extensions={"trace": trace})
        answered = time.time()
        response.raise_for_status()
        if i >= WARM_UP:
            run_id = response.json()["run_id"]
            t.called[run_id], t.sent[run_id], t.answered[run_id] = at, wire[0], answered
        await asyncio.sleep(PAUSE_S)
        await floor.one(counted=i >= WARM_UP)
        await asyncio.sleep(PAUSE_S)
    return t


class Floor:
    """RabbitMQ's own latency, used as Sundial uses it: a persistent, `mandatory` message
    published with confirms to a durable direct exchange, routed to a durable quorum queue
    with Sundial's arguments (delivery limit, dead-letter exchange), consumed on a channel
    with the worker's prefetch and acked. One message at a time: publish call -> delivery."""

    EXCHANGE = "bench.floor"
    QUEUE = "bench.floor"

    def __init__(self, amqp_url: str):
        self.url = amqp_url
        self.latencies: list[float] = []
        self.confirms: list[float] = []
        self._delivered: asyncio.Queue[float] = asyncio.Queue()

    async def __aenter__(self) -> Floor:
        self.publisher = await aiormq.connect(self.url)
        self.consumer = await aiormq.connect(self.url)
        self.out = await self.publisher.channel(publisher_confirms=True)
        await self.out.exchange_declare(self.EXCHANGE, exchange_type="direct", durable=True)
        await self.out.queue_declare(self.QUEUE, durable=True,
                                     arguments=queue_arguments(DELIVERY_LIMIT))
        await self.out.queue_bind(self.QUEUE, self.EXCHANGE, routing_key=self.QUEUE)
        self.inbox = await self.consumer.channel()
        await self.inbox.basic_qos(prefetch_count=WORKER_CONCURRENCY)

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            self._delivered.put_nowait(time.time())
            await self.inbox.basic_ack(message.delivery.delivery_tag)

        await self.inbox.basic_consume(self.QUEUE, on_message)
        return self

    async def one(self, *, counted: bool) -> None:
        at = time.time()
        await self.out.basic_publish(
            FLOOR_BODY, exchange=self.EXCHANGE, routing_key=self.QUEUE, mandatory=True,
            properties=aiormq.spec.Basic.Properties(content_type="application/json",
                                                    delivery_mode=2, message_id=str(at)))
        confirmed = time.time()
        arrived = await asyncio.wait_for(self._delivered.get(), 10)
        if counted:
            self.latencies.append(arrived - at)
            self.confirms.append(confirmed - at)

    def summary(self) -> dict:
        return {**summary_ms(self.latencies), "messages": len(self.latencies),
                "publish_to_confirm": summary_ms(self.confirms),
                "prefetch": WORKER_CONCURRENCY}

    async def __aexit__(self, *_exc: object) -> None:
        try:
            await self.out.queue_delete(self.QUEUE)
        finally:
            await self.consumer.close()
            await self.publisher.close()


class Tap:
    """When each run's message reached the broker: a transient classic queue bound to
    Sundial's exchange with the worker's routing key gets a copy of every message
    (consumed here, without acks); the worker's own queue is untouched."""

    def __init__(self, amqp_url: str, routing_key: str):
        self.url, self.routing_key = amqp_url, routing_key
        self.seen: dict[int, float] = {}

    async def __aenter__(self) -> Tap:
        self.connection = await aiormq.connect(self.url)
        channel = await self.connection.channel()
        queue = (await channel.queue_declare("", exclusive=True, auto_delete=True)).queue
        await channel.queue_bind(queue, EXCHANGE, routing_key=self.routing_key)

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            self.seen[int(message.header.properties.message_id)] = time.time()

        await channel.basic_consume(queue, on_message, no_ack=True)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.connection.close()


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


async def apscheduler(count: int, *, timeout_s: float) -> dict:
    async with infra.database("aps_trigger", migrated=False) as db:
        async with aps.scheduler(db, "scheduler") as client:
            worker = infra.python_module("aps-trigger-worker", "bench.aps",
                                         ["node", "--db", db, "--role", "worker"])
            conn = await asyncpg.connect(db)
            try:
                await asyncio.sleep(3.0)
                sent: dict[str, float] = {}
                for i in range(WARM_UP + count):
                    at = time.time()
                    job_id = await aps.add_job(client)
                    if i >= WARM_UP:
                        sent[str(job_id)] = at
                    await asyncio.sleep(PAUSE_S)
                await infra.wait_until(
                    lambda: _at_least(conn, "SELECT count(*) FROM job_results", WARM_UP + count),
                    timeout_s, "APScheduler jobs")
                rows = await conn.fetch("SELECT job_id::text AS id,"
                                        " extract(epoch FROM started_at)::float8 AS s FROM job_results")
            finally:
                worker.stop()
                await conn.close()
    latencies = [r["s"] - sent[r["id"]] for r in rows if r["id"] in sent and r["s"] is not None]
    return {**summary_ms(latencies), "triggers": count, "pause_s": PAUSE_S,
            "command": "AsyncScheduler.add_job from a client + python -m bench.aps node --role worker"}


async def _healthy(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/health")).status_code == 200
    except httpx.HTTPError:
        return False


async def _at_least(conn: asyncpg.Connection, sql: str, count: int) -> bool:
    return await conn.fetchval(sql) >= count
