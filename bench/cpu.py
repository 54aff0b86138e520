"""CPU per run dispatched: what `sundial scheduler` and its PostgreSQL backends spend
(user + system seconds, from /proc) to record, advance and publish a run, a figure that
does not depend on how loaded the machine is (wall-clock rates do).

    python -m bench.cpu [--schedules 50000] [--repeat 3] [--source DIR ...] [--env NAME=VALUE ...]

Each repetition seeds interval schedules all due DUE_IN_S seconds later in a fresh
database and vhost and starts one scheduler; once it has started and is idle, the CPU
spent so far is set aside, and what it spends from then until every run is published
is counted.
`--source DIR` runs the scheduler of another checkout (its services/ and sql/), so two
versions can be measured back to back, alternating; without it, this checkout's.
Prints CPU seconds per 10,000 runs: the scheduler, its backends, and both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import asyncpg

from bench import infra, seed

PER = 10_000
# Time for the scheduler to start (imports, connections) before the schedules fall due.
DUE_IN_S = 8.0
PUBLISHED_SQL = "SELECT count(published_at) FROM runs"


def _package(source: Path, into: Path) -> Path:
    """A `sundial` package made of `source`'s services/ and sql/, importable from `into`."""
    shutil.copytree(source / "services", into / "sundial")
    shutil.copytree(source / "sql", into / "sundial" / "sql")
    return into


class Backends:
    """The CPU of every client backend of the database (not autovacuum) but the bench's own; a
    backend is read while alive, its last reading kept after it ends."""

    def __init__(self, conn: asyncpg.Connection):
        self._conn = conn
        self.cpu: dict[int, float] = {}
        self.before: dict[int, float] = {}

    def start(self) -> None:
        """Count from now on."""
        self.before = dict(self.cpu)

    async def sample(self) -> None:
        pids = await self._conn.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'")
        for (pid,) in pids:
            try:
                self.cpu[pid] = infra.usage(pid).cpu_s
            except (FileNotFoundError, ProcessLookupError):
                pass

    @property
    def total(self) -> float:
        return sum(cpu - self.before.get(pid, 0.0) for pid, cpu in self.cpu.items())


async def once(count: int, source: Path | None, *, timeout_s: float = 600,
               env_extra: dict[str, str] | None = None) -> dict:
    async with infra.database("cpu") as db:
        with infra.vhost("cpu") as amqp:
            await seed.schedules(db, count, every_s=3600, first_in_s=DUE_IN_S)
            env = infra.sundial_env(db, amqp, **(env_extra or {}))
            scratch = None
            if source is not None:
                scratch = Path(tempfile.mkdtemp(prefix="sundial-cpu-"))
                env["PYTHONPATH"] = str(_package(source, scratch))
            conn = await asyncpg.connect(db)
            try:
                backends = Backends(conn)
                proc = infra.sundial("sundial-cpu", ["scheduler"], env)
                try:
                    await infra.wait_until(
                        lambda: conn.fetchval("SELECT count(*) FROM scheduler_instances"),
                        DUE_IN_S, "the scheduler started")
                    await asyncio.sleep(1.0)
                    await backends.sample()
                    if await conn.fetchval("SELECT count(*) FROM runs"):
                        raise RuntimeError("the schedules fell due before the scheduler was idle")
                    backends.start()
                    started_cpu = proc.usage().cpu_s

                    async def done() -> bool:
                        await backends.sample()
                        return await conn.fetchval(PUBLISHED_SQL) >= count
                    await infra.wait_until(done, timeout_s, f"{count} runs published", every=0.2)
                    await backends.sample()
                    scheduler_cpu = proc.usage().cpu_s - started_cpu
                finally:
                    proc.stop()
                published = await conn.fetchval(PUBLISHED_SQL)
            finally:
                await conn.close()
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)
    scale = PER / published
    return {"runs": published, "scheduler_cpu_s": scheduler_cpu * scale,
            "backends_cpu_s": backends.total * scale,
            "total_cpu_s": (scheduler_cpu + backends.total) * scale}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedules", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--source", type=Path, action="append",
                        help="a checkout to measure (repeatable; default: this one)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the scheduler, e.g. SCHEDULER_BATCH_SIZE=2000")
    args = parser.parse_args()
    env_extra = dict(item.split("=", 1) for item in args.env)
    sources: list[Path | None] = list(args.source or [None])
    results: dict[str, list[dict]] = {str(s or "."): [] for s in sources}
    for rep in range(args.repeat):
        for source in sources:
            r = asyncio.run(once(args.schedules, source, env_extra=env_extra))
            results[str(source or ".")].append(r)
            print(f"#{rep + 1} {source or '.'}: {r['runs']} runs; CPU s per {PER:,} runs: "
                  f"scheduler {r['scheduler_cpu_s']:.2f} + backends {r['backends_cpu_s']:.2f}"
                  f" = {r['total_cpu_s']:.2f}  (load {os.getloadavg()[0]:.1f})", flush=True)
    for name, rs in results.items():
        print(f"median {name}: " + ", ".join(
            f"{k.removesuffix('_cpu_s')} {statistics.median(r[k] for r in rs):.3f}"
            for k in ("scheduler_cpu_s", "backends_cpu_s", "total_cpu_s")))


if __name__ == "__main__":
    main()
