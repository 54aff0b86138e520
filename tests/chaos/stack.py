"""What the fault-injection scenarios share: probe jobs and schedules written with SQL,
process environments, proxies in front of the shared servers, and the seed."""

from __future__ import annotations

import json
import os
import random
import subprocess
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.chaos.checker import vhost_of
from tests.chaos.probe import PROBE_TABLE
from tests.conftest import service_env

PROBE_MODULE = "tests.chaos.probe"


def seeded() -> tuple[int, random.Random]:
    """The scenario's seed (CHAOS_SEED replays one) and its random generator."""
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(1 << 30))
    print(f"chaos seed={seed} (replay with CHAOS_SEED={seed})")
    return seed, random.Random(seed)


def via_proxy(url: str, port: int) -> str:
    """The same URL with its host and port replaced by the proxy's (127.0.0.1 only)."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def target(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    assert host in ("127.0.0.1", "localhost"), "fault injection targets 127.0.0.1 only"
    return "127.0.0.1", parts.port or default_port


RUN_LEASE_S = 3


def scheduler_env(db_url: str, amqp_url: str, **extra: object) -> dict[str, str]:
    settings = dict(SCHEDULER_POLL_INTERVAL=0.5, SCHEDULER_BATCH_SIZE=200,
                    RUN_LEASE_SECONDS=RUN_LEASE_S,
                    SCHEDULER_PUBLISH_LEASE=2, HEALTHCHECK_INTERVAL=2)
    return service_env(db_url, amqp_url, **{**settings, **extra})


def worker_env(db_url: str, amqp_url: str, queue: str, **extra: object) -> dict[str, str]:
    settings = dict(WORKER_QUEUES=queue, WORKER_CONCURRENCY=8, WORKER_HEARTBEAT_INTERVAL=0.5,
                    HEALTHCHECK_INTERVAL=2, WORKER_IMPORTS=PROBE_MODULE)
    return service_env(db_url, amqp_url, **{**settings, **extra})


async def probe_job(conn: asyncpg.Connection, queue: str, seconds: float = 0.0,
                    max_attempts: int = 10, function: str = "chaos.probe") -> int:
    await conn.execute(PROBE_TABLE)
    return await conn.fetchval(
        """INSERT INTO jobs (name, handler, queue, payload, max_attempts, timeout_seconds,
                             retry_backoff_seconds)
           VALUES ($1 || '-' || gen_random_uuid(), 'python', $2, $3::jsonb, $4, 60, 1) RETURNING id""",
        function, queue, json.dumps({"function": function, "kwargs": {"seconds": seconds}}
                                    if function == "chaos.probe" else {"function": function}),
        max_attempts)


async def interval_schedules(conn: asyncpg.Connection, job_id: int, count: int,
                             every_s: float, policy: str = "run_all", grace_s: float = 3600,
                             start_in_s: float = 1.0) -> list[int]:
    rows = await conn.fetch(
        """INSERT INTO schedules (job_id, kind, interval_seconds, start_at, misfire_policy,
                                  misfire_grace_seconds)
           SELECT $1, 'interval', $2, date_trunc('second', now()) + make_interval(secs => $3),
                  $4, $5
           FROM generate_series(1, $6) RETURNING id""",
        job_id, every_s, start_in_s, policy, grace_s, count)
    return [r["id"] for r in rows]


async def manual_runs(conn: asyncpg.Connection, job_id: int, count: int) -> list[int]:
    """Queued, unpublished manual runs: the scheduler's relay publishes them."""
    rows = await conn.fetch(
        """INSERT INTO runs (job_id, scheduled_for, trigger, max_attempts)
           SELECT j.id, now(), 'manual', j.max_attempts FROM jobs j, generate_series(1, $2)
           WHERE j.id = $1 RETURNING id""", job_id, count)
    await conn.execute("SELECT pg_notify('sundial_scheduler', 'runs')")
    return [r["id"] for r in rows]


async def freeze(conn: asyncpg.Connection) -> None:
    """Stop the schedules where they stand (a tick in progress finishes first), so the
    checker compares runs against a fixed next_run_at."""
    await conn.execute("UPDATE schedules SET is_active = false")


def consumers(amqp_url: str, queue: str) -> int:
    """Consumers registered on sundial.<queue>, as rabbitmqctl reports them."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost_of(amqp_url),
                          "name", "consumers"], capture_output=True, text=True, timeout=30)
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == f"sundial.{queue}":
            return int(parts[1])
    return 0
