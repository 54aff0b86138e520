"""3. Trigger latency: "run now" → the worker starts the run, at light load.

Sundial: `POST /api/jobs/{id}/trigger` against `sundial api` (with a key from
`sundial keys create`), one request at a time with a short pause; latency =
runs.started_at - the instant the request was sent.
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

import asyncpg
import httpx

from bench import aps, infra, seed
from bench.stats import summary_ms

PAUSE_S = 0.02
WARM_UP = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api_key(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "core.cli", "keys", "create", "--name", "bench",
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
                    sent: dict[int, float] = {}
                    for i in range(WARM_UP + count):
                        at = time.time()
                        response = await http.post(f"/api/jobs/{job_id}/trigger")
                        response.raise_for_status()
                        if i >= WARM_UP:
                            sent[response.json()["run_id"]] = at
                        await asyncio.sleep(PAUSE_S)
                await infra.wait_until(
                    lambda: conn.fetchval("SELECT NOT EXISTS (SELECT 1 FROM runs WHERE status"
                                          " IN ('queued', 'running'))"), timeout_s, "triggered runs")
                rows = await conn.fetch("SELECT id, extract(epoch FROM started_at)::float8 AS s"
                                        " FROM runs WHERE id = ANY($1::bigint[])", list(sent))
            finally:
                for p in procs:
                    p.stop()
                await conn.close()
    latencies = [r["s"] - sent[r["id"]] for r in rows if r["s"] is not None]
    return {**summary_ms(latencies), "triggers": count, "pause_s": PAUSE_S,
            "command": "sundial api + sundial worker (WORKER_CONCURRENCY=10) + sundial scheduler; "
                       "POST /api/jobs/{id}/trigger one at a time"}


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
