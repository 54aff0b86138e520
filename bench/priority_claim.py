"""What priority costs at the worker's claim: `python -m bench.priority_claim [RUNS]`.

A worker's batch claim (worker.sql, claim_run with $6) looks for a waiting run of higher
priority than each message's before it starts one. Timed here in process against a real
PostgreSQL: one batch of BATCH messages (one pipelined transaction, rolled back so every
repetition does the same work; median of REPEAT), with RUNS published, queued runs of
priority 0 on the worker's queue, in four cases:

- `fifo`: the claim without the priority look ($6 false: what a claim of a `forbid` job does);
- `all at 0`: with it, every job at priority 0 (the index of prioritised runs is empty);
- `better waiting`: RUNS/10 runs at priority 5 on the same queue: each message starts one
  of them and hands its own run back to the outbox;
- `better elsewhere`: RUNS/10 runs at priority 5 on another queue: looked at, not taken.

Prints one line per case. Needs DATABASE_URL's server (a database is created and dropped).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid

import asyncpg

from sundial.core.migrate import migrate, quote_ident
from sundial.core.sql import q

BATCH = 200
REPEAT = 15


async def _seed(conn: asyncpg.Connection, runs: int, better: int, better_queue: str) -> None:
    await conn.execute("TRUNCATE runs, jobs CASCADE")
    await conn.execute("INSERT INTO jobs (name, handler, queue, priority) VALUES "
                       "('low', 'noop', 'work', 0), ('high', 'noop', $1, 5)", better_queue)
    await conn.execute(
        "INSERT INTO runs (job_id, scheduled_for, trigger, priority, published_at) "
        "SELECT (SELECT id FROM jobs WHERE name = 'low'), now(), 'manual', 0, now() "
        "FROM generate_series(1, $1)", runs)
    await conn.execute(
        "INSERT INTO runs (job_id, scheduled_for, trigger, priority, published_at) "
        "SELECT (SELECT id FROM jobs WHERE name = 'high'), now(), 'manual', 5, now() "
        "FROM generate_series(1, $1)", better)
    await conn.execute("VACUUM ANALYZE runs")


async def _batch_ms(conn: asyncpg.Connection, by_priority: bool) -> tuple[float, int]:
    ids = [r["id"] for r in await conn.fetch(
        "SELECT r.id FROM runs r JOIN jobs j ON j.id = r.job_id WHERE j.name = 'low' "
        "ORDER BY r.id LIMIT $1", BATCH)]
    args = [(i, 1, "bench", ["noop"], ["work"], by_priority) for i in ids]
    times, swapped = [], 0
    for _ in range(REPEAT):
        tx = conn.transaction()
        await tx.start()
        t0 = time.perf_counter()
        rows = await conn.fetchmany(q("claim_run"), args)
        times.append((time.perf_counter() - t0) * 1000)
        swapped = sum(r["swapped"] for r in rows)
        await tx.rollback()
    return statistics.median(times), swapped


async def main(runs: int) -> None:
    dsn = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"sundial_bench_priority_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn, database="postgres")
    await admin.execute(f"CREATE DATABASE {quote_ident(name)}")
    try:
        conn = await asyncpg.connect(dsn, database=name)
        try:
            await migrate(conn)
            cases = [("fifo", 0, "work", False), ("all at 0", 0, "work", True),
                     ("better waiting", runs // 10, "work", True),
                     ("better elsewhere", runs // 10, "other", True)]
            print(f"batch claim of {BATCH} messages, {runs} runs waiting at priority 0 "
                  f"(median of {REPEAT})")
            for label, better, queue, by_priority in cases:
                await _seed(conn, runs, better, queue)
                ms, swapped = await _batch_ms(conn, by_priority)
                print(f"  {label:<17} {ms:8.1f} ms per batch  {ms * 1000 / BATCH:7.1f} us "
                      f"per claim  swapped {swapped}/{BATCH}")
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
