"""Shared fixtures: real PostgreSQL and RabbitMQ, isolated per test.

- PostgreSQL: the server of DATABASE_URL (or TEST_DATABASE_URL; default the local one),
  reached through its `postgres` database. A session fixture migrates a template
  database; each test gets its own `CREATE DATABASE ... TEMPLATE` copy.
- RabbitMQ: RABBITMQ_URL (default the local one). The session gets its own vhost when
  `rabbitmqctl` is available; each test gets its own queue names.
- With neither server reachable and Docker present, testcontainers starts both.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from sundial.core.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _with_vhost(url: str, vhost: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(vhost, safe="")))


def _reachable(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, str]]:
    """(postgres admin URL, amqp URL) of the servers under test."""
    # The server of DATABASE_URL; the tests create (and drop) databases of their own on it.
    pg = os.environ.get("TEST_DATABASE_URL") or _with_database(
        os.environ.get("DATABASE_URL") or DEFAULT_PG, "postgres")
    amqp = os.environ.get("RABBITMQ_URL") or DEFAULT_AMQP
    pg_parts, amqp_parts = urlsplit(pg), urlsplit(amqp)
    if _reachable(pg_parts.hostname or "localhost", pg_parts.port or 5432) and _reachable(
            amqp_parts.hostname or "localhost", amqp_parts.port or 5672):
        yield pg, amqp
        return
    # A laptop with Docker instead of local servers.
    from testcontainers.postgres import PostgresContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    with PostgresContainer("postgres:16-alpine", driver=None) as pgc, \
            RabbitMqContainer("rabbitmq:3.13-alpine") as mq:
        pg_url = pgc.get_connection_url()
        params = mq.get_connection_params()
        yield pg_url, f"amqp://guest:guest@{params.host}:{params.port}/"


@pytest.fixture(scope="session")
async def template_db(servers: tuple[str, str]) -> AsyncIterator[str]:
    admin_url = servers[0]
    name = f"sundial_tpl_{os.getpid()}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(_with_database(admin_url, name))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield name
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def db_url(servers: tuple[str, str], template_db: str) -> AsyncIterator[str]:
    """A freshly migrated database of this test's own."""
    admin_url = servers[0]
    name = f"sundial_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        yield _with_database(admin_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    from sundial.core.db import create_pool

    pool = await create_pool(db_url, min_size=1, max_size=5, attempts=3)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def amqp_url(servers: tuple[str, str]) -> Iterator[str]:
    """The broker URL, on a vhost of this test session's own where possible."""
    base = servers[1]
    ctl = shutil.which("rabbitmqctl")
    if not ctl or urlsplit(base).hostname not in ("127.0.0.1", "localhost"):
        yield base
        return
    vhost = f"sundial-test-{os.getpid()}"
    subprocess.run([ctl, "add_vhost", vhost], check=True, capture_output=True)
    user = urlsplit(base).username or "guest"
    subprocess.run([ctl, "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
                   check=True, capture_output=True)
    yield _with_vhost(base, vhost)
    subprocess.run([ctl, "delete_vhost", vhost], capture_output=True)


@pytest.fixture
def queue() -> str:
    """A queue name of this test's own."""
    return f"t{uuid.uuid4().hex[:10]}"


def _health_dir() -> Path:
    """This test process's own HEALTH_DIR: test runs side by side (`make test` runs test
    files on several processes) must not read each other's heartbeat files."""
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"sundial-test-health-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    return folder


def service_env(db_url: str, amqp_url: str, **extra: object) -> dict[str, str]:
    """The environment for a Sundial process under test."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCHEDULER_", "WORKER_", "POSTGRES_", "RABBITMQ_"))}
    env.update(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url, LOG_FORMAT="json", LOG_LEVEL="INFO",
               HEALTH_DIR=str(_health_dir()))
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Process:
    """A `sundial ...` process started by a test, its output kept in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path,
                 command: Sequence[str] = (sys.executable, "-m", "sundial"), cwd: Path = ROOT):
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self._since = self._log.tell()  # the file keeps earlier runs' output: not this one's
        self.proc = subprocess.Popen([*command, *args], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, wait, and return the exit code (SIGKILL if it does not stop)."""
        self.signal(signal.SIGTERM)
        return self.stopped(timeout)

    def stopped(self, timeout: float) -> int:
        """Wait for the process to end (SIGKILL if it has not after `timeout`); its exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -9
        self._log.close()
        return code

    def output(self) -> str:
        """What this process wrote (the log file also holds earlier test runs')."""
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path, "rb") as f:
            f.seek(self._since)
            return f.read().decode(errors="replace")


@pytest.fixture
def processes(request: pytest.FixtureRequest) -> Iterator[callable]:
    """start(args, env, **how) -> Process; every process is stopped at the end of the test.
    `how`: the `command` that runs Sundial (default `python -m sundial`) and the `cwd`."""
    started: list[Process] = []
    folder = ARTIFACTS / "logs"
    folder.mkdir(parents=True, exist_ok=True)

    def start(args: list[str], env: dict[str, str], **how: Any) -> Process:
        name = f"{request.node.name}-{args[0]}-{len(started)}.log".replace("/", "_")
        p = Process(args, env, folder / name, **how)
        started.append(p)
        return p

    yield start
    # All asked to stop at once, then waited for: the test ends after the slowest, not after
    # each in turn.
    running = [p for p in started if p.alive()]
    for p in running:
        p.signal(signal.SIGTERM)
    for p in running:
        p.stopped(timeout=10)


async def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = ""):
    """Await `predicate()` (sync or async) until truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(interval)


def several_hosts(db_url: str, first_port: int) -> str:
    """The URL of the test database behind a first host (127.0.0.1:`first_port`, where
    nothing listens), with target_session_attrs=read-write: DATABASE_URL's high
    availability form, the first host down as after a failover."""
    parts = urlsplit(db_url)
    hosts = f"127.0.0.1:{first_port},{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{hosts}",
                                     query="target_session_attrs=read-write"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_api(processes, db_url: str, amqp_url: str, how: dict[str, Any] | None = None,
                    **extra: object) -> str:
    """A real `sundial api` process (started as `how` says, see `processes`); its base URL
    once it answers."""
    import httpx

    port = free_port()
    processes(["api"], service_env(db_url, amqp_url, API_HOST="127.0.0.1", API_PORT=port,
                                   **extra), **(how or {}))
    base = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{base}/health")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_for(up, timeout=30, what="sundial api to answer /health")
    return base


@pytest.fixture
def receiver() -> Iterator[Any]:
    """A local HTTP server notifications are delivered to (tests.receivers.Receiver)."""
    from tests.receivers import Receiver

    r = Receiver()
    r.start()
    yield r
    r.stop()


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    """A local SMTP server (aiosmtpd) email notifications are delivered to."""
    from tests.receivers import SmtpServer

    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()
