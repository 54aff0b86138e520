"""3. Trigger latency: "run now" → the worker starts the run, at light load.

Sundial: `POST /api/jobs/{id}/trigger` against `sundial api` (with a key from
`sundial keys create`), one request at a time with a short pause; latency =
runs.started_at - the instant the request went on the wire (httpx's trace of the
request's first write). The same figures from the instant httpx was called, and the
split at `runs.created_at`, are kept beside them. The broker's own floor is measured in
the same run: a bare aiormq publisher and consumer on a durable quorum queue.
APScheduler 4: `add_job` from a client process against one worker-role process;
latency = job_results.started_at - the instant add_job was called.
Both clocks are this machine's one clock (PostgreSQL's now() and time.time()).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import aiormq
import asyncpg
import httpx

from bench import aps, infra, seed
from bench.stats import summary_ms

PAUSE_S = 0.02
WARM_UP = 20
BROKER_MESSAGES = 300
# httpx's trace event as the request's first bytes are written to the socket.
ON_THE_WIRE = "http11.send_request_headers.started"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api_key(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "sundial", "keys", "create", "--name", "bench",
                          "--role", "admin"], env=env, cwd=infra.ROOT, check=True,
                         capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1].strip()


async def sundial(count: int, *, timeout_s: float) -> dict:
    async with infra.database("trigger") as db:
        with infra.vhost("trigger") as amqp:
            await seed.schedules(db, 1, every_s=86400, first_in_s=86400, prefix="bench-trigger-")
            port = _free_port()
            env = infra.sundial_env(db, amqp, WORKER_QUEUES=seed.QUEUE, WORKER_CONCURRENCY=10,
                                    API_HOST="127.0.0.1", API_PORT=port)
            key = _api_key(env)
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
                    wire: list[float] = []

                    async def trace(event: str, _info: dict) -> None:
                        if event == ON_THE_WIRE:
                            wire.append(time.time())

                    called: dict[int, float] = {}
                    sent: dict[int, float] = {}
                    for i in range(WARM_UP + count):
                        wire.clear()
                        at = time.time()
                        response = await http.post(f"/api/jobs/{job_id}/trigger",
                                                   extensions={"trace": trace})
                        response.raise_for_status()
                        if i >= WARM_UP:
                            run_id = response.json()["run_id"]
                            called[run_id], sent[run_id] = at, wire[0]
                        await asyncio.sleep(PAUSE_S)
                await infra.wait_until(
                    lambda: conn.fetchval("SELECT NOT EXISTS (SELECT 1 FROM runs WHERE status"
                                          " IN ('queued', 'running'))"), timeout_s, "triggered runs")
                rows = await conn.fetch("SELECT id, extract(epoch FROM created_at)::float8 AS c,"
                                        " extract(epoch FROM started_at)::float8 AS s"
                                        " FROM runs WHERE id = ANY($1::bigint[])", list(sent))
            finally:
                for p in procs:
                    p.stop()
                await conn.close()
            broker = await broker_floor(amqp)
    rows = [r for r in rows if r["s"] is not None]
    return {**summary_ms([r["s"] - sent[r["id"]] for r in rows]),
            "from_call": summary_ms([r["s"] - called[r["id"]] for r in rows]),
            "breakdown": {
                "wire_to_inserted": summary_ms([r["c"] - sent[r["id"]] for r in rows]),
                "inserted_to_started": summary_ms([r["s"] - r["c"] for r in rows]),
                "broker_publish_to_deliver": broker},
            "triggers": count, "pause_s": PAUSE_S,
            "command": "sundial api + sundial worker (WORKER_CONCURRENCY=10) + sundial scheduler; "
                       "POST /api/jobs/{id}/trigger one at a time"}


async def broker_floor(amqp_url: str) -> dict:
    """RabbitMQ's own publish -> deliver on a durable quorum queue, as Sundial's queues are:
    a bare aiormq publisher (with confirms) and consumer, one message at a time."""
    queue = "bench.floor"
    publisher = await aiormq.connect(amqp_url)
    consumer = await aiormq.connect(amqp_url)
    try:
        out = await publisher.channel(publisher_confirms=True)
        await out.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        delivered: asyncio.Queue[float] = asyncio.Queue()
        inbox = await consumer.channel()

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            delivered.put_nowait(time.time())
            await inbox.basic_ack(message.delivery.delivery_tag)

        await inbox.basic_consume(queue, on_message)
        latencies = []
        for i in range(WARM_UP + BROKER_MESSAGES):
            at = time.time()
            await out.basic_publish(b"{}", routing_key=queue,
                                    properties=aiormq.spec.Basic.Properties(delivery_mode=2))
            arrived = await asyncio.wait_for(delivered.get(), 10)
            if i >= WARM_UP:
                latencies.append(arrived - at)
            await asyncio.sleep(PAUSE_S)
        await out.queue_delete(queue)
    finally:
        await consumer.close()
        await publisher.close()
    return {**summary_ms(latencies), "messages": BROKER_MESSAGES}


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
