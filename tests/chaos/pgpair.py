"""A PostgreSQL primary and its streaming standby on this machine, for failover scenarios.

Made with the Debian server binaries (`/usr/lib/postgresql/<version>/bin`: initdb,
pg_basebackup -R, pg_ctl) in a temporary directory, on free ports of 127.0.0.1, and
removed afterwards; the shared server other tests use is never touched. The standby is
synchronous (`synchronous_standby_names = '*'`): a commit returns once the standby has
it, so promoting the standby loses no committed row. Run as root, the servers run as
the `postgres` user (initdb refuses root).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg

from tests.conftest import free_port, wait_for

SERVER_USER = "postgres"


def bindir() -> Path | None:
    """The newest server binaries installed, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


class Server:
    """One PostgreSQL server of the pair: its data directory, port and log."""

    def __init__(self, pair: PgPair, name: str):
        self.pair = pair
        self.name = name
        self.data = pair.root / name
        self.port = free_port()
        self.log = pair.root / f"{name}.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        self.pair.run("pg_ctl", "-D", str(self.data), *args)

    def start(self) -> None:
        self.ctl("-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def configure(self, **settings: object) -> None:
        """Settings appended to postgresql.auto.conf (read at start and reload)."""
        with open(self.data / "postgresql.auto.conf", "a") as f:
            for name, value in settings.items():
                f.write(f"{name} = '{value}'\n")


class PgPair:
    """A primary and a synchronous standby: `start()`, `url(db)` for both hosts, then
    `primary.stop("immediate")` and `promote()` for a failover."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="sundial-pgpair-"))
        self.primary = Server(self, "primary")
        self.standby = Server(self, "standby")

    def run(self, program: str, *args: str) -> None:
        command: Sequence[str] = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              cwd=self.root)
        if done.returncode:
            raise RuntimeError(f"{program} {' '.join(args)} exited {done.returncode}: "
                               f"{done.stdout}{done.stderr}")

    def url(self, database: str) -> str:
        """Both hosts, primary first, as the services get them."""
        return (f"postgresql://postgres@127.0.0.1:{self.primary.port},"
                f"127.0.0.1:{self.standby.port}/{database}?target_session_attrs=read-write")

    async def start(self) -> PgPair:
        await asyncio.to_thread(self._create)
        await self.synchronous()
        return self

    def _create(self) -> None:
        """initdb the primary, start it, copy it into the standby with pg_basebackup -R,
        start that."""
        if os.geteuid() == 0:
            shutil.chown(self.root, SERVER_USER)
        p = self.primary
        self.run("initdb", "-D", str(p.data), "-U", "postgres", "--auth=trust",
                 "--no-sync", "-E", "UTF8")
        with open(p.data / "pg_hba.conf", "a") as f:
            f.write("host replication all 127.0.0.1/32 trust\n")
        # fsync off: the scenario stops processes, not the machine, so the page cache
        # keeps every write; it saves seconds on a shared disk.
        p.configure(port=p.port, listen_addresses="127.0.0.1",
                    unix_socket_directories=str(self.root), wal_level="replica",
                    max_wal_senders=5, hot_standby="on", fsync="off",
                    synchronous_standby_names="*", synchronous_commit="on",
                    max_connections=200, wal_keep_size="256MB")
        p.start()
        s = self.standby
        self.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(p.port), "-U", "postgres",
                 "-D", str(s.data), "-R", "-X", "stream", "--no-sync")
        # Once promoted it has no standby of its own: it must not wait for one.
        s.configure(port=s.port, synchronous_standby_names="")
        s.start()

    async def synchronous(self) -> None:
        """Wait until the primary reports its standby streaming and synchronous."""
        conn = await asyncpg.connect(self.primary.url)
        try:
            await wait_for(lambda: conn.fetchval(
                "SELECT count(*) > 0 FROM pg_stat_replication WHERE sync_state = 'sync' "
                "AND state = 'streaming'"), 60, interval=0.2, what="the standby to be in sync")
        finally:
            await conn.close()

    def promote(self) -> None:
        self.standby.ctl("-w", "-t", "60", "promote")

    def remove(self) -> None:
        for server in (self.primary, self.standby):
            if server.running():
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    server.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.asynccontextmanager
async def pg_pair() -> AsyncIterator[PgPair]:
    """A started pair, removed however the scenario ends."""
    found = bindir()
    if found is None:
        import pytest

        pytest.skip("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
    pair = PgPair(found)
    try:
        yield await pair.start()
    finally:
        await asyncio.to_thread(pair.remove)
