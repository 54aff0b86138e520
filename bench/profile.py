"""Where a Sundial process spends its time in a bench scenario (py-spy, 250 Hz, 10 s).

    python -m bench.profile dispatch   # `sundial scheduler` clearing 60,000 due schedules
    python -m bench.profile steady     # `sundial scheduler`, 1,000 schedules every second
    python -m bench.profile worker     # one `sundial worker` draining 20,000 published runs

Prints the share of samples busy and, per function of Sundial and its AMQP/PostgreSQL
libraries, the share of samples it was on the stack; the raw stacks stay in bench/logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg

from bench import infra, seed
from bench.dispatch import DONE_SQL

RATE_HZ = 250
SECONDS = 10
SHOWN = ("scheduler/", "worker/", "core/", "aio_pika", "aiormq", "pamqp", "asyncpg", "structlog")


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("bench.profile: py-spy is needed (pip install py-spy)")
    return found


def _record(pid: int, out: Path) -> None:
    subprocess.run([_py_spy(), "record", "--pid", str(pid), "--duration", str(SECONDS),
                    "--rate", str(RATE_HZ), "--format", "raw", "--nonblocking", "-o", str(out)],
                   check=True, capture_output=True)


async def scenario(kind: str, out: Path) -> None:
    async with infra.database("profile") as db:
        with infra.vhost("profile") as amqp:
            env = infra.sundial_env(db, amqp, WORKER_QUEUES=seed.QUEUE, WORKER_CONCURRENCY=100)
            if kind == "steady":
                await seed.schedules(db, 1000, every_s=1, first_in_s=4, spread_s=1.0)
            else:
                await seed.schedules(db, 60_000 if kind == "dispatch" else 20_000,
                                     every_s=3600, first_in_s=-1)
            proc = infra.sundial(f"profile-{kind}", ["scheduler"], env)
            try:
                if kind == "worker":
                    conn = await asyncpg.connect(db)
                    try:
                        await infra.wait_until(lambda: conn.fetchval(DONE_SQL), 300, "published")
                    finally:
                        await conn.close()
                    proc.stop()
                    proc = infra.sundial("profile-worker", ["worker"], env)
                    await asyncio.sleep(2.5)
                else:
                    await asyncio.sleep(1.2 if kind == "dispatch" else 6.0)
                await asyncio.to_thread(_record, proc.pid, out)
            finally:
                proc.stop()


def report(path: Path) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            key = f"{name} ({where.split(':')[0]})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
    print(f"{total} samples in {SECONDS} s at {RATE_HZ} Hz: "
          f"{100 * total / (SECONDS * RATE_HZ):.0f} % busy")
    for key, n in inclusive.most_common():
        if any(s in key for s in SHOWN) and n / total >= 0.01:
            print(f"{100 * n / total:5.1f} %  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("scenario", choices=("dispatch", "steady", "worker"))
    args = parser.parse_args()
    out = infra.LOGS / f"profile-{args.scenario}.txt"
    infra.LOGS.mkdir(parents=True, exist_ok=True)
    asyncio.run(scenario(args.scenario, out))
    report(out)


if __name__ == "__main__":
    main()
