"""The bench's own servers' namespaces and processes.

Every measurement gets a database of its own (created and dropped here) on the local
PostgreSQL and a vhost of its own (rabbitmqctl) on the local RabbitMQ; processes are
real `sundial ...` (or peer) processes whose CPU time and RSS are read from /proc.
Only 127.0.0.1 is ever addressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import asyncpg

from sundial.core.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "bench" / "logs"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
AMQP_BASE = "amqp://guest:guest@127.0.0.1:5672"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pg_url(database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{database}"


@contextlib.asynccontextmanager
async def database(tag: str, *, migrated: bool = True) -> AsyncIterator[str]:
    """A fresh database of the bench's own, dropped afterwards; yields its URL."""
    name = f"sundial_bench_{tag}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = pg_url(name)
        if migrated:
            conn = await asyncpg.connect(url)
            try:
                await migrate(conn)
            finally:
                await conn.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.contextmanager
def vhost(tag: str) -> Iterator[str]:
    """A RabbitMQ vhost of the bench's own, deleted afterwards; yields the AMQP URL."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise SystemExit("bench: rabbitmqctl is needed to give each measurement its own vhost")
    name = f"sundial-bench-{tag}-{uuid.uuid4().hex[:8]}"
    subprocess.run([ctl, "add_vhost", name], check=True, capture_output=True)
    try:
        subprocess.run([ctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
                       check=True, capture_output=True)
        yield f"{AMQP_BASE}/{name}"
    finally:
        subprocess.run([ctl, "delete_vhost", name], capture_output=True)


async def queue_depth(amqp_url: str, queue: str) -> int:
    """Messages in a queue (a passive declare: exact, unlike rabbitmqctl's sampled stats)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count
    finally:
        await connection.close()


@dataclass
class Usage:
    cpu_s: float
    rss_mb: float


def usage(pid: int) -> Usage:
    """CPU seconds (user + system) and resident memory of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return Usage(cpu, rss_kb / 1024)


class Proc:
    """A child process of the bench, its output in bench/logs/<name>.log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOGS / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.started = time.time()
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=ROOT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def usage(self) -> Usage:
        return usage(self.pid)

    def stop(self, timeout: float = 20) -> int:
        if self.alive():
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._log.close()
        return code

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


def sundial_env(db_url: str, amqp_url: str, **extra: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCHEDULER_", "WORKER_", "POSTGRES_", "RABBITMQ_", "API_"))}
    env.update(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url, LOG_FORMAT="json", LOG_LEVEL="INFO",
               HEALTH_DIR=str(LOGS))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def sundial(name: str, args: list[str], env: dict[str, str]) -> Proc:
    return Proc(name, [sys.executable, "-m", "sundial", *args], env)


def python_module(name: str, module: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
    return Proc(name, [sys.executable, "-m", module, *args], env or dict(os.environ))


async def wait_until(predicate, timeout: float, what: str, every: float = 0.1):
    """Await `predicate()` until truthy; returns its value or raises after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a process the bench starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_key(env: dict[str, str]) -> str:
    """An admin key made with `sundial keys create` against the bench's database."""
    out = subprocess.run([sys.executable, "-m", "sundial", "keys", "create", "--name", "bench",
                          "--role", "admin"], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1].strip()
